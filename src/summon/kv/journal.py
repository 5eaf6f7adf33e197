"""The journal: the append-only file that makes a commit durable with one write and one flush.

    journal = HEADER SALT(8) RECORD*
    RECORD  = LENGTH(u32) CRC(u32) PAYLOAD(LENGTH)     CRC = crc32(SALT LENGTH PAYLOAD)
    PAYLOAD = "C" FLAGS(u8) REF COMMIT-BODY COUNT(u32) CHANGE*      a commit
            / "R" REF ID(20, all zero: delete)                        a ref set or deleted
            / "H" REF                                                 HEAD now names REF
    CHANGE  = KEY (0 / 1 VALUE)                   the key deleted, or set to VALUE
    REF, COMMIT-BODY, KEY, VALUE = LENGTH(u32) BYTES
    FLAGS   = 1: the commit's tree is taken as it is (it exists), CHANGEs are not applied

A commit record holds the commit object's body and the changes from its first parent's
tree: replaying it rebuilds the blobs and trees, and the ids must come out the same.

Reading stops at the first record that is cut short or fails its checksum: that is where
the power went while the record was written (it was not acknowledged). The salt, new each
time the journal is reset, makes records of an earlier generation left in reused space fail
their checksum too. Space is reserved ahead in chunks of zeros, so appending a record
usually changes no file size and its fdatasync writes no metadata.
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

PATH = "summon-kv/journal"
HEADER = b"summon-kv journal 1\n"
START = len(HEADER) + 8
RESERVE = 1 << 20  # zeros written ahead of the records

COMMIT = b"C"
REF = b"R"
HEAD = b"H"
TREE_AS_IS = 1


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def encode_commit(ref: str, body: bytes, changes: Changes, tree_as_is: bool) -> bytes:
    parts = [COMMIT, bytes([TREE_AS_IS if tree_as_is else 0]), _field(ref.encode()), _field(body)]
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


def decode(payload: bytes) -> tuple[bytes, str, bytes, Changes, bool]:
    """(kind, ref, commit body or id, changes, tree_as_is) of a record's payload."""
    r = _Reader(payload)
    kind = r.take(1)
    if kind == COMMIT:
        flags = r.take(1)[0]
        ref = r.field().decode()
        body = r.field()
        changes: Changes = []
        for _ in range(struct.unpack(">I", r.take(4))[0]):
            key = r.field()
            changes.append((key, r.field() if r.take(1) == b"\1" else None))
        return kind, ref, body, changes, bool(flags & TREE_AS_IS)
    if kind == REF:
        ref = r.field().decode()
        return kind, ref, r.take(20), [], False
    if kind == HEAD:
        return kind, r.field().decode(), b"", [], False
    raise CorruptStore(f"a journal record of unknown kind {kind!r}")


def scan(data: bytes) -> tuple[bytes, list[bytes], int]:
    """(salt, payloads of the whole records, where the whole records end) of a journal."""
    if data[: len(HEADER)] != HEADER or len(data) < START:
        raise CorruptStore(f"{PATH} does not start with {HEADER!r}")
    salt = data[len(HEADER) : START]
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
    return salt, records, pos


class Journal:
    """The journal file of a store, open for appending."""

    def __init__(self, backend: Backend, reserve: int = RESERVE) -> None:
        self._backend = backend
        self._reserve = reserve
        self.salt = b""
        self.end = START  # where the next record goes
        self._reserved = 0  # the file's length: zeros after `end`
        self.records = 0  # records since the last reset
        self.size = 0  # their bytes

    def open(self) -> list[bytes]:
        """Read the journal (making an empty one if there is none); return the payloads of
        its whole records. A torn tail is left where it is: the next append overwrites it."""
        try:
            data = self._backend.read(PATH)
        except FileNotFoundError:
            self.reset()
            return []
        if len(data) < START and HEADER.startswith(data[: len(HEADER)]):
            self.reset()  # the power went while the very first header was written
            return []
        self.salt, records, self.end = scan(data)
        self._reserved = len(data)
        self.records = len(records)
        self.size = self.end - START
        return records

    def append(self, payload: bytes) -> None:
        """Write one record and make it durable; on failure (StoreFull, OSError) nothing of it
        counts, and the next append writes over what was written."""
        size = struct.pack(">I", len(payload))
        crc = zlib.crc32(payload, zlib.crc32(self.salt + size))
        record = size + struct.pack(">I", crc) + payload
        end = self.end + len(record)
        if end > self._reserved and self._reserve:
            # Reserve room ahead, synced, so the record's own flush need not grow the file.
            grow = max(self._reserve, len(record))
            try:
                self._backend.write_at(PATH, self._reserved, bytes(grow))
                self._backend.sync(PATH)
                self._reserved += grow
            except StoreFull:
                # No room to reserve: give back what part of it took (a flush needs room),
                # and write the record alone; there may be room for that.
                self._backend.truncate(PATH, self._reserved)
        self._backend.write_at(PATH, self.end, record)
        self._backend.sync(PATH)
        self.end = end
        self._reserved = max(self._reserved, end)
        self.records += 1
        self.size += len(record)

    def reset(self) -> None:
        """Start an empty journal, durably, with a new salt."""
        self.salt = os.urandom(8)
        self._backend.write_atomic(PATH, HEADER + self.salt)
        self.end = self._reserved = START
        self.records = 0
        self.size = 0
