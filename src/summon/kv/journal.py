"""The journal: the append-only files that make a commit durable with one write and one flush.

    journal = HEADER SALT(8) GENERATION(u64) RECORD*
    RECORD  = LENGTH(u32) CRC(u32) PAYLOAD(LENGTH)     CRC = crc32(SALT LENGTH PAYLOAD)
    PAYLOAD = "C" FLAGS(u8) REF COMMIT-BODY COUNT(u32) CHANGE*      a commit
            / "R" REF ID(20, all zero: delete)                        a ref set or deleted
            / "H" REF                                                 HEAD now names REF
    CHANGE  = KEY (0 / 1 VALUE)                   the key deleted, or set to VALUE
    REF, COMMIT-BODY, KEY, VALUE = LENGTH(u32) BYTES
    FLAGS   = 1: the commit's tree is taken as it is (it exists), CHANGEs are not applied
            / 2: COMMIT-BODY lacks its first line ("tree ID"): the tree is what the CHANGEs
                 make of the first parent's; written so before the tree is made (see below)

A commit record holds the commit object's body and the changes from its first parent's
tree: replaying it rebuilds the blobs and trees, and the ids must come out the same. A
set() or delete() writes its record without the tree line, and makes its trees while the
disk writes the record (everything that could refuse the change was checked before), then
waits for the fdatasync: the CPU work of Git's objects costs a commit no time of its own.

Reading stops at the first record that is cut short or fails its checksum: that is where
the power went while the record was written (it was not acknowledged). The salt, new each
time a file is cleared, makes records of an earlier use of the file fail their checksum
too: clearing rewrites the header only, as SQLite reuses its WAL. Space is reserved ahead
in chunks of zeros, so appending a record usually changes no file size and its fdatasync
writes no metadata.

There are two files, used in turn, so that a batch can be written to Git's files while
commits go on: at a flush the other (cleared) file becomes the active one, with the next
generation number, and the batch's file is cleared once its records are in Git's files.
At open the records of both are replayed, the older generation's first.
"""

from __future__ import annotations

import os
import struct
import zlib

from summon.kv.errors import CorruptStore, StoreFull

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.kv.backend import Backend

    # (key, value or None): one change of a commit record.
    Changes = list[tuple[bytes, bytes | None]]

PATHS = ("summon-kv/journal.0", "summon-kv/journal.1")
HEADER = b"summon-kv journal 2\n"
START = len(HEADER) + 16
RESERVE = 1 << 20  # zeros written ahead of the records
MAX_KEPT = 16 << 20  # clearing keeps the file (and its zeros) up to this size

COMMIT = b"C"
REF = b"R"
HEAD = b"H"
TREE_AS_IS = 1
TREE_AFTER = 2


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def encode_commit(ref: str, body: bytes, changes: Changes, flags: int) -> bytes:
    """A commit record; `flags`: TREE_AS_IS, TREE_AFTER (then `body` lacks its tree line)."""
    parts = [COMMIT, bytes([flags]), _field(ref.encode()), _field(body)]
    parts.append(struct.pack(">I", len(changes)))
    for key, value in changes:
        parts.append(_field(key))
        parts.append(b"\0" if value is None else b"\1" + _field(value))
    return b"".join(parts)


def encode_ref(ref: str, oid: bytes | None) -> bytes:
    return REF + _field(ref.encode()) + (oid or bytes(20))


def encode_head(ref: str) -> bytes:
    return HEAD + _field(ref.encode())


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CorruptStore("a journal record is shorter than its fields")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def field(self) -> bytes:
        return self.take(struct.unpack(">I", self.take(4))[0])

    def text(self) -> str:
        try:
            return self.field().decode()
        except UnicodeDecodeError:
            raise CorruptStore("a journal record names a ref that is not UTF-8") from None


def decode(payload: bytes) -> tuple[bytes, str, bytes, Changes, int]:
    """(kind, ref, commit body or id, changes, flags) of a record's payload."""
    r = _Reader(payload)
    kind = r.take(1)
    if kind == COMMIT:
        flags = r.take(1)[0]
        ref = r.text()
        body = r.field()
        changes: Changes = []
        for _ in range(struct.unpack(">I", r.take(4))[0]):
            key = r.field()
            changes.append((key, r.field() if r.take(1) == b"\1" else None))
        if flags & ~(TREE_AS_IS | TREE_AFTER) or flags == TREE_AS_IS | TREE_AFTER:
            raise CorruptStore(f"a journal record has unknown flags {flags:#x}")
        return kind, ref, body, changes, flags
    if kind == REF:
        ref = r.text()
        return kind, ref, r.take(20), [], 0
    if kind == HEAD:
        return kind, r.text(), b"", [], 0
    raise CorruptStore(f"a journal record of unknown kind {kind!r}")


def scan(data: bytes) -> tuple[bytes, int, list[bytes], int]:
    """(salt, generation, payloads of the whole records, where they end) of a journal."""
    if data[: len(HEADER)] != HEADER or len(data) < START:
        raise CorruptStore(f"a journal file does not start with {HEADER!r}")
    salt = data[len(HEADER) : len(HEADER) + 8]
    generation = struct.unpack(">Q", data[len(HEADER) + 8 : START])[0]
    records = []
    pos = START
    while pos + 8 <= len(data):
        length, crc = struct.unpack(">II", data[pos : pos + 8])
        end = pos + 8 + length
        if length == 0 or end > len(data):
            break
        if zlib.crc32(data[pos + 8 : end], zlib.crc32(salt + data[pos : pos + 4])) != crc:
            break
        records.append(data[pos + 8 : end])
        pos = end
    return salt, generation, records, pos


