"""Signatures: cosign's key-based format, kept as referrers of the image digest in the store."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from summon.errors import CorruptBlob, UserError
from summon.store.layout import INDEX, MANIFEST, Descriptor, Store
from summon.store.policy import default_verify_key
from summon.store.signing import (
    PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_TYPE,
    SignatureError,
    generate_key,
    load_private_key,
    payload,
    repository_of,
    sign,
    verify,
)


def make_image(store: Store, rootfs: bytes) -> Descriptor:
    layer = store.put_bytes(rootfs, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = store.put_json({"x": 1}, "application/vnd.oci.image.config.v1+json")
    manifest = store.put_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
        },
        MANIFEST,
    )
    return store.put_json(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest.to_json()]}, INDEX
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    s.tag("127.0.0.1:5000/team/http:v1", make_image(s, b"the rootfs"))
    return s


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "keys").mkdir()
    return generate_key(tmp_path / "keys" / "team")


def test_payload_is_cosigns_simple_signing_byte_for_byte() -> None:
    digest = "sha256:" + "ab" * 32
    assert payload("127.0.0.1:5000/team/http", digest) == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/team/http"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert repository_of("127.0.0.1:5000/team/http:v1") == "127.0.0.1:5000/team/http"
    assert repository_of("http:latest") == "http"


def test_key_pair_files(keys: tuple[Path, Path]) -> None:
    key, pub = keys
    assert key.name == "team.key" and pub.name == "team.pub"
    assert key.stat().st_mode & 0o777 == 0o600
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(UserError, match="exists already"):
        generate_key(key.with_suffix(""))
    assert sorted(p.name for p in key.parent.iterdir()) == ["team.key", "team.pub"]  # no tmp


def test_a_key_pair_is_never_half_written_or_a_folder_made_for_it(tmp_path: Path) -> None:
    """As ssh-keygen: a mistyped folder is an error, not a tree made where none was meant;
    a .pub already there is not overwritten, and the .key made before it is taken back."""
    with pytest.raises(UserError, match="is not a folder"):
        generate_key(tmp_path / "nonexistent" / "team")
    assert not (tmp_path / "nonexistent").exists()
    (tmp_path / "team.pub").write_text("someone else's\n")
    with pytest.raises(UserError, match=r"team\.pub exists already"):
        generate_key(tmp_path / "team")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team.pub"]
    assert (tmp_path / "team.pub").read_text() == "someone else's\n"


def test_sign_then_verify(store: Store, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    signed = sign(store, "127.0.0.1:5000/team/http:v1", key)
    assert not signed.already
    again = sign(store, "127.0.0.1:5000/team/http:v1", key)
    assert again.already and again.signature == signed.signature
    v = verify(store, "127.0.0.1:5000/team/http:v1", pub)
    assert v.digest == signed.digest and v.identity == "127.0.0.1:5000/team/http"
    # Another name for the same digest is the same image, signed.
    store.tag("http:copy", store.resolve("127.0.0.1:5000/team/http:v1")[1])
    assert verify(store, "http:copy", pub).signature == signed.signature

    # The stored manifest is a referrer of the index digest, in cosign's OCI 1.1 shape.
    sig = store.read_json(signed.signature)
    assert sig["artifactType"] == SIGNATURE_TYPE
    assert sig["subject"]["digest"] == signed.digest and sig["subject"]["mediaType"] == INDEX
    layer = sig["layers"][0]
    assert layer["mediaType"] == PAYLOAD_TYPE
    body = store.read(layer["digest"])
    assert json.loads(body)["critical"]["image"]["docker-manifest-digest"] == signed.digest
    # Anyone with the public key and `cryptography` (or cosign) can check it.
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]),
        body,
        ec.ECDSA(hashes.SHA256()),
    )


def test_unsigned_and_wrong_key_are_refused(
    store: Store, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, _ = keys
    with pytest.raises(SignatureError, match=r"is not signed"):
        verify(store, "127.0.0.1:5000/team/http:v1", keys[1])
    sign(store, "127.0.0.1:5000/team/http:v1", key)
    _, other_pub = generate_key(tmp_path / "other")
    with pytest.raises(SignatureError, match=r"none by this key") as e:
        verify(store, "127.0.0.1:5000/team/http:v1", other_pub)
    assert "\n" not in str(e.value) and "other.pub" in str(e.value)


def test_a_signature_moved_to_another_image_is_refused(
    store: Store, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    signed = sign(store, "127.0.0.1:5000/team/http:v1", key)
    victim = make_image(store, b"another rootfs")
    store.tag("evil", victim)
    # Re-point the genuine signature manifest's subject at the other image.
    sig = store.read_json(signed.signature)
    sig["subject"]["digest"] = victim.digest
    moved = store.put_json(sig, MANIFEST, artifact_type=SIGNATURE_TYPE)
    store.add_referrer(moved)
    with pytest.raises(SignatureError, match="for another image"):
        verify(store, "evil", pub)


def test_tampered_signature_payload_names_the_digest(store: Store, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    signed = sign(store, "127.0.0.1:5000/team/http:v1", key)
    layer = store.read_json(signed.signature)["layers"][0]
    store.blob_path(layer["digest"]).write_bytes(b'{"critical":{}}')
    with pytest.raises(CorruptBlob, match=layer["digest"]):
        verify(store, "127.0.0.1:5000/team/http:v1", pub)


def test_encrypted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = generate_key(tmp_path / "locked", password="open sesame")
    assert b"ENCRYPTED" in key.read_bytes()
    with pytest.raises(SignatureError, match="is encrypted; put its password in"):
        load_private_key(key)
    monkeypatch.setenv("SUMMON_KEY_PASSWORD", "wrong")
    with pytest.raises(SignatureError, match="not its password"):
        load_private_key(key)
    monkeypatch.setenv("SUMMON_KEY_PASSWORD", "open sesame")
    assert load_private_key(key).curve.name == "secp256r1"


def test_signatures_live_and_die_with_their_image(store: Store, keys: tuple[Path, Path]) -> None:
    signed = sign(store, "127.0.0.1:5000/team/http:v1", keys[0])
    # Untagged in index.json: not an image of its own.
    assert [r for r, _ in store.refs()] == ["127.0.0.1:5000/team/http:v1"]
    store.gc()
    assert store.has(signed.signature) and store.referrers(signed.digest)
    store.untag("127.0.0.1:5000/team/http:v1")
    store.gc()
    assert not store.has(signed.signature)
    index = json.loads((store.root / "index.json").read_text())
    assert index["manifests"] == []


def test_verify_key_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_verify_key() is None
    cfg = tmp_path / "summon" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('verify_key = "keys/team.pub"\n')
    assert default_verify_key() == tmp_path / "summon" / "keys" / "team.pub"
    cfg.write_text("verify_key = [")
    with pytest.raises(UserError, match="not valid TOML"):
        default_verify_key()
    cfg.write_text('snapshot_cache_size = "2G"\n')  # the snapshot cache's key is no stranger
    assert default_verify_key() is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # A typo of the key: every image ran unchecked, config.toml saying it was the rule.
        (
            'verify-key = "team.pub"\n',
            "unknown key 'verify-key' (did you mean verify_key?); "
            "known: verify_key, snapshot_cache_size",
        ),
        # Written from an unset variable: it read as no key set, the policy switched off.
        ('verify_key = ""\n', "verify_key = '': give a public key's path, or remove it"),
        ('verify_key = " "\n', "verify_key = ' ': give a public key's path, or remove it"),
    ],
)
def test_a_config_policy_that_says_nothing_clear_is_refused_by_the_verify_key_rule(
    text: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    cfg = tmp_path / "summon" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(text)
    with pytest.raises(UserError) as refused:
        default_verify_key()
    assert str(refused.value) == f"{cfg}: {said}"


def test_the_config_policy_reads_the_key_at_each_check_and_names_itself(
    store: Store, keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's check (SignaturePolicy): no key set lets any image start; a key set
    while it runs applies to the next boot, and the refusal names config.toml's rule."""
    from summon.store.policy import SignaturePolicy

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ref = "127.0.0.1:5000/team/http:v1"
    _, desc = store.resolve(ref)
    policy = SignaturePolicy()
    policy.check(store, desc, ref)  # no config.toml: nothing asked for
    cfg = tmp_path / "config" / "summon" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'verify_key = "{keys[1]}"\n')
    with pytest.raises(SignatureError) as e:
        policy.check(store, desc, ref)
    assert "is not signed" in str(e.value) and f"(refused by verify_key in {cfg})" in str(e.value)
    sign(store, ref, keys[0])
    policy.check(store, desc, ref)
    # Another key in the file: the image is checked again, not taken from the last check.
    _, other_pub = generate_key(tmp_path / "other")
    cfg.write_text(f'verify_key = "{other_pub}"\n')
    with pytest.raises(SignatureError, match=r"none by this key.*refused by verify_key"):
        policy.check(store, desc, ref)


