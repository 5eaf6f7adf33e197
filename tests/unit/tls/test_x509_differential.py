"""summon's RFC 5280 path validation (the python backend's) against `openssl verify`.

Every case is a chain made here with `cryptography`: good chains (RSA, ECDSA P-256, mixed,
RSA-PSS, 2 and 3 levels) and bad ones (expired, not yet valid, intermediate without the CA
flag, pathLen exceeded, wrong EKU, a signature by the wrong key, self-signed, unknown root,
name constraints, an unknown critical extension, hostname mismatches). For each, summon's
validate_chain and Debian's `openssl verify` must agree on accept or reject, and on why
(OpenSSL's error code mapped to summon's reason, as the openssl backend maps it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from tls_pki import CLIENT, DAY, NOW, SERVER, Issued, issue, new_key

from summon.tls.errors import BadCertificate
from summon.tls.openssl_backend import _VERIFY_REASONS
from summon.tls.x509.certificate import Certificate
from summon.tls.x509.path import validate_chain

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass
class Case:
    name: str
    leaf: Issued
    untrusted: list[Issued] = field(default_factory=list)
    anchors: list[Issued] = field(default_factory=list)
    purpose: str = "serverAuth"
    hostname: str | None = None
    expect: str | None = None  # summon's reason, None for accept


def _resign_pss(item: Issued, issuer: Issued) -> Issued:
    """The same certificate re-signed by `issuer` with RSASSA-PSS."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(item.cert.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(item.key.public_key())
        .serial_number(item.cert.serial_number)
        .not_valid_before(item.cert.not_valid_before_utc)
        .not_valid_after(item.cert.not_valid_after_utc)
    )
    for ext in item.cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    cert = builder.sign(issuer.key, hashes.SHA256(), rsa_padding=pss)  # type: ignore[arg-type]
    return Issued(item.name, cert, item.key)


def _with_critical_extension(issuer: Issued) -> Issued:
    key = new_key("ec")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=odd.test"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("odd.test")]), False)
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            True,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued("odd", cert, key)


def _constrained_ca(root: Issued) -> Issued:
    key = new_key("ec")
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=constrained CA"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(nc, True)
        .sign(root.key, hashes.SHA256())
    )
    return Issued("constrained", cert, key, [])


def corpus() -> list[Case]:
    root = issue("diff root", ca=True)
    root_ec = issue("diff root ec", key="ec", ca=True)
    inter = issue("diff inter", issuer=root, ca=True)
    inter_ec = issue("diff inter ec", issuer=root_ec, key="ec", ca=True)
    other = issue("diff other root", ca=True)
    other_inter = issue("diff other inter", issuer=other, ca=True)
    not_ca = issue("diff not a CA", issuer=root, ca=False)
    no_bc = issue("diff no basicConstraints", issuer=root, ca=None, key_usage=False)
    root_pl0 = issue("diff root pathlen 0", ca=True, path_length=0)
    inter_pl0 = issue("diff inter under pathlen 0", issuer=root_pl0, ca=True)
    inter_pl0b = issue("diff inter pathlen 0", issuer=root, ca=True, path_length=0)
    inter2 = issue("diff inter 2", issuer=inter_pl0b, ca=True)
    inter_client_only = issue("diff inter client eku", issuer=root, ca=True, eku=CLIENT)
    expired_inter = issue(
        "diff expired inter", issuer=root, ca=True, not_before=NOW - 90 * DAY, not_after=NOW - DAY
    )
    constrained = _constrained_ca(root)
    name = ("localhost",)
    leaf = issue("localhost", issuer=inter, dns=name, eku=SERVER)

    def srv(issuer: Issued, **kw: object) -> Issued:
        kw.setdefault("dns", name)
        kw.setdefault("eku", SERVER)
        return issue("localhost", issuer=issuer, **kw)  # type: ignore[arg-type]

    return [
        Case("good 3-level RSA", leaf, [inter], [root]),
        Case("good 3-level ECDSA P-256", srv(inter_ec, key="ec"), [inter_ec], [root_ec]),
        Case("good 2-level ECDSA leaf under RSA root", srv(root, key="ec"), [], [root]),
        Case("good RSA-PSS signature", _resign_pss(srv(root), root), [], [root]),
        Case("good with the hostname", leaf, [inter], [root], hostname="localhost"),
        Case(
            "good wildcard",
            srv(root, dns=("*.example.net",)),
            [],
            [root],
            hostname="www.example.net",
        ),
        Case("good IP SAN", srv(root, ips=("127.0.0.1",)), [], [root], hostname="127.0.0.1"),
        Case(
            "good client certificate",
            issue("c", issuer=root, eku=CLIENT),
            [],
            [root],
            purpose="clientAuth",
        ),
        Case(
            "good within name constraints",
            srv(constrained, dns=("a.example.com",)),
            [constrained],
            [root],
        ),
        Case(
            "expired leaf",
            srv(inter, not_before=NOW - 9 * DAY, not_after=NOW - DAY),
            [inter],
            [root],
            expect="expired",
        ),
        Case(
            "not yet valid leaf",
            srv(inter, not_before=NOW + DAY, not_after=NOW + 9 * DAY),
            [inter],
            [root],
            expect="not yet valid",
        ),
        Case("expired intermediate", srv(expired_inter), [expired_inter], [root], expect="expired"),
        Case("intermediate with cA=FALSE", srv(not_ca), [not_ca], [root], expect="not a CA"),
        Case(
            "intermediate without basicConstraints", srv(no_bc), [no_bc], [root], expect="not a CA"
        ),
        Case(
            "root pathLen 0 exceeded",
            srv(inter_pl0),
            [inter_pl0],
            [root_pl0],
            expect="path too long",
        ),
        Case(
            "intermediate pathLen 0 exceeded",
            srv(inter2),
            [inter2, inter_pl0b],
            [root],
            expect="path too long",
        ),
        Case(
            "leaf EKU clientAuth used as server",
            srv(inter, eku=CLIENT),
            [inter],
            [root],
            expect="wrong purpose",
        ),
        Case(
            "leaf EKU serverAuth used as client",
            srv(root),
            [],
            [root],
            purpose="clientAuth",
            expect="wrong purpose",
        ),
        Case(
            "intermediate EKU excludes serverAuth",
            srv(inter_client_only),
            [inter_client_only],
            [root],
            expect="wrong purpose",
        ),
        Case(
            "signature by the wrong key",
            srv(inter, signing_key=other.key),
            [inter],
            [root],
            expect="bad signature",
        ),
        Case(
            "self-signed leaf",
            issue("localhost", dns=name, eku=SERVER),
            [],
            [root],
            expect="self-signed",
        ),
        Case(
            "unknown root, root not sent",
            srv(other_inter),
            [other_inter],
            [root],
            expect="unknown CA",
        ),
        Case(
            "unknown root, root sent along",
            srv(other_inter),
            [other_inter, other],
            [root],
            expect="unknown CA",
        ),
        Case("intermediate missing", leaf, [], [root], expect="unknown CA"),
        Case(
            "outside name constraints",
            srv(constrained, dns=("evil.test",)),
            [constrained],
            [root],
            expect="name constraints",
        ),
        Case(
            "unknown critical extension",
            _with_critical_extension(root),
            [],
            [root],
            expect="unsupported critical extension",
        ),
        Case(
            "hostname mismatch",
            leaf,
            [inter],
            [root],
            hostname="other.test",
            expect="hostname mismatch",
        ),
        Case(
            "wildcard covers one label only",
            srv(root, dns=("*.example.net",)),
            [],
            [root],
            hostname="a.b.example.net",
            expect="hostname mismatch",
        ),
        Case(
            "IP not in SANs",
            leaf,
            [inter],
            [root],
            hostname="127.0.0.2",
            expect="hostname mismatch",
        ),
    ]


