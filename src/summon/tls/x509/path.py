"""RFC 5280 certification path validation, for the python backend (tlslite-ng has none).

validate_chain(chain, anchors, purpose=..., now=..., hostname=...) returns the path from the
leaf to a trust anchor, or raises BadCertificate with the reason. What it checks, in order
(the same order OpenSSL's X509_verify_cert reports in, so both backends name the same reason):

1. building: from the leaf, an issuer is a certificate whose subject equals the child's
   issuer (DER bytes) and, when both carry key identifiers, whose subjectKeyIdentifier equals
   the child's authorityKeyIdentifier. Trust anchors are preferred to certificates the peer
   sent; the issuer's key must verify the child's signature (tlslite-ng's RSA, RSA-PSS, ECDSA
   and EdDSA classes; SHA-1 and MD5 are refused). A leaf that signs itself and is not an
   anchor is "self-signed"; a chain that reaches no anchor is "unknown CA"; an issuer found
   by name whose key does not verify is "bad signature"; more than MAX_INTERMEDIATES
   intermediates is "path too long".
2. each issuer (anchor included) must have basicConstraints cA=TRUE (a v1 self-signed anchor
   is allowed), keyUsage keyCertSign if keyUsage is present, and its pathLenConstraint must
   cover the non-self-issued intermediates below it.
3. purpose: extendedKeyUsage, where present on the leaf or an intermediate, must list
   serverAuth or clientAuth as asked (anyExtendedKeyUsage is not enough, as in OpenSSL);
   the leaf's keyUsage, where present, must allow digitalSignature (or, like OpenSSL,
   keyEncipherment/keyAgreement for a server, keyAgreement for a client).
4. critical extensions: basicConstraints, keyUsage, extendedKeyUsage, subjectAltName,
   nameConstraints, subject/authority key identifiers are processed; any other critical
   extension (certificatePolicies, policyConstraints, inhibitAnyPolicy...) is refused.
5. name constraints: dNSName and iPAddress subtrees of every CA apply to the SAN names of
   every certificate below it; constraints of other forms (directoryName, rfc822Name, URI)
   are refused as unsupported rather than ignored.
6. hostname (when given): RFC 6125, see names.py.
7. time: every certificate in the path, anchor included, must be valid at `now`.

Not checked: revocation (CRL, OCSP), certificate policies, the anchor's own signature.
"""

from __future__ import annotations

from summon.tls.errors import (
    BAD_SIGNATURE,
    EXPIRED,
    KEY_USAGE,
    NOT_A_CA,
    NOT_YET_VALID,
    PATH_TOO_LONG,
    SELF_SIGNED,
    UNKNOWN_CA,
    UNSUPPORTED_CRITICAL_EXTENSION,
    WRONG_PURPOSE,
    BadCertificate,
)
from summon.tls.x509 import certificate as c
from summon.tls.x509.names import check_hostname, check_name_constraints
from summon.tls.x509.signature import verify_signature

MAX_INTERMEDIATES = 8
# What a peer may send (leaf, intermediates, its root), and signatures tried while building:
# each is a pure-Python verification (2.5 ms for P-256, 10 ms for P-521 here), and a 128 KiB
# Certificate message holds a hundred small decoys named like the issuer: up to a second of
# the server's CPU per handshake.
MAX_CHAIN = MAX_INTERMEDIATES + 2
MAX_SIGNATURES = 2 * MAX_CHAIN
PROCESSED = frozenset(
    (
        c.BASIC_CONSTRAINTS,
        c.KEY_USAGE,
        c.EXT_KEY_USAGE,
        c.SUBJECT_ALT_NAME,
        c.NAME_CONSTRAINTS,
        c.SUBJECT_KEY_ID,
        c.AUTHORITY_KEY_ID,
    )
)
PURPOSES = {"serverAuth": c.SERVER_AUTH, "clientAuth": c.CLIENT_AUTH}


