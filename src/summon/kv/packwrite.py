"""Writing Git packs and their idx v2 (see pack.py for the formats), deltas, and indexing.

Deltas are made the simple way, which suits a key/value store's history well: an object
and its previous version (the same path one commit earlier) usually share a long prefix and
suffix (a tree with one entry changed; a JSON document with one field changed), so a delta
copies the common prefix, inserts the middle and copies the common suffix. A delta is kept
only where it is less than half the object, and chains stop at MAX_DEPTH (Git's default).

index_pack reads a pack made elsewhere (a bundle's), resolves its deltas and returns the
idx Git would write for it.
"""

from __future__ import annotations

import struct
import zlib
from hashlib import sha1

from summon.kv.errors import CorruptStore
from summon.kv.objects import KINDS, MAX_OBJECT, deflate, inflate_exact, object_id
from summon.kv.pack import (
    OFS_DELTA,
    REF_DELTA,
    PackIndex,
    apply_delta,
    parse_entry_header,
    parse_ofs,
)

MAX_DEPTH = 50
MAX_HELD = 4 * MAX_OBJECT  # a whole pack indexed in memory (an import) inflates to at most this
MIN_DELTA_SIZE = 128  # below this a delta saves too little to be worth making and reading
COPY_MAX = 0x10000
INSERT_MAX = 0x7F


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _common_prefix(a: bytes, b: bytes) -> int:
    """The length of the longest common prefix, by bisection over C-level comparisons
    (slices of bytes: comparing memoryviews is ~20 times slower, item by item)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _copy(out: bytearray, offset: int, size: int) -> None:
    while size > 0:
        n = min(size, COPY_MAX)
        op = 0x80
        args = bytearray()
        for i in range(4):
            byte = (offset >> (8 * i)) & 0xFF
            if byte:
                op |= 1 << i
                args.append(byte)
        if n != COPY_MAX:  # size bytes left out mean 0x10000
            for i in range(3):
                byte = (n >> (8 * i)) & 0xFF
                if byte:
                    op |= 0x10 << i
                    args.append(byte)
        out.append(op)
        out += args
        offset += n
        size -= n


def encode_delta(base: bytes, target: bytes) -> bytes | None:
    """A delta turning `base` into `target`, or None when it would not save half."""
    if len(target) < MIN_DELTA_SIZE:
        return None
    a, b = base, target
    prefix = _common_prefix(a, b)
    suffix = _common_suffix(a, b, min(len(a), len(b)) - prefix)
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    _copy(out, 0, prefix)
    middle = b[prefix : len(b) - suffix]
    for i in range(0, len(middle), INSERT_MAX):
        piece = middle[i : i + INSERT_MAX]
        out.append(len(piece))
        out += piece
    _copy(out, len(a) - suffix, suffix)
    if len(out) * 2 >= len(target):
        return None
    return bytes(out)


def _entry_header(kind_no: int, size: int) -> bytes:
    out = bytearray()
    byte = (kind_no << 4) | (size & 15)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _ofs(distance: int) -> bytes:
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


class PackWriter:
    """Builds one pack in memory; finish() returns its bytes, its idx's, and the index.
    `level` is zlib's (0: stored, see objects.deflate)."""

    def __init__(self, level: int = 6) -> None:
        self._level = level
        self._chunks: list[bytes] = []
        self._size = 12
        self._where: dict[bytes, int] = {}  # id -> offset
        self._depth: dict[bytes, int] = {}
        self._crcs: dict[bytes, int] = {}

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._where

    def __len__(self) -> int:
        return len(self._where)

    def add(
        self,
        oid: bytes,
        kind: bytes,
        body: bytes,
        base: bytes | None = None,
        base_body: bytes | None = None,
    ) -> None:
        """Add an object; as a delta against `base` (already added, body `base_body`) when
        that is worth it. Adding an id twice keeps the first."""
        if oid in self._where:
            return
        offset = self._size
        entry = None
        if base is not None and base_body is not None and base in self._where:
            depth = self._depth[base] + 1
            if depth <= MAX_DEPTH:
                delta = encode_delta(base_body, body)
                if delta is not None:
                    head = _entry_header(OFS_DELTA, len(delta)) + _ofs(offset - self._where[base])
                    entry = head + deflate(delta, self._level)
                    self._depth[oid] = depth
        if entry is None:
            entry = _entry_header(KINDS.index(kind) + 1, len(body)) + deflate(body, self._level)
            self._depth[oid] = 0
        self._where[oid] = offset
        self._crcs[oid] = zlib.crc32(entry)
        self._chunks.append(entry)
        self._size += len(entry)

    def finish(self, name: str = "pack") -> tuple[bytes, bytes, PackIndex]:
        """(pack bytes, idx bytes, parsed index) of everything added."""
        head = b"PACK" + struct.pack(">II", 2, len(self._where))
        h = sha1(head)
        for chunk in self._chunks:
            h.update(chunk)
        trailer = h.digest()
        pack = b"".join([head, *self._chunks, trailer])
        idx = build_idx([(oid, self._crcs[oid], off) for oid, off in self._where.items()], trailer)
        return pack, idx, PackIndex(idx, name)


