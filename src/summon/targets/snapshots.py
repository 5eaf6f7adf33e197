"""The snapshot cache: saved states of instances, from which a target resumes instead of booting.

A snapshot is code (it holds the guest's memory: kernel, interpreter, app), so it is handled
as the image store handles blobs: written to a temporary folder and renamed whole, stored with
its digest, and verified before every use. Verification is in the read path itself: the state
is split in CHUNK-sized pieces, each with its own BLAKE2b-256 digest, and verified() checks
each piece before it hands it on, so the reader (QEMU) never sees a byte that was not checked,
and the check runs while the reader starts and works rather than before. (BLAKE2b: measured
870 MB/s here against sha256's 440; a 40 MB snapshot is ~45 ms of hashing, most of it hidden
behind QEMU's own start.) The snapshot's digest is the BLAKE2b-256 of its chunk digests; its
record binds the key, digest and size with an HMAC under a key only this host has
(<state>/snapshot.key, 0600), so a state and record swapped in together are refused as well
as a damaged one.

Layout: <cache>/snapshots/<key>/ holds `state` (the target's bytes: QEMU's migration stream)
and `snapshot.json` (digest, chunk digests, size, HMAC, the target, what the key was made of).
The key is the sha256 of everything that shapes the guest (key_of()); the target decides what
that is. The folder's mtime is its last use: past the size bound (config.toml
`snapshot_cache_size`, default 1 GiB; 0 turns snapshots off) the least recently used go first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import SummonError, UserError
from summon.hostkeys import host_key

CHUNK = 1024 * 1024  # verified piece: ~1 ms of hashing, so the reader never waits long
HASH = "blake2b-256"
DEFAULT_LIMIT = 1024 * 1024 * 1024
CONFIG_KEY = "snapshot_cache_size"
STATE = "state"
RECORD = "snapshot.json"
FORMAT = 2  # 2: the record's `about` is under the HMAC too (its `listening` is acted on)
_TMP = ".tmp-"
# SnapshotWriter's folder (key prefix, random part, pid) and remove()'s (key, pid); the pid is
# for people (it is the writer's in its own pid namespace), _sweep goes by a lock.
_TEMPORARY = re.compile(r"\.tmp-(?:[0-9a-f]{16}(?:-[0-9a-f]{8})?|rm-[0-9a-f]{64})-(\d+)\Z")
# Seconds a writer's new folder is left alone by _sweep even unlocked (made, not locked yet).
SWEEP_GRACE = 60.0
# A record lists ~70 bytes per MiB of state: 16 MiB would be a 230 GiB snapshot.
MAX_RECORD = 16 * 1024 * 1024


class CorruptSnapshot(SummonError):
    """A snapshot's state or record does not match what was stored: never restored."""


