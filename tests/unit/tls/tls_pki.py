"""A test PKI made with `cryptography`: CAs, servers and clients, good and broken, in tmp dirs.

Tests never read certificates from the repository: `build_pki(folder)` issues everything they
need (valid, expired, self-signed, from another CA, wrong purpose...) and writes each as
NAME.crt (PEM chain, leaf first) and NAME.key (PKCS#8 PEM) into `folder`, which then doubles
as a Secrets folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(kind)


@dataclass
class Issued:
    """A certificate, its key, and the chain above it (not including the root)."""

    name: str
    cert: x509.Certificate
    key: PrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def cert_pem(self) -> bytes:
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in [self.cert, *self.chain]
        )

    @property
    def leaf_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def issue(
    name: str,
    *,
    issuer: Issued | None = None,
    key: str = "rsa",
    ca: bool | None = False,
    path_length: int | None = None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    eku: tuple[x509.ObjectIdentifier, ...] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    signing_key: PrivateKey | None = None,
    key_usage: bool = True,
) -> Issued:
    """Issue a certificate for `name`; self-signed when `issuer` is None.

    `signing_key` overrides the issuer's key (a certificate whose signature will not verify);
    `ca=None` leaves basicConstraints out altogether.
    """
    private = new_key(key)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name = issuer.cert.subject if issuer else subject
    signer = signing_key or (issuer.key if issuer else private)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 30 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True
        )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca and key == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=bool(ca),
                crl_sign=bool(ca),
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
    cert = builder.sign(signer, hashes.SHA256())
    chain: list[x509.Certificate] = []
    if issuer is not None and issuer.cert.issuer != issuer.cert.subject:
        chain = [issuer.cert, *issuer.chain]
    return Issued(name, cert, private, chain)


SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)


@dataclass
class PKI:
    """Everything the TLS tests use, and the folder it was written to."""

    folder: Path
    certs: dict[str, Issued]

    def __getitem__(self, name: str) -> Issued:
        return self.certs[name]

    def path(self, name: str, ext: str = "crt") -> str:
        return str(self.folder / f"{name}.{ext}")


def build_pki(folder: Path) -> PKI:
    """Issue the test PKI into `folder` (see the module docstring)."""
    root = issue("summon test root", ca=True)
    inter = issue("summon test intermediate", issuer=root, ca=True, path_length=0)
    other_root = issue("another root", ca=True, key="ec")
    certs = {
        "ca": root,
        "intermediate": inter,
        "other-ca": other_root,
        # Servers: the good one chains through the intermediate.
        "server": issue(
            "localhost", issuer=inter, dns=("localhost",), ips=("127.0.0.1",), eku=SERVER
        ),
        "server-ec": issue(
            "localhost", issuer=root, key="ec", dns=("localhost",), ips=("127.0.0.1",), eku=SERVER
        ),
        "server-alt": issue("alt.test", issuer=root, dns=("alt.test", "*.wild.test"), eku=SERVER),
        "server-expired": issue(
            "localhost",
            issuer=root,
            dns=("localhost",),
            ips=("127.0.0.1",),
            eku=SERVER,
            not_before=NOW - 60 * DAY,
            not_after=NOW - DAY,
        ),
        "server-wrong-name": issue(
            "elsewhere.test", issuer=root, dns=("elsewhere.test",), eku=SERVER
        ),
        "server-self-signed": issue("localhost", ca=None, dns=("localhost",), ips=("127.0.0.1",)),
        "server-other-ca": issue(
            "localhost",
            issuer=other_root,
            key="ec",
            dns=("localhost",),
            ips=("127.0.0.1",),
            eku=SERVER,
        ),
        # Clients.
        "client": issue("client one", issuer=root, eku=CLIENT),
        "client-ec": issue("client ec", issuer=root, key="ec", eku=CLIENT),
        "client-expired": issue(
            "client expired",
            issuer=root,
            eku=CLIENT,
            not_before=NOW - 60 * DAY,
            not_after=NOW - DAY,
        ),
        "client-self-signed": issue("client self", ca=None),
        "client-other-ca": issue("client other", issuer=other_root, key="ec", eku=CLIENT),
        "client-server-eku": issue("client wrong purpose", issuer=root, eku=SERVER),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, item in certs.items():
        (folder / f"{name}.crt").write_bytes(item.cert_pem)
        (folder / f"{name}.key").write_bytes(item.key_pem)
    # The common secret names the device defaults to.
    (folder / "tls.crt").write_bytes(certs["server"].cert_pem)
    (folder / "tls.key").write_bytes(certs["server"].key_pem)
    return PKI(folder, certs)