def build_idx(entries: list[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    """An idx v2 for (id, crc32, offset) entries of the pack whose checksum is `pack_sha`."""
    entries = sorted(entries)
    counts = [0] * 256
    for oid, _, _ in entries:
        counts[oid[0]] += 1
    fanout = []
    total = 0
    for c in counts:
        total += c
        fanout.append(total)
    small = []
    big: list[int] = []
    for _, _, off in entries:
        if off < 0x80000000:
            small.append(off)
        else:
            small.append(0x80000000 | len(big))
            big.append(off)
    n = len(entries)
    body = b"".join(
        [
            b"\377tOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(oid for oid, _, _ in entries),
            struct.pack(f">{n}I", *(crc for _, crc, _ in entries)),
            struct.pack(f">{n}I", *small),
            struct.pack(f">{len(big)}Q", *big),
            pack_sha,
        ]
    )
    return body + sha1(body).digest()


def _inflate(view: memoryview, pos: int, size: int, name: str) -> tuple[bytes, int]:
    """(data, position after) of the zlib stream at `pos`, which must inflate to `size`."""
    at = pos

    def read(n: int) -> bytes:
        nonlocal at
        raw = view[at : at + n]
        at += len(raw)
        return bytes(raw)

    try:
        data, used = inflate_exact(read, size)
    except zlib.error as e:
        raise CorruptStore(f"{name}: bad zlib data at offset {pos}: {e}") from None
    except ValueError as e:
        raise CorruptStore(f"{name}: the entry at offset {pos} {e}") from None
    return data, pos + used


def index_pack(pack: bytes, name: str = "pack") -> tuple[bytes, dict[bytes, tuple[bytes, bytes]]]:
    """(idx bytes, {id: (kind, body)}) of a whole, self-contained pack (no outside bases)."""
    if len(pack) < 32 or pack[:4] != b"PACK" or pack[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
        raise CorruptStore(f"{name}: not a Git pack (version 2 or 3)")
    if sha1(pack[:-20]).digest() != pack[-20:]:
        raise CorruptStore(f"{name}: its checksum does not match its content")
    count = struct.unpack(">I", pack[8:12])[0]
    view = memoryview(pack)
    end = len(pack) - 20
    pos = 12
    raw: dict[int, tuple[int, int | bytes | None, bytes, int]] = {}  # offset -> entry
    held = 0
    for _ in range(count):
        start = pos
        try:
            kind_no, size, pos = parse_entry_header(pack, pos)
            base: int | bytes | None = None
            if kind_no == OFS_DELTA:
                back, pos = parse_ofs(pack, pos)
                base = start - back
                if back <= 0 or base not in raw:
                    raise ValueError(f"its base offset {base} is not an entry before it")
            elif kind_no == REF_DELTA:
                base = pack[pos : pos + 20]
                pos += 20
        except (IndexError, ValueError) as e:
            raise CorruptStore(f"{name}: bad entry at offset {start}: {e}") from None
        data, pos = _inflate(view, pos, size, name)
        held += len(data)
        if held > MAX_HELD:  # every entry is held inflated until the deltas are applied
            raise CorruptStore(f"{name}: its entries inflate to over {MAX_HELD} bytes")
        if pos > end:
            raise CorruptStore(f"{name}: the entry at offset {start} runs into the checksum")
        raw[start] = (kind_no, base, data, zlib.crc32(view[start:pos]))
    if pos != end:
        raise CorruptStore(f"{name}: {end - pos} stray bytes after its {count} entries")
    whole: dict[int, tuple[bytes, bytes]] = {}
    by_id: dict[bytes, int] = {}
    pending = []
    for off, (kind_no, _, data, _) in raw.items():
        if kind_no < OFS_DELTA:
            whole[off] = (KINDS[kind_no - 1], data)
            by_id[object_id(*whole[off])] = off
        else:
            pending.append(off)
    # REF_DELTA bases may come later in the pack: resolve in rounds until nothing moves.
    while pending:
        later = []
        for off in pending:
            _, base, delta, _ = raw[off]
            base_off = base if isinstance(base, int) else by_id.get(base or b"")
            if base_off is None or base_off not in whole:
                later.append(off)
                continue
            kind, body = whole[base_off]
            whole[off] = (kind, apply_delta(body, delta, name, off))
            by_id[object_id(*whole[off])] = off
        if len(later) == len(pending):
            raise CorruptStore(f"{name}: {len(later)} deltas have bases outside the pack")
        pending = later
    if len(by_id) != count:
        raise CorruptStore(f"{name}: holds {count - len(by_id)} objects twice")
    idx = build_idx([(oid, raw[off][3], off) for oid, off in by_id.items()], pack[-20:])
    return idx, {oid: whole[off] for oid, off in by_id.items()}