def key_of(material: dict[str, Any]) -> str:
    """The cache key of a guest: sha256 of the canonical JSON of what shapes it."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def is_key(name: str) -> bool:
    """Whether name is a snapshot key (key_of's sha256 hex): the only names the cache owns."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def cache_limit() -> int:
    """The cache's size bound in bytes: config.toml's snapshot_cache_size, else 1 GiB."""
    # The file store.policy.config_file() names (store.signing, beside it, would load
    # cryptography, ~60 ms, into every VM start).
    path = paths.config_dir() / "config.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return DEFAULT_LIMIT
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    value = doc.get(CONFIG_KEY)
    if value is None:
        return DEFAULT_LIMIT
    from summon.manifest import parse_size

    size = parse_size(value, lambda why: UserError(f"{path}: {CONFIG_KEY}: {why}"))
    if size < 0:
        raise UserError(f"{path}: {CONFIG_KEY} must not be negative")
    return size


@dataclass(frozen=True)
class Snapshot:
    """One cached snapshot, as its record says (find() has checked the record's HMAC)."""

    key: str
    folder: Path
    target: str
    size: int  # bytes of state
    digest: str  # "blake2b-256:" + the hash of the chunk digests
    chunks: tuple[str, ...]  # the hex digest of each CHUNK of state, in order
    created: float
    last_used: float
    about: dict[str, Any]  # what the key was made of, for people (image, memory...)

    @property
    def state(self) -> Path:
        return self.folder / STATE


def _host_key() -> bytes:
    """This host's key for snapshot records (summon.hostkeys)."""
    return host_key("snapshot")


def _mac(key: str, target: str, digest: str, size: int, about: dict[str, Any]) -> str:
    told = json.dumps(about, sort_keys=True, separators=(",", ":"), default=str)
    message = f"summon snapshot v{FORMAT}\n{key}\n{target}\n{digest}\n{size}\n{told}\n"
    return hmac.new(_host_key(), message.encode(), hashlib.sha256).hexdigest()


def _hash(data: bytes | memoryview = b"") -> hashlib.blake2b:
    return hashlib.blake2b(data, digest_size=32)


def _root(chunks: list[str] | tuple[str, ...]) -> str:
    return f"{HASH}:" + _hash(b"".join(bytes.fromhex(c) for c in chunks)).hexdigest()


def cache_root() -> Path:
    """Where snapshots are kept: $SUMMON_SNAPSHOTS (tests, benchmarks), else <cache>/snapshots."""
    given = os.environ.get("SUMMON_SNAPSHOTS")
    if given and not os.path.isabs(given):
        # A detached instance runs from its own folder (and `summon start` from anywhere):
        # a relative folder would put its snapshots where `summon snapshot ls` never looks.
        raise UserError(f"SUMMON_SNAPSHOTS must be an absolute folder, not {given!r}")
    return Path(given) if given else paths.cache_dir() / "snapshots"


class SnapshotCache:
    """The snapshots under one folder (default cache_root()), bounded by `limit` bytes."""

    def __init__(self, root: Path | None = None, limit: int | None = None) -> None:
        self.root = root or cache_root()
        self._limit = limit

    @property
    def limit(self) -> int:
        if self._limit is None:
            self._limit = cache_limit()
        return self._limit

    def find(self, key: str) -> Snapshot | None:
        """The snapshot stored under key, None if there is none; CorruptSnapshot if its record
        is unreadable, does not fit its state's size, or fails its HMAC."""
        folder = self.root / key
        try:
            text = _read_record(folder / RECORD, key)
            st = os.stat(folder)
        except FileNotFoundError:
            # Folders appear whole (renamed with their record): one without is damaged.
            if os.path.lexists(folder):
                raise CorruptSnapshot(f"snapshot {key[:12]}: its record is missing") from None
            return None
        except NotADirectoryError:
            if not os.path.isdir(self.root):  # no cache at all: no snapshot in it
                return None
            # A file where the snapshot's folder belongs (ls shows it refused; rm takes it).
            raise CorruptSnapshot(f"snapshot {key[:12]}: it is not a folder") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CorruptSnapshot(f"snapshot {key[:12]}: cannot read its record: {e}") from None
        try:
            doc = json.loads(text)
            chunks = tuple(str(c) for c in doc["chunks"])
            snap = Snapshot(
                key=key,
                folder=folder,
                target=str(doc["target"]),
                size=int(doc["size"]),
                digest=str(doc["digest"]),
                chunks=chunks,
                created=float(doc["created"]),
                last_used=st.st_mtime,
                about=dict(doc.get("about") or {}),
            )
            mac = str(doc["mac"])
            root = _root(chunks)
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise CorruptSnapshot(f"snapshot {key[:12]}: its record is malformed ({e})") from None
        if doc.get("format") != FORMAT or doc.get("key") != key:
            raise CorruptSnapshot(f"snapshot {key[:12]}: its record is for another key or format")
        if root != snap.digest or len(chunks) != -(-snap.size // CHUNK):
            raise CorruptSnapshot(f"snapshot {key[:12]}: its chunk list does not make its digest")
        if not hmac.compare_digest(mac, _mac(key, snap.target, snap.digest, snap.size, snap.about)):
            raise CorruptSnapshot(f"snapshot {key[:12]}: its record fails this host's HMAC")
        try:
            st = snap.state.stat()
        except OSError:
            raise CorruptSnapshot(f"snapshot {key[:12]}: its state is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise CorruptSnapshot(f"snapshot {key[:12]}: its state is not a regular file")
        actual = st.st_size
        if actual != snap.size:
            raise CorruptSnapshot(
                f"snapshot {key[:12]}: its state holds {actual} bytes, its record says {snap.size}"
            )
        return snap

    def used(self, snap: Snapshot) -> None:
        """Mark snap as just used (the eviction order)."""
        with contextlib.suppress(OSError):
            os.utime(snap.folder)

    def entries(self) -> list[tuple[str, Snapshot | CorruptSnapshot]]:
        """(key, snapshot or why it is refused) for every snapshot, most recently used first."""
        found: list[tuple[str, Snapshot | CorruptSnapshot]] = []
        for name in self._keys():
            try:
                snap = self.find(name)
            except CorruptSnapshot as e:
                found.append((name, e))
                continue
            if snap is not None:
                found.append((name, snap))
        return found

    def _keys(self) -> list[str]:
        """The names in the cache that are keys, most recently used first (no record read)."""
        try:
            names = sorted(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError):  # no cache (yet): no snapshots
            return []
        # Others are not the cache's: left alone by ls, rm --all and eviction.
        keys = [name for name in names if is_key(name)]
        keys.sort(key=lambda key: -_mtime(self.root / key))
        return keys

    def folder_size(self, key: str) -> int:
        total = 0
        for path in (self.root / key).glob("*"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def remove(self, key: str) -> bool:
        """Remove the snapshot under key (renamed away first, so no reader sees half of it)."""
        folder = self.root / key
        if not is_key(key) or not os.path.lexists(folder):
            return False
        doomed = self.root / f"{_TMP}rm-{key}-{os.getpid()}"
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            return False
        if doomed.is_dir() and not doomed.is_symlink():
            shutil.rmtree(doomed, ignore_errors=True)
        else:  # a stray file or link where a snapshot's folder belongs (ls shows it refused)
            doomed.unlink(missing_ok=True)
        return True

    def evict(self, keep: str = "") -> list[str]:
        """Remove least recently used snapshots until the cache fits its bound; their keys."""
        self._sweep()
        # By name and mtime alone: a start holds the bound on its way to a restore, where
        # reading every record (entries()) would cost ~0.1 ms a snapshot.
        keys = self._keys()
        sizes = {key: self.folder_size(key) for key in keys}
        total = sum(sizes.values())
        removed = []
        if sizes.get(keep, 0) > self.limit:  # alone too large: it goes, the others as needed
            if self.remove(keep):
                removed.append(keep)
                total -= sizes[keep]
        for key in [key for key in reversed(keys) if key != keep]:  # least recent first
            if total <= self.limit:
                break
            if self.remove(key):
                removed.append(key)
                total -= sizes[key]
        return removed

    def _sweep(self) -> None:
        """Remove temporary folders whose writer is gone (killed mid-write), and what a
        remove() killed midway left.

        A writer holds a lock on its folder while it lives: the pid in the name cannot say,
        as writers run in instances' pid namespaces (a detached instance's monitor is pid 2
        there, whose number on the host is kthreadd's: its leftovers were never swept, and
        a live writer whose number was free here was swept under it).
        """
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if not _TEMPORARY.match(name):  # a writer's or remove()'s, no other name
                continue
            path = self.root / name
            # remove()'s are doomed whoever removes them; a writer's once nobody holds them.
            if name.startswith(f"{_TMP}rm-") or _abandoned(path):
                shutil.rmtree(path, ignore_errors=True)

    def writer(self, key: str, target: str, about: dict[str, Any]) -> SnapshotWriter:
        """A new snapshot under key, written by the caller's write() calls, then commit()."""
        self.root.mkdir(parents=True, exist_ok=True)
        return SnapshotWriter(self, key, target, about)


class SnapshotWriter:
    """One snapshot being written: state bytes in, hashed chunk by chunk; commit() or abort()."""

    def __init__(self, cache: SnapshotCache, key: str, target: str, about: dict[str, Any]):
        self.cache = cache
        self.key = key
        self.target = target
        self.about = about
        # Unique even within one process (a gateway may start two instances of one guest);
        # the pid last, for _sweep.
        self.folder = cache.root / f"{_TMP}{key[:16]}-{os.urandom(4).hex()}-{os.getpid()}"
        self.folder.mkdir(mode=0o700)
        self._held = -1
        try:
            # Held until commit() or abort(), or this process's end: _sweep's sign of life.
            self._held = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file = (self.folder / STATE).open("wb")
        except BaseException:
            self._release()
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._chunks: list[str] = []
        self._hash = _hash()
        self._filled = 0
        self.size = 0
        self.lost = False  # commit() found another writer's snapshot under key first

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        self._file.write(view)
        self.size += len(view)
        while view:
            take = min(len(view), CHUNK - self._filled)
            self._hash.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == CHUNK:
                self._chunks.append(self._hash.hexdigest())
                self._hash = _hash()
                self._filled = 0

    def commit(self) -> Snapshot:
        """Make the snapshot visible under its key (fsync'd, renamed); evict past the bound.

        A snapshot another process committed first under the same key wins; this one goes.
        """
        if self._filled:
            self._chunks.append(self._hash.hexdigest())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = _root(self._chunks)
        record = {
            "format": FORMAT,
            "key": self.key,
            "target": self.target,
            "size": self.size,
            "digest": digest,
            "chunks": self._chunks,
            "created": time.time(),
            "about": self.about,
            "mac": _mac(self.key, self.target, digest, self.size, self.about),
        }
        path = self.folder / RECORD
        with path.open("w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        final = self.cache.root / self.key
        try:
            os.rename(self.folder, final)
        except OSError as e:
            self.abort()
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            self.lost = True
        self._release()
        _fsync_dir(self.cache.root)
        self.cache.evict(keep=self.key)
        snap = self.cache.find(self.key)
        if snap is None:
            raise SummonError(
                f"snapshot {self.key[:12]} is larger than the cache's bound "
                f"({self.cache.limit} bytes, {CONFIG_KEY} in config.toml): not kept"
            )
        return snap

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._held >= 0:
            with contextlib.suppress(OSError):
                os.close(self._held)
            self._held = -1


def verified(snap: Snapshot) -> Iterator[bytes]:
    """snap's state a chunk at a time, each checked against its digest before it is yielded.

    Raises CorruptSnapshot at the first chunk that differs from the record (it is never
    yielded), or when the state is shorter or longer than recorded.
    """
    with os.fdopen(
        _open_regular(snap.state, f"snapshot {snap.key[:12]}: its state"), "rb", buffering=0
    ) as f:
        for index, expected in enumerate(snap.chunks):
            data = f.read(CHUNK)
            if not data or _hash(data).hexdigest() != expected:
                raise CorruptSnapshot(
                    f"snapshot {snap.key[:12]}: chunk {index} of its state does not match its "
                    f"digest {snap.digest}"
                )
            yield data
        if f.read(1):
            raise CorruptSnapshot(f"snapshot {snap.key[:12]}: its state is longer than recorded")


def feed(snap: Snapshot, write: Callable[[bytes], object]) -> None:
    """Hand snap's verified state to write(), a chunk at a time (see verified())."""
    for data in verified(snap):
        write(data)


def _open_regular(path: Path, what: str) -> int:
    """A read-only descriptor of path, which must be a regular file: a FIFO or device put in
    a snapshot's place would block the reader or never end (CorruptSnapshot naming `what`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CorruptSnapshot(f"{what} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _read_record(path: Path, key: str) -> str:
    """A snapshot's record (a regular file, at most MAX_RECORD bytes), as text."""
    with os.fdopen(_open_regular(path, f"snapshot {key[:12]}: its record"), "rb") as f:
        data = f.read(MAX_RECORD + 1)
    if len(data) > MAX_RECORD:
        raise CorruptSnapshot(f"snapshot {key[:12]}: its record is over {MAX_RECORD} bytes")
    return data.decode()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _abandoned(folder: Path) -> bool:
    """Whether a writer's temporary folder has nobody writing it: no lock on it, and not
    made in the last SWEEP_GRACE seconds (a writer locks it just after making it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone meanwhile, or not a folder (then not a writer's either)
    try:
        if time.time() - os.fstat(fd).st_mtime < SWEEP_GRACE:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: its writer holds it
        return False
    finally:
        os.close(fd)
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
