"""The object database: loose objects, packs, and the objects not yet written (pending).

New objects enter `pending` in memory (the journal holds what makes them, durably) and
reach the folder in batches through write_pending(): a few as loose files, more as one pack.
Reads look in pending, then the packs, then the loose files, and check every object read
from the folder against its id. Parsed trees and commits and recent values are cached: the
store reads the same few trees (the head's) over and over.
"""

from __future__ import annotations

import time

from summon.kv.errors import CorruptStore, UnknownCommit
from summon.kv.objects import (
    BLOB,
    COMMIT,
    EMPTY_TREE,
    TAG,
    TREE,
    CommitObject,
    decode_loose,
    encode_loose,
    object_id,
    parse_commit,
    parse_tag_target,
    parse_tree,
)
from summon.kv.pack import Pack, PackIndex
from summon.kv.packwrite import PackWriter

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from summon.kv.backend import Backend
    from summon.kv.objects import Entries, RawEntries

LOOSE_LIMIT = 16  # a batch of at most this many objects is written loose, more as a pack
TREE_CACHE = 4096  # parsed commits kept
# Entries of parsed trees kept: about 7 MB at most. Not more: an image's app has 64 MB or so,
# and gc reads the whole history through a second cache of its own (2,500 commits of a
# 97-key folder: 1 << 18 entries took gc to 91 MB of RSS, OOM-killed in a 64M sandbox;
# this bound, 38 MB, as fast).
TREE_CACHE_ENTRIES = 1 << 15
VALUE_CACHE_BYTES = 16 << 20  # blob bodies kept


class MissingObject(CorruptStore):
    """An object some other object or ref names is in none of the store's files."""


def loose_path(oid: bytes) -> str:
    h = oid.hex()
    return f"objects/{h[:2]}/{h[2:]}"