def test_a_damaged_signature_does_not_hide_one_that_verifies(
    store: Store, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """One signature whose payload blob is gone (a store damaged, an rmi cut short) made
    every verification of the image fail, the good signature by the run's key included."""
    from summon.store.signing import require_signature

    ref = "127.0.0.1:5000/team/http:v1"
    other_key, other_pub = generate_key(tmp_path / "other")
    broken = sign(store, ref, other_key)
    payload_digest = store.read_json(broken.signature)["layers"][0]["digest"]
    store.blob_path(payload_digest).unlink()
    # Only the damaged one: said as damage, with the rule that asked.
    _, desc = store.resolve(ref)
    with pytest.raises(CorruptBlob) as e:
        require_signature(store, desc, ref, other_pub, "--verify-key")
    text = str(e.value)
    assert "is damaged" in text and payload_digest in text and "\n" not in text
    assert text.endswith("(refused by --verify-key)"), text
    # A good signature by the team key verifies, the damaged one beside it notwithstanding.
    sign(store, ref, keys[0])
    assert require_signature(store, desc, ref, keys[1], "--verify-key").digest == desc.digest


@pytest.mark.parametrize("which", ["sign", "verify"])
def test_a_key_path_naming_an_endless_file_is_one_line(
    store: Store, which: str, tmp_path: Path
) -> None:
    """--key /dev/zero (or a mistyped path into /dev, /proc) read until memory ran out."""
    ref = "127.0.0.1:5000/team/http:v1"
    with pytest.raises(SignatureError) as e:
        if which == "sign":
            sign(store, ref, Path("/dev/zero"))
        else:
            verify(store, ref, Path("/dev/zero"))
    assert "/dev/zero is not a PEM" in str(e.value) and "over 65536 bytes" in str(e.value)