class JournalFile:
    """One journal file, open for appending."""

    def __init__(self, backend: Backend, path: str, reserve: int = RESERVE) -> None:
        self._backend = backend
        self.path = path
        self._reserve = reserve
        self.salt = b""
        self.generation = 0
        self.end = START  # where the next record goes
        self._reserved = 0  # the file's length: zeros after `end`
        self.records = 0  # records since the last clear
        self.size = 0  # their bytes

    def load(self) -> list[bytes]:
        """Read the file; return the payloads of its whole records. A missing file, or one
        whose first header was cut by a power cut, holds none. A torn tail stays where it
        is: the next append writes over it."""
        try:
            data = self._backend.read(self.path)
        except FileNotFoundError:
            return []
        if len(data) < START and HEADER.startswith(data[: len(HEADER)]):
            return []
        self.salt, self.generation, records, self.end = scan(data)
        self._reserved = len(data)
        self.records = len(records)
        self.size = self.end - START
        return records

    def append(self, payload: bytes) -> None:
        """Write one record and make it durable; on failure (StoreFull, OSError) nothing of it
        counts, and the next append writes over what was written."""
        self.made_durable(self.write(payload))

    def write(self, payload: bytes) -> int:
        """Write one record after the last, not yet durable, and start it for the disk;
        return where it ends, for made_durable. Until then it does not count: another write
        goes over it."""
        size = struct.pack(">I", len(payload))
        crc = zlib.crc32(payload, zlib.crc32(self.salt + size))
        record = size + struct.pack(">I", crc) + payload
        end = self.end + len(record)
        if end > self._reserved and self._reserve:
            # Reserve room ahead, synced, so the record's own flush need not grow the file.
            grow = max(self._reserve, len(record))
            try:
                self._backend.write_at(self.path, self._reserved, bytes(grow))
                self._backend.sync(self.path)
                self._reserved += grow
            except StoreFull:
                # No room to reserve: give back what part of it took (a flush needs room),
                # and write the record alone; there may be room for that.
                self._backend.truncate(self.path, self._reserved)
        self._backend.write_at(self.path, self.end, record)
        if end < self._reserved:  # not the file's last byte (see Backend.start_writeback)
            self._backend.start_writeback(self.path, self.end, len(record))
        return end

    def made_durable(self, end: int) -> None:
        """Make the record write() wrote (ending at `end`) durable: from here on it counts."""
        self._backend.sync(self.path)
        self.size += end - self.end
        self.end = end
        self._reserved = max(self._reserved, end)
        self.records += 1

    def clear(self, generation: int, shrink: bool = False) -> None:
        """Drop every record, durably, with a new salt and `generation`: the header alone is
        rewritten (a header torn by a power cut spoils the salt the same way; a file is only
        cleared once its records are in Git's files, so that loses nothing). A new file, one
        grown past MAX_KEPT, or `shrink`, is replaced by a bare header."""
        self.salt = os.urandom(8)
        self.generation = generation
        header = HEADER + self.salt + struct.pack(">Q", generation)
        if shrink or self._reserved < START or self._reserved > MAX_KEPT:
            self._backend.write_atomic(self.path, header)
            self._reserved = START
        else:
            self._backend.write_at(self.path, 0, header)
            self._backend.sync(self.path)
        self.end = START
        self.records = 0
        self.size = 0


class Journal:
    """The two journal files: one active (appended to), the other cleared or being flushed."""

    def __init__(self, backend: Backend, reserve: int = RESERVE) -> None:
        self.files = [JournalFile(backend, path, reserve) for path in PATHS]
        self.active = self.files[0]

    def open(self) -> list[bytes]:
        """The payloads of both files' whole records, the older generation's first. The
        files are not cleared here: replay them, flush, then clear()."""
        records = [f.load() for f in self.files]  # load sets each file's generation
        loaded = [(f.generation, i, f, records[i]) for i, f in enumerate(self.files) if f.salt]
        loaded.sort(key=lambda item: (item[0], item[1]))
        if not loaded:  # a new store
            self.active = self.files[0]
            self.active.clear(0)
            return []
        self.active = loaded[-1][2]  # the newest: appends go on after its records
        return [payload for *_, records in loaded for payload in records]

    @property
    def records(self) -> int:
        return self.active.records

    @property
    def size(self) -> int:
        return self.active.size

    @property
    def standby(self) -> JournalFile:
        return self.files[1] if self.active is self.files[0] else self.files[0]

    def append(self, payload: bytes) -> None:
        self.active.append(payload)

    def write(self, payload: bytes) -> int:
        return self.active.write(payload)

    def made_durable(self, end: int) -> None:
        self.active.made_durable(end)

    def rotate(self) -> JournalFile:
        """Make the standby file (it must hold no record) the active one, one generation on;
        return the file that was active, whose records the caller is to flush and clear."""
        old, new = self.active, self.standby
        assert new.records == 0, "the standby journal still holds records"
        new.clear(old.generation + 1)
        self.active = new
        return old

    def clear(self, shrink: bool = False) -> None:
        """Drop the records of both files (all in Git's files now)."""
        standby = self.standby
        if standby.records or shrink:
            standby.clear(standby.generation, shrink)
        self.active.clear(self.active.generation, shrink)
