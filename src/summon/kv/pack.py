"""Reading Git pack files (version 2) through their index (idx version 2), deltas included.

    idx v2 = "\\377tOc" VERSION=2 FANOUT(256 x u32) OIDS(n x 20, sorted) CRC32(n x u32)
             OFFSET32(n x u32; high bit set: index into OFFSET64) OFFSET64(m x u64)
             PACK-SHA1 IDX-SHA1
    pack   = "PACK" VERSION=2|3 COUNT(u32) ENTRY* PACK-SHA1
    ENTRY  = TYPE-AND-SIZE [OFS-DELTA offset | REF-DELTA base id] zlib(data)
             TYPE-AND-SIZE: 1st byte MORE|TYPE(3 bits)|SIZE(4 low bits), then MORE|7 bits
             each, little-endian. Types: 1 commit 2 tree 3 blob 4 tag 6 ofs-delta 7 ref-delta.
             OFS-DELTA: big-endian base-128 with +1 per continued byte, backwards from ENTRY.
    delta  = SRC-SIZE TGT-SIZE (base-128, little-endian) INSTRUCTION*
             1xxxxxxx: copy from the base; the low 4 bits say which offset bytes follow,
             the next 3 which size bytes (size 0 means 0x10000)
             0nnnnnnn: insert the next n bytes (n > 0); 0 is reserved

Integrity comes first: the idx's own SHA-1, the pack's header, lengths and zlib streams;
every failure raises CorruptStore naming the pack and offset. Object ids are checked by the
object store once an object is whole.
"""

from __future__ import annotations

import struct
import zlib
from hashlib import sha1

from summon.kv.errors import CorruptStore, UnsupportedRepository
from summon.kv.objects import KINDS, MAX_OBJECT, inflate_exact

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from summon.kv.backend import Backend

    # Finds an object outside the pack (a REF_DELTA's base in another pack): (kind, body).
    Resolver = Callable[[bytes], tuple[bytes, bytes]]

IDX_MAGIC = b"\377tOc"
OFS_DELTA = 6
REF_DELTA = 7
BASE_CACHE_BYTES = 8 << 20  # whole objects kept per pack, so delta chains are not re-walked
MAX_CHAIN = 10_000  # longer means a loop


class PackIndex:
    """A parsed idx v2: which objects a pack holds, and where."""

    def __init__(self, data: bytes, name: str) -> None:
        if data[:4] != IDX_MAGIC:
            raise UnsupportedRepository(f"{name}: not an idx version 2 (version 1 is not read)")
        if len(data) < 8 + 1024 + 40 or struct.unpack(">I", data[4:8])[0] != 2:
            raise CorruptStore(f"{name}: not an idx version 2")
        if sha1(data[:-20]).digest() != data[-20:]:
            raise CorruptStore(f"{name}: its checksum does not match its content")
        self.name = name
        self.fanout = struct.unpack(">256I", data[8:1032])
        n = self.count = self.fanout[255]
        oids_at = 1032
        crc_at = oids_at + 20 * n
        off_at = crc_at + 4 * n
        big_at = off_at + 4 * n
        if len(data) < big_at + 40:
            raise CorruptStore(f"{name}: cut short ({len(data)} bytes for {n} objects)")
        self.oids = data[oids_at:crc_at]
        self.crcs = data[crc_at:off_at]
        small = struct.unpack(f">{n}I", data[off_at:big_at])
        bigs = data[big_at:-40]
        offsets = []
        for o in small:
            if o & 0x80000000:
                i = (o & 0x7FFFFFFF) * 8
                if i + 8 > len(bigs):
                    raise CorruptStore(f"{name}: a 64-bit offset is out of its table")
                o = struct.unpack(">Q", bigs[i : i + 8])[0]
            offsets.append(o)
        self.offsets = offsets
        self.pack_sha = data[-40:-20]

    def find(self, oid: bytes) -> int | None:
        """The position of `oid` in the index (see offsets), or None."""
        first = oid[0]
        lo: int = self.fanout[first - 1] if first else 0
        hi: int = self.fanout[first]
        oids = self.oids
        while lo < hi:
            mid = (lo + hi) // 2
            here = oids[mid * 20 : mid * 20 + 20]
            if here < oid:
                lo = mid + 1
            elif here > oid:
                hi = mid
            else:
                return mid
        return None

    def oid(self, i: int) -> bytes:
        return self.oids[i * 20 : i * 20 + 20]

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self.oids[i * 20 : i * 20 + 20]


