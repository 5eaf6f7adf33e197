"""Image signatures: cosign-compatible key-based signatures kept as OCI referrers of the image.

A signature signs the image index DIGEST, never a tag. It is what cosign writes for a key-based
signature in its OCI 1.1 mode (docs/signing.md has the format byte for byte):

- the payload is cosign's "simple signing" JSON naming the digest;
- the signature is ECDSA P-256 over SHA-256 of the payload, ASN.1 DER, base64, in the layer
  annotation `dev.cosignproject.cosign/signature`;
- the manifest holding them has artifactType `application/vnd.dev.cosign.artifact.sig.v1+json`
  and `subject` = the image index, so it travels as a referrer (Store.referrers locally, the
  referrers API or its fallback tag in a registry).

Keys are PEM files: a PKCS#8 private key (encrypted when SUMMON_KEY_PASSWORD is set) and a
SubjectPublicKeyInfo public key, the same public-key format `cosign verify --key` reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from summon.errors import CorruptBlob, UserError
from summon.store.layout import Descriptor, Store, canonical_json

# The policy `summon run` applies lives in policy.py, which it imports without this module.
from summon.store.policy import config_file, default_verify_key  # noqa: F401

SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
PASSWORD_ENV = "SUMMON_KEY_PASSWORD"


class SignatureError(UserError):
    """An image is unsigned, its signature does not verify, or a key cannot be used."""


# keys


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """A short, stable name for a public key: the start of the SHA-256 of its DER encoding."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:12]


def generate_key(prefix: Path, password: str | None = None) -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; never overwrite either."""
    key_path, pub_path = (
        prefix.with_name(prefix.name + ".key"),
        prefix.with_name(prefix.name + ".pub"),
    )
    for p in (key_path, pub_path):
        if p.exists():
            raise UserError(f"{p} exists already; choose another name or remove it")
    private = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    folder = key_path.parent
    if not folder.is_dir():
        # As ssh-keygen: a mistyped folder is an error, not a tree made where none was meant.
        raise UserError(f"cannot write the key pair {prefix}.key/.pub: {folder} is not a folder")
    written: list[Path] = []
    path = key_path
    try:
        for path, data, mode in ((key_path, pem, 0o600), (pub_path, pub, 0o644)):
            _write_new(path, data, mode)
            written.append(path)
    except OSError as e:
        for done in written:  # no half pair: a key without its .pub
            done.unlink(missing_ok=True)
        if isinstance(e, FileExistsError):
            raise UserError(f"{path} exists already; choose another name or remove it") from None
        raise UserError(f"cannot write the key pair {prefix}.key/.pub: {e.strerror}") from None
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """data at path, whole or not at all, never over a file there: written to a temporary
    name (mode set before any byte lands), fsynced, then linked into place (EEXIST if taken)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# A PEM key is a few hundred bytes: past this the file is not one (/dev/zero, a disk image).
MAX_KEY_FILE = 1 << 20


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise SignatureError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise SignatureError(f"the {what} {path} is over {MAX_KEY_FILE >> 20} MiB: not a key")
    return data


def load_private_key(path: Path, password: str | None = None) -> ec.EllipticCurvePrivateKey:
    data = _read_key_file(path, "private key")
    if b"ENCRYPTED SIGSTORE PRIVATE KEY" in data or b"ENCRYPTED COSIGN PRIVATE KEY" in data:
        raise SignatureError(
            f"{path} is a cosign-encrypted key, which summon does not read; make a key with "
            "`summon key generate` (cosign can import it: `cosign import-key-pair`)"
        )
    if password is None:
        password = os.environ.get(PASSWORD_ENV) or None
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        if password:
            raise SignatureError(f"{path} is not encrypted; unset {PASSWORD_ENV}") from None
        raise SignatureError(f"{path} is encrypted; put its password in {PASSWORD_ENV}") from None
    except ValueError:
        raise SignatureError(
            f"{path} is not a PEM private key"
            + (f", or {PASSWORD_ENV} is not its password" if password else "")
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SignatureError(
            f"{path} is not an ECDSA P-256 key; make one with `summon key generate`"
        )
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        hint = " (that is a private key; give the .pub)" if b"PRIVATE KEY" in data else ""
        raise SignatureError(f"{path} is not a PEM public key{hint}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SignatureError(f"{path} is not an ECDSA P-256 public key")
    return key


# payloads and signature manifests


def payload(docker_reference: str, digest: str) -> bytes:
    """cosign's simple-signing payload; canonical_json gives the bytes cosign itself writes."""
    return canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": COSIGN_TYPE,
            },
            "optional": None,
        }
    )