CASES = corpus()


def _pem(items: list[Issued]) -> bytes:
    return b"".join(i.cert.public_bytes(serialization.Encoding.PEM) for i in items)


def _openssl_verdict(case: Case, folder: Path, now: int) -> str | None:
    (folder / "leaf.pem").write_bytes(_pem([case.leaf]))
    (folder / "anchors.pem").write_bytes(_pem(case.anchors))
    cmd = [
        "openssl",
        "verify",
        "-attime",
        str(now),
        "-CAfile",
        str(folder / "anchors.pem"),
        "-purpose",
        "sslserver" if case.purpose == "serverAuth" else "sslclient",
    ]
    if case.untrusted:
        (folder / "untrusted.pem").write_bytes(_pem(case.untrusted))
        cmd += ["-untrusted", str(folder / "untrusted.pem")]
    if case.hostname is not None:
        ip = re.fullmatch(r"[0-9.]+", case.hostname)
        cmd += ["-verify_ip" if ip else "-verify_hostname", case.hostname]
    result = subprocess.run([*cmd, str(folder / "leaf.pem")], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    found = re.search(r"error (\d+) at", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return _VERIFY_REASONS.get(int(found.group(1)), f"openssl code {found.group(1)}")


def _summon_verdict(case: Case, now: int) -> str | None:
    try:
        validate_chain(
            [case.leaf.der, *(i.der for i in case.untrusted)],
            [Certificate(a.der) for a in case.anchors],
            purpose=case.purpose,
            now=float(now),
            hostname=case.hostname,
        )
    except BadCertificate as e:
        return e.reason
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_summon_and_openssl_verify_agree(case: Case, tmp_path: Path) -> None:
    now = int(time.time())
    openssl = _openssl_verdict(case, tmp_path, now)
    summon = _summon_verdict(case, now)
    assert (summon, openssl) == (case.expect, case.expect)


def test_the_corpus_has_good_and_bad_chains_of_both_key_types() -> None:
    assert sum(c.expect is None for c in CASES) >= 8
    assert sum(c.expect is not None for c in CASES) >= 15
    algs = {Certificate(c.leaf.der).key_algorithm for c in CASES}
    assert {"1.2.840.113549.1.1.1", "1.2.840.10045.2.1"} <= algs


def test_the_differential_test_can_fail() -> None:
    """A case whose expectation is wrong must show as disagreement, not pass by accident."""
    good = CASES[0]
    assert _summon_verdict(good, int(time.time() + 400 * 86400)) == "expired"
    _ = ExtendedKeyUsageOID  # the EKU OIDs used above come from cryptography, not from summon