class Pack:
    """A pack file with its index, read through a backend."""

    def __init__(self, backend: Backend, path: str, index: PackIndex) -> None:
        self.backend = backend
        self.path = path
        self.index = index
        head = backend.read_at(path, 0, 12)
        if len(head) < 12 or head[:4] != b"PACK" or head[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
            raise CorruptStore(f"{path}: not a Git pack file")
        if struct.unpack(">I", head[8:12])[0] != index.count:
            raise CorruptStore(f"{path}: holds another number of objects than its index says")
        self._cache: dict[int, tuple[bytes, bytes]] = {}
        self._cached = 0

    def __contains__(self, oid: bytes) -> bool:
        return self.index.find(oid) is not None

    def read(self, oid: bytes, resolve: Resolver) -> tuple[bytes, bytes] | None:
        """(kind, body) of `oid` if this pack holds it, else None."""
        i = self.index.find(oid)
        if i is None:
            return None
        return self.read_at(self.index.offsets[i], resolve)

    def read_at(self, offset: int, resolve: Resolver) -> tuple[bytes, bytes]:
        """(kind, body) of the entry at `offset`, its delta chain applied."""
        deltas: list[tuple[int, bytes]] = []
        held = 0
        while True:
            cached = self._cache.get(offset)
            if cached is not None:
                kind, body = cached
                break
            kind_no, size, base, data_at = self._header(offset)
            data = self._inflate(offset, data_at, size)
            if kind_no < OFS_DELTA:
                kind, body = KINDS[kind_no - 1], data
                break
            deltas.append((offset, data))
            held += len(data)
            if len(deltas) > MAX_CHAIN:
                raise CorruptStore(f"{self.path}: a delta chain at {offset} does not end")
            if held > MAX_OBJECT:  # each within its own size, but all of them held at once
                raise CorruptStore(
                    f"{self.path}: the delta chain at {offset} holds over {MAX_OBJECT} bytes"
                )
            if isinstance(base, int):
                offset = base
            else:
                assert base is not None  # a delta has a base
                i = self.index.find(base)
                if i is None:
                    kind, body = resolve(base)
                    break
                offset = self.index.offsets[i]
        for at, delta in reversed(deltas):
            body = apply_delta(body, delta, self.path, at)
            self._remember(at, kind, body)
        return kind, body

    def _remember(self, offset: int, kind: bytes, body: bytes) -> None:
        if len(body) > BASE_CACHE_BYTES // 4:
            return
        while self._cached + len(body) > BASE_CACHE_BYTES and self._cache:
            oldest = next(iter(self._cache))
            self._cached -= len(self._cache.pop(oldest)[1])
        self._cache[offset] = (kind, body)
        self._cached += len(body)

    def _header(self, offset: int) -> tuple[int, int, int | bytes | None, int]:
        """(type, size, base, where the zlib data starts) of the entry at `offset`."""
        head = self.backend.read_at(self.path, offset, 64)
        try:
            kind_no, size, pos = parse_entry_header(head, 0)
            base: int | bytes | None = None
            if kind_no == OFS_DELTA:
                back, pos = parse_ofs(head, pos)
                if back <= 0 or back > offset:
                    raise ValueError(f"delta base offset {back} points outside the pack")
                base = offset - back
            elif kind_no == REF_DELTA:
                base = head[pos : pos + 20]
                if len(base) < 20:
                    raise ValueError("cut short")
                pos += 20
        except (IndexError, ValueError) as e:
            raise CorruptStore(f"{self.path}: bad entry at offset {offset}: {e}") from None
        return kind_no, size, base, offset + pos

    def _inflate(self, offset: int, data_at: int, size: int) -> bytes:
        at = data_at

        def read(n: int) -> bytes:
            nonlocal at
            raw = self.backend.read_at(self.path, at, n)
            at += len(raw)
            return raw

        try:
            return inflate_exact(read, size)[0]
        except zlib.error as e:
            raise CorruptStore(f"{self.path}: bad zlib data at offset {offset}: {e}") from None
        except ValueError as e:
            raise CorruptStore(f"{self.path}: the entry at offset {offset} {e}") from None


def parse_entry_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(type, size, position after) of a pack entry's type-and-size header at `pos`."""
    byte = data[pos]
    pos += 1
    kind_no = (byte >> 4) & 7
    size = byte & 15
    shift = 4
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        shift += 7
    if kind_no in (0, 5):
        raise ValueError(f"entry type {kind_no} does not exist")
    return kind_no, size, pos


def parse_ofs(data: bytes, pos: int) -> tuple[int, int]:
    """(distance back, position after) of an OFS_DELTA's base offset at `pos`."""
    byte = data[pos]
    pos += 1
    value = byte & 0x7F
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def apply_delta(base: bytes, delta: bytes, where: str = "delta", offset: int = 0) -> bytes:
    """The object `delta` makes of `base`."""
    try:
        src_size, pos = _varint(delta, 0)
        tgt_size, pos = _varint(delta, pos)
        if src_size != len(base):
            raise ValueError(f"its base is {len(base)} bytes, it expects {src_size}")
        # Rule: a delta makes at most the size it declares, and that at most MAX_OBJECT
        # (a copy is 8 bytes for up to 16 MiB: a small delta could make terabytes).
        if tgt_size > MAX_OBJECT:
            raise ValueError(f"says it makes {tgt_size} bytes, over the {MAX_OBJECT} allowed")
        out = bytearray()
        end = len(delta)
        while pos < end:
            op = delta[pos]
            pos += 1
            if op & 0x80:
                start = n = 0
                for i in range(4):
                    if op & (1 << i):
                        start |= delta[pos] << (8 * i)
                        pos += 1
                for i in range(3):
                    if op & (0x10 << i):
                        n |= delta[pos] << (8 * i)
                        pos += 1
                n = n or 0x10000
                if start + n > len(base):
                    raise ValueError(f"copies {n} bytes from {start}, past its base's end")
                if len(out) + n > tgt_size:
                    raise ValueError(f"makes more than the {tgt_size} bytes it says")
                out += base[start : start + n]
            elif op:
                if pos + op > end:
                    raise ValueError("an insert runs past the delta's end")
                if len(out) + op > tgt_size:
                    raise ValueError(f"makes more than the {tgt_size} bytes it says")
                out += delta[pos : pos + op]
                pos += op
            else:
                raise ValueError("instruction 0 is reserved")
        if len(out) != tgt_size:
            raise ValueError(f"makes {len(out)} bytes, it says {tgt_size}")
    except (IndexError, ValueError) as e:
        raise CorruptStore(f"{where}: bad delta at offset {offset}: {e}") from None
    return bytes(out)