def repository_of(ref: str) -> str:
    """`127.0.0.1:5000/team/http:v1` -> `127.0.0.1:5000/team/http` (the payload's identity)."""
    last = ref.rsplit("/", 1)[-1]
    return ref[: len(ref) - len(last)] + last.split(":", 1)[0] if ":" in last else ref


@dataclass(frozen=True)
class SignResult:
    ref: str
    digest: str  # what was signed: the image index
    signature: str  # the digest of the signature manifest
    key_id: str
    already: bool  # the image had a signature by this key; none was added


@dataclass(frozen=True)
class Verified:
    ref: str
    digest: str
    signature: str
    key_id: str
    identity: str  # the docker-reference the signer named


def sign(store: Store, ref: str, key_path: Path) -> SignResult:
    """Sign the image REF names (its digest) with the private key at KEY_PATH."""
    name, desc = store.resolve(ref)
    private = load_private_key(key_path)
    kid = key_id(private.public_key())
    try:
        found = verify_digest(store, desc, private.public_key(), name or desc.digest)
        return SignResult(name, desc.digest, found.signature, kid, already=True)
    except SignatureError:
        pass
    body = payload(repository_of(name) if name else desc.digest, desc.digest)
    signature = private.sign(body, ec.ECDSA(hashes.SHA256()))
    payload_desc = store.put_bytes(
        body,
        PAYLOAD_TYPE,
        annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    )
    sig_desc = store.put_artifact(SIGNATURE_TYPE, [payload_desc], desc)
    store.add_referrer(sig_desc)
    return SignResult(name, desc.digest, sig_desc.digest, kid, already=False)


def verify(store: Store, ref: str, pub_path: Path) -> Verified:
    """Check that the image REF names carries a signature of its digest by the key at PUB_PATH."""
    name, desc = store.resolve(ref)
    return verify_digest(store, desc, load_public_key(pub_path), name or desc.digest, pub_path)


def verify_digest(
    store: Store,
    desc: Descriptor,
    public: ec.EllipticCurvePublicKey,
    ref: str,
    key_path: Path | None = None,
) -> Verified:
    kid = key_id(public)
    key_name = f"{key_path} (key ID {kid})" if key_path else f"key ID {kid}"
    candidates = [d for d in store.referrers(desc.digest) if d.artifact_type == SIGNATURE_TYPE]
    if not candidates:
        raise SignatureError(
            f"image {ref} ({desc.digest}) is not signed; sign it with `summon sign`, or pull "
            "it again with its signatures"
        )
    replayed = ""
    for sig in candidates:
        for body, raw in _signed_payloads(store, sig):
            try:
                public.verify(raw, body, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            critical = _critical(body)
            image = critical.get("image") or {}
            if critical.get("type") != COSIGN_TYPE or not isinstance(image, dict):
                continue
            if image.get("docker-manifest-digest") != desc.digest:
                # A genuine signature of another image, attached to this one.
                replayed = str(image.get("docker-manifest-digest"))
                continue
            identity = (critical.get("identity") or {}).get("docker-reference", "")
            return Verified(ref, desc.digest, sig.digest, kid, str(identity))
    if replayed:
        raise SignatureError(
            f"image {ref} ({desc.digest}) carries a signature by {key_name} that is for "
            f"another image ({replayed}); refused"
        )
    raise SignatureError(
        f"no signature on image {ref} ({desc.digest}) verifies with {key_name}: "
        f"{len(candidates)} signature(s), none by this key"
    )


def _signed_payloads(store: Store, sig: Descriptor) -> list[tuple[bytes, bytes]]:
    """(payload, raw signature) of each signed layer in a signature manifest."""
    manifest = store.read_json(sig)
    out = []
    for d in manifest.get("layers") or [] if isinstance(manifest, dict) else []:
        layer = Descriptor.from_json(d, sig.digest)
        encoded = layer.annotations.get(SIGNATURE_ANNOTATION)
        if layer.media_type != PAYLOAD_TYPE or not encoded:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue  # not a signature at all; it verifies nothing
        out.append((store.read(layer), raw))
    return out


def _critical(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
        critical = doc["critical"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
        raise CorruptBlob("a signed payload is not cosign simple-signing JSON") from None
    if not isinstance(critical, dict):
        raise CorruptBlob("a signed payload is not cosign simple-signing JSON")
    return critical


def require_signature(store: Store, desc: Descriptor, ref: str, key_path: Path) -> Verified:
    """What `summon run --verify-key` does before it starts anything: refuse unless signed."""
    return verify_digest(store, desc, load_public_key(key_path), ref, key_path)
