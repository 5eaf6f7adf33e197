"""Path building costs pure-Python signature checks (about 10 ms each for P-521): what a peer
sends is bounded before any is made.

Rule (summon.tls.x509.path: MAX_CHAIN, MAX_SIGNATURES): a peer's chain holds at most
MAX_CHAIN certificates, and at most MAX_SIGNATURES signatures are tried to build a path.
"""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from tls_pki import CLIENT, DAY, NOW, Issued, issue, new_key

from summon.tls.errors import BAD_SIGNATURE, PATH_TOO_LONG, BadCertificate
from summon.tls.x509.certificate import Certificate
from summon.tls.x509.path import MAX_CHAIN, MAX_SIGNATURES, validate_chain


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _decoy(real: Issued, root: Issued) -> bytes:
    """A certificate named like `real`, with its key identifier, but another key of its kind:
    it may have issued what `real` issued until its signature is checked."""
    key = new_key("rsa")
    ski = real.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(real.cert.subject)
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(ski, False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .sign(key, hashes.SHA256())
    )
    return _der(cert)


@pytest.fixture(scope="module")
def pki() -> tuple[Issued, Issued, Issued]:
    root = issue("limits root", ca=True)
    inter = issue("limits intermediate", issuer=root, ca=True, path_length=0)
    leaf = issue("limits client", issuer=inter, key="ec", eku=CLIENT)
    return root, inter, leaf


def test_a_chain_longer_than_a_path_can_be_is_refused_before_any_signature(
    pki: tuple[Issued, Issued, Issued],
) -> None:
    # Before: each decoy ahead of the real intermediate was checked, a signature each (up to
    # a second of CPU per handshake of a client offering them to a server asking for one).
    root, inter, leaf = pki
    decoys = [_decoy(inter, root) for _ in range(20)]
    chain = [_der(leaf.cert), *decoys, _der(inter.cert)]
    anchors = [Certificate(_der(root.cert))]
    started = time.perf_counter()
    with pytest.raises(BadCertificate) as err:
        validate_chain(chain, anchors, purpose="clientAuth", now=time.time())
    assert err.value.reason == PATH_TOO_LONG
    assert f"the peer sent 22 certificates; a chain has at most {MAX_CHAIN}" in str(err.value)
    assert time.perf_counter() - started < 0.5


def test_signatures_tried_are_bounded_and_a_few_decoys_do_not_hide_a_good_path(
    pki: tuple[Issued, Issued, Issued],
) -> None:
    root, inter, leaf = pki
    anchors = [Certificate(_der(root.cert))]
    few = [_der(leaf.cert), *[_decoy(inter, root) for _ in range(3)], _der(inter.cert)]
    path = validate_chain(few, anchors, purpose="clientAuth", now=time.time())
    assert [p.subject_text for p in path][-2:] == ["CN=limits intermediate", "CN=limits root"]
    # As many decoys as a chain may hold: each is tried once, within the budget.
    import summon.tls.x509.path as path_module

    many = [_der(leaf.cert), *[_decoy(inter, root) for _ in range(MAX_CHAIN - 1)]]
    calls = 0
    real = path_module.verify_signature

    def counting(child: Certificate, issuer: Certificate) -> bool:
        nonlocal calls
        calls += 1
        return real(child, issuer)

    path_module.verify_signature = counting  # type: ignore[assignment]
    try:
        with pytest.raises(BadCertificate) as err:
            validate_chain(many, anchors, purpose="clientAuth", now=time.time())
    finally:
        path_module.verify_signature = real
    assert err.value.reason == BAD_SIGNATURE
    assert calls <= MAX_SIGNATURES
