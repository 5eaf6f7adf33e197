"""Certificate signatures checked with tlslite-ng's key classes (pure Python, no libcrypto).

Accepted algorithms: RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512, ECDSA with
SHA-256/384/512 (P-256, P-384, P-521), Ed25519 and Ed448. SHA-1 and MD5 signatures are refused:
a collision lets an attacker forge a certificate.
"""

from __future__ import annotations

from summon.tls.errors import BAD_SIGNATURE, MALFORMED, BadCertificate
from summon.tls.tlslite_ng import X509
from summon.tls.x509 import der

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.tls.x509.certificate import Certificate

_RSA_PKCS1 = {
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}
_ECDSA = {
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
_RSA_PSS = "1.2.840.113549.1.1.10"
_EDDSA = {"1.3.101.112": "Ed25519", "1.3.101.113": "Ed448"}
_HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_WEAK = {
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
}


def public_key(cert: Certificate) -> object:
    """The certificate's subject public key as a tlslite key object."""
    try:
        return _parsed_key(cert.der)
    except Exception as e:  # tlslite raises SyntaxError, KeyError, ValueError... on odd keys
        raise BadCertificate(
            f"{cert.subject_text!r}: public key not usable ({type(e).__name__}: {e})",
            reason=MALFORMED,
        ) from None


def _parsed_key(data: bytes) -> object:
    x = X509()
    x.parseBinary(data)
    return x.publicKey


def _pss_params(params: bytes) -> tuple[str, int]:
    """RSASSA-PSS-params (RFC 4055): hash algorithm and salt length; SHA-1 defaults refused."""
    hash_name, salt = "sha1", 20
    if params:
        seq = der.parse_single(params, "RSASSA-PSS-params").expect(der.SEQUENCE, "PSS params")
        for field in seq.children():
            if field.tag == 0xA0:
                alg = der.parse_single(field.value, "hashAlgorithm").children()[0]
                hash_name = _HASH_OIDS.get(der.oid_string(alg.value), "unknown")
            elif field.tag == 0xA2:
                salt = der.integer(der.parse_single(field.value, "saltLength"))
    return hash_name, salt


def verify_signature(cert: Certificate, issuer: Certificate) -> bool:
    """Whether `issuer`'s key signed `cert`. Raise BadCertificate for algorithms summon refuses."""
    alg = cert.signature_algorithm
    if alg in _WEAK:
        raise BadCertificate(
            f"{cert.subject_text!r} is signed with {_WEAK[alg]}, which summon refuses",
            reason=BAD_SIGNATURE,
        )
    key = public_key(issuer)
    key_type = getattr(key, "key_type", "")
    try:
        if alg in _RSA_PKCS1 and key_type == "rsa":
            return bool(
                key.hashAndVerify(cert.signature, cert.tbs, "PKCS1", _RSA_PKCS1[alg])  # type: ignore[attr-defined]
            )
        if alg == _RSA_PSS and key_type in ("rsa", "rsa-pss"):
            hash_name, salt = _pss_params(cert.signature_params)
            if hash_name not in ("sha256", "sha384", "sha512"):
                raise BadCertificate(
                    f"{cert.subject_text!r}: RSA-PSS with hash {hash_name}", reason=BAD_SIGNATURE
                )
            return bool(
                key.hashAndVerify(cert.signature, cert.tbs, "PSS", hash_name, salt)  # type: ignore[attr-defined]
            )
        if alg in _ECDSA and key_type == "ecdsa":
            return bool(key.hashAndVerify(cert.signature, cert.tbs, None, _ECDSA[alg]))  # type: ignore[attr-defined]
        if alg in _EDDSA and key_type == _EDDSA[alg]:
            return bool(key.hashAndVerify(cert.signature, cert.tbs))  # type: ignore[attr-defined]
    except BadCertificate:
        raise
    except Exception:
        # The key classes raise on garbage (a DER signature that does not parse, a value out of
        # range): every such signature is simply not valid.
        return False
    raise BadCertificate(
        f"{cert.subject_text!r}: signature algorithm {alg} with a {key_type or 'unknown'} key "
        "is not supported",
        reason=BAD_SIGNATURE,
    )
