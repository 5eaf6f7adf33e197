"""The local image store: an OCI image layout (oci-layout, index.json, blobs/sha256) with tags.

Blobs are written to a temporary name and renamed into place once their digest is known, and
every read checks the digest, so a torn write or a tampered file never passes as an image.
index.json is rewritten whole under a lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from summon.errors import CorruptBlob, UnknownImage, UserError
from summon.store import scratch
from summon.store.descriptor import DIGEST_RE as _DIGEST_RE
from summon.store.descriptor import Descriptor as Descriptor  # re-exported: its old home

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# An image whose tag moved to another (a rebuild, a pull, `summon tag`) and that no other tag
# names: kept, listed as <none>, reachable by ID, until `summon rmi` removes it. The value is
# the tag it had.
UNTAGGED = "dev.summon.untagged"

# An optional `host:port/` first (a registry, as in 127.0.0.1:5000/team/http:v1, or
# [::1]:5000/team/http:v1), then the name.
_REF_RE = re.compile(
    r"^(?:[A-Za-z0-9.-]+:[0-9]{1,5}/|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?\Z"
)
_CHUNK = 1 << 20
MAX_NAME = 255  # the distribution reference's limit (docker's): the name without its tag


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding summon writes, so the same content gives the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def normalize_ref(ref: str) -> str:
    """`http` -> `http:latest`; raise for a name no registry would accept."""
    if not _REF_RE.match(ref):
        raise UserError(f"{ref!r} is not a valid image name; use NAME or NAME:TAG (lowercase)")
    last = ref.rsplit("/", 1)[-1]
    name = ref[: len(ref) - len(last) + last.index(":")] if ":" in last else ref
    if len(name) > MAX_NAME:  # `build -t` took 5000 letters, which no registry would take
        raise UserError(f"{name[:20]!r}...: an image name is at most {MAX_NAME} characters "
                        f"({len(name)} given)")  # fmt: skip
    return ref if ":" in last else f"{ref}:latest"


class BlobWriter:
    """Streams one blob to a temporary file, hashing as it goes; commit() renames it in."""

    def __init__(self, store: Store) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        with self._store.disk_full_said():
            self._file.write(data)
        self.size += len(data)
        return len(data)

    def commit(self, media_type: str, expect: str | None = None, **kw: Any) -> Descriptor:
        with self._store.disk_full_said():
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        digest = "sha256:" + self._hash.hexdigest()
        if expect is not None and digest != expect:
            self.abort()
            raise CorruptBlob(f"blob {expect} arrived with digest {digest}; refused")
        os.chmod(self._tmp, 0o644)
        with self._store.holding(digest):
            self._store.wrote(digest)
            os.replace(self._tmp, self._store.blob_path(digest))
        return Descriptor(media_type, digest, self.size, **kw)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class Store:
    """One OCI image layout on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_root = root / ".tmp"
        self.written: list[str] = []  # the blobs this process put in, that were not there
        try:
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            self.tmp_root.mkdir(exist_ok=True)
            layout = root / "oci-layout"
            if not layout.exists():
                atomic_write(layout, canonical_json({"imageLayoutVersion": "1.0.0"}))
            if not (root / "index.json").exists():
                atomic_write(root / "index.json", canonical_json(_empty_index()))
        except OSError as e:
            raise UserError(
                f"cannot use the image store at {root}: {e.strerror}; make that a folder summon "
                "can write, or set SUMMON_STORE to one"
            ) from None

    @contextlib.contextmanager
    def disk_full_said(self) -> Iterator[None]:
        """A full disk under the store as one line that names the store and what to do."""
        try:
            yield
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise UserError(
                f"no space left on the disk of the image store {self.root} ({e.strerror}); "
                "free some space there: summon rmi --dangling removes the images no tag names"
            ) from None

    @property
    def tmp_dir(self) -> Path:
        """This process's folder for temporaries, left alone by others' gc (scratch.py)."""
        return scratch.process_dir(self.tmp_root, self._locked)

    # blobs

    def blob_path(self, digest: str) -> Path:
        if not _DIGEST_RE.match(digest):
            raise CorruptBlob(f"{digest!r} is not a sha256 digest")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def holding(self, digest: str) -> Iterator[None]:
        """Lease DIGEST to this process, then the block (under gc's lock) puts it in or finds it."""
        folder = self.tmp_dir  # (made under the lock: not inside it)
        with self._locked():
            scratch.lease(folder, digest)
            yield

    def hold(self, digest: str) -> bool:
        """Whether the store has DIGEST, leased to this process (holding) if so."""
        with self.holding(digest):
            return self.has(digest)

    def wrote(self, digest: str) -> None:
        """Note (under the lock, before it goes in) a blob this process puts in: undo.py."""
        if not self.has(digest):
            self.written.append(digest)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes, media_type: str, **kw: Any) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.hold(digest):
            return Descriptor(media_type, digest, len(data), **kw)
        w = self.writer()
        try:
            w.write(data)
            return w.commit(media_type, **kw)
        except BaseException:
            w.abort()
            raise

    def put_json(self, obj: Any, media_type: str, **kw: Any) -> Descriptor:
        return self.put_bytes(canonical_json(obj), media_type, **kw)

    def put_file(self, path: Path, media_type: str) -> Descriptor:
        """Move a finished file (in tmp_dir, made by a tool) into the store under its digest."""
        try:
            with path.open("rb") as f:
                digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
                os.fsync(f.fileno())
            size = path.stat().st_size
            os.chmod(path, 0o644)
            with self.holding(digest):
                self.wrote(digest)
                os.replace(path, self.blob_path(digest))
        finally:
            path.unlink(missing_ok=True)
        return Descriptor(media_type, digest, size)

    def put_artifact(
        self,
        artifact_type: str,
        layers: list[Descriptor],
        subject: Descriptor,
        annotations: dict[str, str] | None = None,
    ) -> Descriptor:
        """An OCI artifact manifest (empty config) of artifact_type about subject: how a bill of
        materials, a boot artifact and a signature each refer to the image they belong to."""
        empty = self.put_bytes(b"{}", EMPTY)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": artifact_type,
            "config": empty.to_json(),
            "layers": [layer.to_json() for layer in layers],
            "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        return self.put_json(manifest, MANIFEST, artifact_type=artifact_type)

    def read(self, desc_or_digest: Descriptor | str) -> bytes:
        """The whole blob, checked against its digest (and size, given a descriptor)."""
        digest = desc_or_digest if isinstance(desc_or_digest, str) else desc_or_digest.digest
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptBlob(f"blob {digest} is missing from the store at {self.root}") from None
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise CorruptBlob(f"blob {digest} is corrupt: its content hashes to {actual}")
        if isinstance(desc_or_digest, Descriptor) and desc_or_digest.size != len(data):
            raise CorruptBlob(
                f"blob {digest} is {len(data)} bytes, its descriptor says {desc_or_digest.size}"
            )
        return data

    def read_json(self, desc: Descriptor | str) -> Any:
        digest = desc if isinstance(desc, str) else desc.digest
        try:
            return json.loads(self.read(desc))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise CorruptBlob(f"blob {digest} is not valid JSON") from None

    @contextlib.contextmanager
    def open_verified(self, desc: Descriptor) -> Iterator[_HashingReader]:
        """A file on the blob; when the block ends having read it all, the digest is checked.

        Callers must not commit anything made from the content until the block has exited.
        """
        path = self.blob_path(desc.digest)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise CorruptBlob(
                f"blob {desc.digest} is missing from the store at {self.root}"
            ) from None
        reader = _HashingReader(f)
        try:
            yield reader
            while reader.read(_CHUNK):
                pass
        finally:
            f.close()
        actual = "sha256:" + reader.hash.hexdigest()
        if actual != desc.digest or reader.size != desc.size:
            raise CorruptBlob(f"blob {desc.digest} is corrupt: its content hashes to {actual}")

    def verify(self, desc: Descriptor) -> Path:
        """The blob's path, once its whole content has been checked against its digest."""
        path = self.blob_path(desc.digest)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise CorruptBlob(
                f"blob {desc.digest} is missing from the store at {self.root}"
            ) from None
        with f:
            # file_digest reads into one buffer: 2-3 times the speed of a read() loop.
            actual = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            size = f.tell()
        if actual != desc.digest or size != desc.size:
            raise CorruptBlob(f"blob {desc.digest} is corrupt: its content hashes to {actual}")
        return path

    # the index and its tags

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_bytes())
        except FileNotFoundError:
            return _empty_index()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptBlob(f"{path} is not valid JSON; the store is damaged") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise CorruptBlob(f"{path} is not an OCI image index; the store is damaged")
        return index

    def refs(self) -> list[tuple[str, Descriptor]]:
        """Every tag in the store, with the descriptor it names, in index order."""
        out = []
        for d in self._read_index()["manifests"]:
            desc = Descriptor.from_json(d, "index.json")
            if REF_NAME in desc.annotations:  # untagged entries are referrers (signatures)
                out.append((desc.annotations[REF_NAME], desc))
        return out

    def untagged(self) -> list[Descriptor]:
        """The images a tag moved away from, which no tag names (UNTAGGED), in index order."""
        return [
            desc
            for desc in (
                Descriptor.from_json(d, "index.json") for d in self._read_index()["manifests"]
            )
            if UNTAGGED in desc.annotations
        ]

    # referrers: manifests whose `subject` names another (signatures), untagged in index.json,
    # kept while their subject is reachable

    def add_referrer(self, desc: Descriptor) -> None:
        """List a manifest already in the store, whose subject is an image, in index.json."""
        with self._locked():
            index = self._read_index()
            if any(d.get("digest") == desc.digest for d in index["manifests"]):
                return
            index["manifests"].append(desc.to_json())
            self._write_index(index)

    def _write_index(self, index: dict[str, Any]) -> None:
        """index.json replaced by index (under the lock), or as it was and one line saying
        why: `summon tag` on a full disk said only "No space left on device"."""
        with self.disk_full_said():
            atomic_write(self.root / "index.json", canonical_json(index))

    def referrers(self, subject: str) -> list[Descriptor]:
        """The referrers whose subject is SUBJECT, in the order they were added."""
        return self._referrers(self._read_index(), strict=True).get(subject, [])

    def _referrers(self, index: dict[str, Any], strict: bool) -> dict[str, list[Descriptor]]:
        """Referrers by subject; unless STRICT, a damaged one is left out (so gc drops it)."""
        out: dict[str, list[Descriptor]] = {}
        for d in index["manifests"]:
            desc = Descriptor.from_json(d, "index.json")
            if _is_image(d) or desc.media_type != MANIFEST:
                continue
            try:
                doc = self.read_json(desc)
            except CorruptBlob:
                if strict:
                    raise
                continue
            subject = (doc.get("subject") if isinstance(doc, dict) else None) or {}
            if isinstance(subject.get("digest"), str):
                out.setdefault(subject["digest"], []).append(desc)
        return out

    def tag(self, ref: str, desc: Descriptor, keep_old: bool = True) -> Descriptor | None:
        """Point ref at desc. The image it named before, if no other tag names it, stays in
        the store untagged (UNTAGGED), as docker keeps a <none> image, and is returned;
        unless not keep_old (desc supersedes it: the same image with more in its index)."""
        ref = normalize_ref(ref)
        with self._locked():
            index = self._read_index()
            kept, moved = [], None
            for d in index["manifests"]:
                if _annotations(d).get(REF_NAME) == ref:
                    moved = Descriptor.from_json(d, "index.json")
                elif not (UNTAGGED in _annotations(d) and d.get("digest") == desc.digest):
                    kept.append(d)  # (desc's own untagged entry goes: it is tagged now)
            if (
                keep_old
                and moved is not None
                and moved.digest != desc.digest
                and not any(d.get("digest") == moved.digest and _is_image(d) for d in kept)
            ):
                ann = {k: v for k, v in moved.annotations.items() if k != REF_NAME}
                left = dataclasses.replace(moved, annotations={**ann, UNTAGGED: ref})
                kept.append(left.to_json())
            else:
                left = None
            ann = dict(desc.annotations)
            ann.pop(UNTAGGED, None)
            ann[REF_NAME] = ref
            kept.append(
                Descriptor(
                    desc.media_type, desc.digest, desc.size, ann, desc.artifact_type, desc.platform
                ).to_json()
            )
            index["manifests"] = kept
            self._write_index(index)
        return left

    def untag(self, ref: str) -> Descriptor:
        full, desc = self.resolve(ref)
        with self._locked():
            index = self._read_index()
            index["manifests"] = [
                d for d in index["manifests"] if (d.get("annotations") or {}).get(REF_NAME) != full
            ]
            self._write_index(index)
        return desc

    def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """A tag (`http`, `http:v1`), a digest, or an unambiguous image-ID prefix; the tag it
        names, or "" for an untagged image (UNTAGGED)."""
        refs = self.refs()
        with contextlib.suppress(UserError):
            full = normalize_ref(ref)
            for name, desc in refs:
                if name == full:
                    return name, desc
        hexpart = ref.removeprefix("sha256:")
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            named = [*(("", desc) for desc in self.untagged()), *refs]
            hits = {
                desc.digest: (name, desc)
                for name, desc in named  # the last tag of a digest wins, any tag over none
                if desc.digest[7:].startswith(hexpart)
            }
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                raise UnknownImage(f"image ID {ref!r} is ambiguous; give more of it")
        raise UnknownImage(_unknown(ref, [name for name, _ in refs]))

    # garbage collection

    def reachable(self, index: dict[str, Any] | None = None) -> set[str]:
        """Every digest reachable from index.json (or from the index document given)."""
        index = self._read_index() if index is None else index
        seen: set[str] = set()
        todo = [Descriptor.from_json(d, "index.json") for d in index["manifests"] if _is_image(d)]
        referrers = self._referrers(index, strict=False)
        while todo:
            desc = todo.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            todo.extend(referrers.get(desc.digest, []))
            if desc.media_type in (INDEX, MANIFEST) and self.has(desc.digest):
                doc = self.read_json(desc)
                for key in ("manifests", "layers"):
                    for child in doc.get(key) or []:
                        todo.append(Descriptor.from_json(child, desc.digest))
                if "config" in doc:
                    todo.append(Descriptor.from_json(doc["config"], desc.digest))
        return seen

    def gc(self) -> tuple[int, int]:
        """Remove unreferenced blobs and stale temporaries; return (blobs removed, bytes freed)."""
        return self.remove([])

    def remove(
        self, refs: list[str], before_delete: Callable[[set[str]], None] = lambda gone: None
    ) -> tuple[int, int]:
        """Untag refs (full names; an untagged image by its digest), then remove every blob
        nothing reaches any more and the stale temporaries; return (blobs removed, bytes freed).

        It works on a full disk: temporaries go first, then the blobs only the removed tags
        reached, and index.json is rewritten last, in the room they left. A blob removed
        before the index is rewritten is one no remaining tag needs, so an interruption in
        between leaves only a dangling tag that the next `rmi` finishes. before_delete is
        told the digests about to go (the verified mounts of an image's root are released).
        """
        with self._locked():
            self._clear_temporaries()
            index = self._read_index()
            names = set(refs)
            kept = [
                d
                for d in index["manifests"]
                if _annotations(d).get(REF_NAME) not in names
                and not (UNTAGGED in _annotations(d) and d.get("digest") in names)
            ]
            after = {**index, "manifests": kept}
            keep = self.reachable(after)
            after["manifests"] = [d for d in kept if d.get("digest") in keep]
            gone = {
                "sha256:" + path.name
                for path in (self.root / "blobs" / "sha256").iterdir()
                if "sha256:" + path.name not in keep
            }
            # What a build or pull elsewhere holds (read after the listing: scratch.py).
            gone -= scratch.leased(self.tmp_root, scratch.own_dir(self.tmp_root))
            before_delete(gone)
            removed = freed = 0
            for digest in sorted(gone):
                path = self.blob_path(digest)
                with contextlib.suppress(FileNotFoundError):
                    freed += path.stat().st_size
                    path.unlink()
                    removed += 1
            if after["manifests"] != index["manifests"]:
                try:
                    atomic_write(self.root / "index.json", canonical_json(after))
                except OSError as e:
                    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    raise UserError(
                        f"cannot rewrite {self.root / 'index.json'}: no space left on the "
                        f"store's disk even after removing {removed} unshared blobs "
                        f"({freed} bytes); free some space there and run the command again"
                    ) from None
        return removed, freed

    def _clear_temporaries(self) -> None:
        """Remove what dead processes left in tmp_root, and index.json temporaries."""
        scratch.clear_stale(self.tmp_root)
        for path in self.root.glob(".index.json-*"):
            path.unlink(missing_ok=True)


class _HashingReader:
    """A read-only file wrapper that hashes everything read through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _unknown(ref: str, tags: list[str]) -> str:
    """No image ref: and, for a name without a tag, the tags the store has of that name (a
    build tags NAME:VERSION, and `summon run NAME` looked for NAME:latest, saying only
    "build or pull it" of the image just built)."""
    last = ref.rsplit("/", 1)[-1]
    others = [t for t in tags if t.rpartition(":")[0] == ref] if ":" not in last else []
    if others:
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        return f"no image {ref}:latest in the store; it has {shown}: give the tag"
    return f"no image {ref!r} in the store (`summon images`): build or pull it"


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}


def atomic_write(path: Path, data: bytes) -> None:
    """data into path whole or not at all: a temporary file beside it, fsynced, renamed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a write's: name the file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _annotations(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("annotations") or {}


def _is_image(entry: dict[str, Any]) -> bool:
    """An index.json entry for an image, tagged or untagged (the rest are referrers)."""
    return REF_NAME in _annotations(entry) or UNTAGGED in _annotations(entry)
