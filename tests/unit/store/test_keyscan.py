"""The private-key scan push and inspect use: what counts as a key, and where it looks."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from summon.errors import CorruptBlob
from summon.store.keyscan import looks_like_key, scan_layer, scan_stored
from summon.store.layout import LAYER_GZIP, Store


def layer(files: dict[str, bytes]) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return io.BytesIO(gzip.compress(raw.getvalue()))


def pem(key: object, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    )


def test_pem_keys_of_every_kind_are_found() -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for data in (
        pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
        pem(rsa_key, serialization.PrivateFormat.PKCS8),
        pem(ec_key, serialization.PrivateFormat.TraditionalOpenSSL),
        pem(ec_key, serialization.PrivateFormat.OpenSSH),
        b"config = 1\n" + pem(ec_key, serialization.PrivateFormat.PKCS8),  # inside another file
    ):
        assert looks_like_key("x.conf", data) == "a PEM private key block", data[:40]


def test_der_keys_are_found_by_their_structure_and_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert looks_like_key("server.der", der) == "a DER private key"
    assert looks_like_key("picture.png", der) == ""  # a DER-shaped blob that claims nothing


def test_certificates_and_public_keys_are_not_keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert looks_like_key("pub.pem", public) == ""
    assert looks_like_key("cert.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n") == ""


def test_the_scan_looks_at_the_apps_files_and_data_not_public_packages() -> None:
    key = pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    found = scan_layer(
        layer(
            {
                "app/app.py": b"print('hi')\n",
                "data/conf/server.key": key,
                "app/settings.py": b"KEY = '''" + key + b"'''\n",
                "usr/lib/summon/site/ecdsa-0.19.2.dist-info/METADATA": key,  # a README sample
            }
        )
    )
    assert found == [
        ("/data/conf/server.key", "a PEM private key block"),
        ("/app/settings.py", "a PEM private key block"),
    ]


def test_a_damaged_layer_blob_is_said_as_one_not_as_gzips_complaint(tmp_path: Path) -> None:
    # `summon inspect` of an image whose layer was altered said "the layer cannot be read to
    # look for keys: invalid compressed data", naming no blob.
    store = Store(tmp_path / "store")
    data = bytearray(layer({"app/app.py": b"print('hi')\n" * 500}).getvalue())
    desc = store.put_bytes(bytes(data), LAYER_GZIP)
    data[40:44] = b"XXXX"
    store.blob_path(desc.digest).write_bytes(bytes(data))
    with pytest.raises(CorruptBlob) as e:
        scan_stored(store, desc)
    assert str(e.value).startswith(f"blob {desc.digest} is corrupt: its content hashes to")