def _time(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _may_issue(child: c.Certificate, candidate: c.Certificate) -> bool:
    if candidate.subject != child.issuer:
        return False
    if child.authority_key_id and candidate.subject_key_id:
        return child.authority_key_id == candidate.subject_key_id
    return True


def build_path(chain: list[c.Certificate], anchors: list[c.Certificate]) -> list[c.Certificate]:
    """The path [leaf, intermediates..., anchor]; raise BadCertificate if there is none."""
    leaf = chain[0]
    anchor_ders = {a.der for a in anchors}
    if leaf.der in anchor_ders:
        return [leaf]
    path = [leaf]
    bad_signature: c.Certificate | None = None
    tried = 0

    def verifies(child: c.Certificate, candidate: c.Certificate) -> bool:
        nonlocal tried
        tried += 1
        if tried > MAX_SIGNATURES:
            raise BadCertificate(
                f"no path above {leaf.subject_text!r} after {MAX_SIGNATURES} signatures tried",
                reason=BAD_SIGNATURE,
            )
        return verify_signature(child, candidate)

    while True:
        child = path[-1]
        if len(path) - 1 > MAX_INTERMEDIATES:
            raise BadCertificate(
                f"more than {MAX_INTERMEDIATES} intermediates above {leaf.subject_text!r}",
                reason=PATH_TOO_LONG,
            )
        found = None
        for candidate in anchors:
            if _may_issue(child, candidate):
                if verifies(child, candidate):
                    return [*path, candidate]
                bad_signature = child
        for candidate in chain[1:]:
            if candidate in path or not _may_issue(child, candidate):
                continue
            if candidate.self_issued and candidate.der not in anchor_ders:
                # A root the peer sent along is not ours to trust (OpenSSL's "self-signed
                # certificate in chain").
                continue
            if verifies(child, candidate):
                found = candidate
                break
            bad_signature = child
        if found is None:
            break
        path.append(found)
    if bad_signature is not None:
        raise BadCertificate(
            f"the signature on {bad_signature.subject_text!r} does not verify with the key of "
            f"its issuer {bad_signature.issuer_text!r}",
            reason=BAD_SIGNATURE,
        )
    top = path[-1]
    if len(path) == 1 and top.self_issued and verify_signature(top, top):
        raise BadCertificate(
            f"{top.subject_text!r} signed itself and is not a trust anchor", reason=SELF_SIGNED
        )
    raise BadCertificate(
        f"no trust anchor issued {top.issuer_text!r} (the issuer of {top.subject_text!r})",
        reason=UNKNOWN_CA,
    )


def _check_issuer(ca: c.Certificate, below: list[c.Certificate]) -> None:
    v1_root = ca.version == 1 and ca.self_issued
    if not ca.is_ca and not v1_root:
        flag = "no basicConstraints" if ca.is_ca is None else "cA=FALSE"
        raise BadCertificate(
            f"{ca.subject_text!r} issued {below[-1].subject_text!r} but has {flag}",
            reason=NOT_A_CA,
        )
    if ca.key_usage is not None and not ca.key_usage & c.KEY_CERT_SIGN:
        raise BadCertificate(
            f"{ca.subject_text!r} has keyUsage without keyCertSign", reason=KEY_USAGE
        )
    if ca.path_length is not None:
        # Intermediates strictly below this CA, leaf excluded, self-issued ones not counted.
        under = [x for x in below[1:] if not x.self_issued]
        if len(under) > ca.path_length:
            raise BadCertificate(
                f"{ca.subject_text!r} has pathLenConstraint {ca.path_length} but "
                f"{len(under)} intermediates follow it",
                reason=PATH_TOO_LONG,
            )


def _check_purpose(cert: c.Certificate, purpose: str, is_leaf: bool) -> None:
    oid = PURPOSES[purpose]
    if cert.ext_key_usage is not None and oid not in cert.ext_key_usage:
        raise BadCertificate(
            f"{cert.subject_text!r} has extendedKeyUsage {list(cert.ext_key_usage)} without "
            f"{purpose} ({oid})",
            reason=WRONG_PURPOSE,
        )
    if is_leaf and cert.key_usage is not None:
        allowed = c.DIGITAL_SIGNATURE | c.KEY_AGREEMENT
        if purpose == "serverAuth":
            allowed |= c.KEY_ENCIPHERMENT
        if not cert.key_usage & allowed:
            raise BadCertificate(
                f"{cert.subject_text!r} has keyUsage 0x{cert.key_usage:x}, which does not "
                f"allow a TLS {purpose} key",
                reason=WRONG_PURPOSE,
            )


def validate_chain(
    chain: list[bytes],
    anchors: list[c.Certificate],
    *,
    purpose: str,
    now: float,
    hostname: str | None = None,
) -> list[c.Certificate]:
    """Validate the peer's `chain` (DER, leaf first) against `anchors`; return the path."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {sorted(PURPOSES)}")
    if not chain:
        raise BadCertificate("the peer sent no certificate", reason="no certificate")
    if len(chain) > MAX_CHAIN:
        raise BadCertificate(
            f"the peer sent {len(chain)} certificates; a chain has at most {MAX_CHAIN} (the "
            f"leaf, {MAX_INTERMEDIATES} intermediates, a root)",
            reason=PATH_TOO_LONG,
        )
    certs = [c.Certificate(d) for d in chain]
    path = build_path(certs, anchors)
    for i in range(1, len(path)):
        _check_issuer(path[i], path[:i])
    for i, cert in enumerate(path):
        if i < len(path) - 1 or len(path) == 1:
            _check_purpose(cert, purpose, is_leaf=i == 0)
        for oid, (critical, _) in cert.extensions.items():
            if critical and oid not in PROCESSED:
                raise BadCertificate(
                    f"{cert.subject_text!r} carries critical extension {oid}, which summon "
                    "does not process",
                    reason=UNSUPPORTED_CRITICAL_EXTENSION,
                )
        nc = cert.name_constraints
        if nc is not None and i > 0:
            if nc.other_forms:
                raise BadCertificate(
                    f"{cert.subject_text!r} has name constraints of a form summon does not "
                    f"check (GeneralName tags {sorted(set(nc.other_forms))})",
                    reason=UNSUPPORTED_CRITICAL_EXTENSION,
                )
            for below in path[:i]:
                if below is path[0] or not below.self_issued:
                    check_name_constraints(nc, below, cert.subject_text)
    if hostname is not None:
        check_hostname(path[0], hostname)
    for cert in reversed(path):
        if now < cert.not_before:
            raise BadCertificate(
                f"{cert.subject_text!r} is valid from {_time(cert.not_before)}, "
                f"now is {_time(now)}",
                reason=NOT_YET_VALID,
            )
        if now > cert.not_after:
            raise BadCertificate(
                f"{cert.subject_text!r} expired at {_time(cert.not_after)}, now is {_time(now)}",
                reason=EXPIRED,
            )
    return path