class ObjectStore:
    """Every object of one repository, read through a backend."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.pending: dict[bytes, tuple[bytes, bytes]] = {}
        self.delta_bases: dict[bytes, bytes] = {}  # pending id -> its previous version's id
        self.pending_bytes = 0  # of the bodies in pending: the batch's memory, bounded
        # The batch a background flush is writing: still read from here until it is done.
        self.flushing: dict[bytes, tuple[bytes, bytes]] | None = None
        self.packs: list[Pack] = []
        self.loose: set[bytes] = set()
        self._trees: dict[bytes, tuple[Entries, RawEntries | None]] = {}
        self._tree_entries = 0
        self._commits: dict[bytes, CommitObject] = {}
        self._values: dict[bytes, bytes] = {}
        self._value_bytes = 0

    def load(self) -> None:
        """Find the packs and loose objects in the folder."""
        names = {n for n, _ in self._backend.listdir("objects/pack")}
        for name in sorted(names):
            if name.startswith("pack-") and name.endswith(".idx"):
                stem = name[: -len(".idx")]
                if stem + ".pack" in names:
                    self._add_pack(f"objects/pack/{stem}")
            elif name.startswith("pack-") and name.endswith(".pack"):
                if name[: -len(".pack")] + ".idx" not in names:
                    # A power cut between writing a pack and its idx: nothing names its
                    # objects yet (refs are written after both), and Git ignores it.
                    self._backend.remove(f"objects/pack/{name}")
        for folder, is_dir in self._backend.listdir("objects"):
            if is_dir and len(folder) == 2:
                for name, _ in self._backend.listdir(f"objects/{folder}"):
                    if len(name) == 38 and not name.endswith(".lock"):
                        try:
                            self.loose.add(bytes.fromhex(folder + name))
                        except ValueError:
                            continue  # not an object (a temporary file of git's)

    def _add_pack(self, stem: str) -> None:
        index = PackIndex(self._backend.read(stem + ".idx"), stem + ".idx")
        self.packs.append(Pack(self._backend, stem + ".pack", index))

    # --- reading --------------------------------------------------------------------------

    def has(self, oid: bytes) -> bool:
        flushing = self.flushing
        return (
            oid in self.pending
            or (flushing is not None and oid in flushing)
            or oid in self.loose
            or any(oid in p for p in self.packs)
        )

    def read(self, oid: bytes) -> tuple[bytes, bytes]:
        """(kind, body) of `oid`; MissingObject if the store does not hold it."""
        found = self.pending.get(oid)
        if found is not None:
            return found
        flushing = self.flushing  # read once: a background flush may drop it meanwhile
        if flushing is not None:
            found = flushing.get(oid)
            if found is not None:
                return found
        for pack in self.packs:
            got = pack.read(oid, self.read)
            if got is not None:
                if object_id(*got) != oid:
                    raise CorruptStore(f"{pack.path}: object {oid.hex()} hashes to another id")
                return got
        if oid in self.loose:
            return decode_loose(self._backend.read(loose_path(oid)), oid)
        if oid == EMPTY_TREE:
            return TREE, b""  # Git knows the empty tree without storing it
        raise MissingObject(f"object {oid.hex()} is missing from {self._backend.describe()}")

    def _read_kind(self, oid: bytes, kind: bytes) -> bytes:
        got_kind, body = self.read(oid)
        if got_kind != kind:
            raise CorruptStore(
                f"object {oid.hex()} is a {got_kind.decode()}, not a {kind.decode()}"
            )
        return body

    def tree(self, oid: bytes) -> Entries:
        """The parsed tree `oid` (shared: never change it)."""
        found = self._trees.get(oid)
        if found is None:
            entries = parse_tree(self._read_kind(oid, TREE), oid)
            self.remember_tree(oid, entries, None)
            return entries
        return found[0]

    def tree_raw(self, oid: bytes) -> tuple[Entries, RawEntries]:
        """The parsed tree `oid` and the bytes of each entry, in its order (shared: never
        change them)."""
        found = self._trees.get(oid)
        if found is None or found[1] is None:
            raw: RawEntries = {}
            entries = parse_tree(self._read_kind(oid, TREE), oid, raw)
            self.remember_tree(oid, entries, raw)
            return entries, raw
        return found  # type: ignore[return-value]  # found[1] is not None here

    def forget_tree(self, oid: bytes) -> None:
        """Drop a tree a new version replaces from the cache: the head moves on, and old
        versions are read again only for history (parsed again then)."""
        found = self._trees.pop(oid, None)
        if found is not None:
            self._tree_entries -= len(found[0])

    def remember_tree(self, oid: bytes, entries: Entries, raw: RawEntries | None) -> None:
        if self._tree_entries + len(entries) > TREE_CACHE_ENTRIES:
            # Emptied at once: evicting one by one from the front of a dict gets slower
            # and slower (iteration skips the dead slots), and the head's trees come back.
            self._trees.clear()
            self._tree_entries = 0
        old = self._trees.get(oid)
        if old is not None:
            self._tree_entries -= len(old[0])
        self._trees[oid] = (entries, raw)
        self._tree_entries += len(entries)

    def commit(self, oid: bytes) -> CommitObject:
        """The parsed commit `oid`; UnknownCommit if there is no such object or not a commit."""
        found = self._commits.get(oid)
        if found is None:
            try:
                kind, body = self.read(oid)
            except MissingObject:
                raise UnknownCommit(f"no commit {oid.hex()} in the store") from None
            if kind != COMMIT:
                raise UnknownCommit(f"{oid.hex()} is a {kind.decode()}, not a commit")
            found = parse_commit(body, oid)
            self.remember_commit(oid, found)
        return found

    def remember_commit(self, oid: bytes, commit: CommitObject) -> None:
        if len(self._commits) >= TREE_CACHE:
            self._commits.clear()
        self._commits[oid] = commit

    def value(self, oid: bytes) -> bytes:
        """The body of the blob `oid`."""
        body = self._values.get(oid)
        if body is None:
            body = self._read_kind(oid, BLOB)
            if len(body) <= VALUE_CACHE_BYTES // 64:
                if self._value_bytes + len(body) > VALUE_CACHE_BYTES:
                    self._values.clear()
                    self._value_bytes = 0
                self._values[oid] = body
                self._value_bytes += len(body)
        return body

    def peel(self, oid: bytes) -> bytes | None:
        """The object an annotated tag `oid` finally points at; None if `oid` is no tag."""
        kind, body = self.read(oid)
        if kind != TAG:
            return None
        for _ in range(100):
            oid = parse_tag_target(body, oid)
            kind, body = self.read(oid)
            if kind != TAG:
                return oid
        raise CorruptStore(f"tag {oid.hex()}: a chain of more than 100 tags")

    def all_ids(self) -> Iterator[bytes]:
        """Every object id in the folder and pending (an id may come more than once)."""
        yield from self.pending
        for pack in self.packs:
            yield from pack.index
        yield from self.loose

    # --- writing --------------------------------------------------------------------------

    def add(self, kind: bytes, body: bytes, base: bytes | None = None) -> bytes:
        """Hold a new object in pending; return its id. `base` is its previous version, a
        hint for the pack's deltas.

        Only pending is searched for the object: looking through every pack would cost a
        search per pack per object, and an object stored twice is harmless to Git (a value
        set back to an old one is packed again; gc keeps one copy)."""
        oid = object_id(kind, body)
        if oid not in self.pending:
            self.pending[oid] = (kind, body)
            self.pending_bytes += len(body)
            if base is not None:
                self.delta_bases[oid] = base
        return oid

    def drop_pending(self, oids: list[bytes]) -> None:
        """Forget pending objects whose commit failed."""
        for oid in oids:
            dropped = self.pending.pop(oid, None)
            self.delta_bases.pop(oid, None)
            if dropped is not None:
                self.pending_bytes -= len(dropped[1])

    def write_pending(self) -> None:
        """Write the pending objects to the folder, durably: loose files or one pack."""
        self.write_batch(self.pending, self.delta_bases)
        self.pending = {}
        self.delta_bases = {}
        self.pending_bytes = 0

    def take_pending(self) -> tuple[dict[bytes, tuple[bytes, bytes]], dict[bytes, bytes]]:
        """Hand the pending objects to a background flush (they stay readable)."""
        batch = (self.pending, self.delta_bases)
        self.flushing = self.pending
        self.pending = {}
        self.delta_bases = {}
        self.pending_bytes = 0
        return batch

    def give_back(self, batch: tuple[dict[bytes, tuple[bytes, bytes]], dict[bytes, bytes]]) -> None:
        """Take back a batch whose background flush failed, ahead of what came since."""
        objects, bases = batch
        self.pending = {**objects, **self.pending}
        self.delta_bases = {**bases, **self.delta_bases}
        self.pending_bytes = sum(len(body) for _, body in self.pending.values())
        self.flushing = None

    def write_batch(
        self, objects: dict[bytes, tuple[bytes, bytes]], bases: dict[bytes, bytes]
    ) -> None:
        """Write `objects` to the folder, durably: a few as loose files, more as one pack.
        Runs in a background thread: it reads only its arguments."""
        if not objects:
            return
        if len(objects) <= LOOSE_LIMIT:
            for oid, (kind, body) in objects.items():
                self._backend.write_atomic(loose_path(oid), encode_loose(kind, body, 0))
                self.loose.add(oid)
        else:
            writer = PackWriter(level=0)  # batches are stored for speed; gc compresses
            for n, (oid, (kind, body)) in enumerate(objects.items()):
                base = bases.get(oid)
                base_body = objects[base][1] if base in objects else None
                writer.add(oid, kind, body, base, base_body)
                if n % 4 == 3:
                    # Let the committing thread have the GIL as soon as its fdatasync is
                    # done, rather than after Python's 5 ms switch interval.
                    time.sleep(0)
            self.write_pack(writer)

    def write_pack(self, writer: PackWriter) -> str:
        """Write a finished pack and its idx durably and read from it from now on; return
        its path without the suffix."""
        pack, idx, index = writer.finish()
        stem = self.write_pack_files(pack, idx)
        index.name = stem + ".idx"
        if not any(p.path == stem + ".pack" for p in self.packs):
            self.packs.append(Pack(self._backend, stem + ".pack", index))
        return stem

    def write_pack_files(self, pack: bytes, idx: bytes) -> str:
        """Write a pack and its idx durably (the idx last: Git reads a pack only once its
        idx is there); return its path without the suffix."""
        stem = f"objects/pack/pack-{pack[-20:].hex()}"
        self._backend.write_atomic(stem + ".pack", pack)
        try:
            self._backend.write_atomic(stem + ".idx", idx)
        except BaseException:
            self._backend.remove(stem + ".pack")  # a pack without its idx is only garbage
            raise
        return stem

    def reader(self) -> ObjectStore:
        """Another view of the objects in the folder, with caches of its own, for a
        background thread (pending objects are not in it)."""
        other = ObjectStore(self._backend)
        other.packs = [Pack(self._backend, p.path, p.index) for p in self.packs]
        other.loose = set(self.loose)
        return other
