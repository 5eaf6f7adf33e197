"""Set the Piñata up: a trust anchor whose private key is destroyed, and the Piñata's own
certificate, the only one that anchor ever signs.

    python3 examples/pinata/make_pki.py SECRETS_DIR [--ip 127.0.0.1] [--dns pinata.example]

writes SECRETS_DIR/pinata-ca.crt (the anchor's certificate: public), pinata.crt and
pinata.key (the Piñata's chain and key, mode 0600), each to a temporary name, fsynced, then
renamed. The anchor's key is made in this process's memory, signs the Piñata's certificate,
and is never serialised, written or printed: when this process exits it is gone, so no
certificate that chains to the anchor can be issued again. The Piñata trusts only the anchor,
so nobody should ever receive its secret. Host-side (needs `cryptography`); not part of the
app, which is app/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = dt.timedelta(days=5 * 365)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make(ips: list[str], dns: list[str]) -> dict[str, bytes]:
    """{file name: PEM bytes} of the anchor's certificate and the Piñata's chain and key."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    anchor_key = ec.generate_private_key(ec.SECP256R1())
    anchor = (
        x509.CertificateBuilder()
        .subject_name(_name("Piñata trust anchor (private key destroyed)"))
        .issuer_name(_name("Piñata trust anchor (private key destroyed)"))
        .public_key(anchor_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(anchor_key.public_key()), critical=False
        )
        .sign(anchor_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("Piñata"))
        .issuer_name(anchor.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(anchor_key.public_key()),
            critical=False,
        )
        .sign(anchor_key, hashes.SHA256())
    )
    # The anchor's key signed its two certificates and goes now; nothing kept a copy.
    del anchor_key
    pem = serialization.Encoding.PEM
    return {
        "pinata-ca.crt": anchor.public_bytes(pem),
        "pinata.crt": leaf.public_bytes(pem) + anchor.public_bytes(pem),
        "pinata.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        dest = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the three files")
    parser.add_argument("--ip", action="append", default=[], help="an address the Piñata has")
    parser.add_argument("--dns", action="append", default=[], help="a name the Piñata has")
    args = parser.parse_args(argv)
    try:
        for ip in args.ip:
            ipaddress.ip_address(ip)
    except ValueError as e:
        print(f"make_pki: --ip: {e}", file=sys.stderr)
        return 2
    ips = args.ip or ([] if args.dns else ["127.0.0.1"])
    existing = [
        n for n in ("pinata-ca.crt", "pinata.crt", "pinata.key") if (args.folder / n).exists()
    ]
    if existing:
        print(
            f"make_pki: {args.folder} already holds {', '.join(existing)}: a Piñata set up "
            "once keeps its anchor; remove them to set up a new one",
            file=sys.stderr,
        )
        return 2
    try:
        write(args.folder, make(ips, args.dns))
    except OSError as e:
        print(f"make_pki: cannot write to {args.folder}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.folder}/pinata-ca.crt, pinata.crt and pinata.key; the anchor's key is gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
