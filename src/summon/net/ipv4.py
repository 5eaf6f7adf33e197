"""IPv4 (RFC 791): addresses, the packet record and its parser, fragmentation, reassembly.

The stack that wires this to Ethernet, ARP, ICMP, UDP and the transports is `interface.py`;
the interface a transport (TCP) codes against is documented value by value in docs/net.md.
"""

from __future__ import annotations

import struct

from summon.net._record import Record
from summon.net.checksum import checksum, ones_complement_sum
from summon.net.errors import IntegrityError, NetError, ParseError, SanityError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.counters import Counters

# Wire (RFC 791 section 3.1):
#
#    0                   1                   2                   3
#    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
#   +-------+-------+---------------+-------------------------------+
#   |Version|  IHL  |  DSCP  | ECN  |          Total Length         |
#   +-------+-------+---------------+-----+-------------------------+
#   |         Identification        |R|D|M|    Fragment Offset      |
#   +---------------+---------------+-----+-------------------------+
#   |  Time to Live |    Protocol   |        Header Checksum        |
#   +---------------+---------------+-------------------------------+
#   |                        Source Address                         |
#   +---------------------------------------------------------------+
#   |                      Destination Address                      |
#   +---------------------------------------------------------------+
#   |            Options (IHL * 4 - 20 bytes, up to 40)             |
#   +---------------------------------------------------------------+
#
# IHL and the fragment offset count 4- and 8-byte units; this module's records hold bytes.
HEADER = struct.Struct("!BBHHHBBH4s4s")
HEADER_LEN = 20
MAX_HEADER_LEN = 60
MAX_DATAGRAM_LEN = 65535
# Every IPv4 link carries at least this (RFC 791): the smallest MTU we fragment for.
MIN_MTU = 68
FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
DEFAULT_TTL = 64

# Options (RFC 791 section 3.1): kind 0 ends the list, 1 is a one-byte no-op, every other
# kind is kind, length (counting both), data. The top bit of the kind says "copy me into
# every fragment".
OPT_END = 0
OPT_NOP = 1
OPT_COPIED = 0x80

ANY = b"\0\0\0\0"
LIMITED_BROADCAST = b"\xff\xff\xff\xff"


# --- addresses --------------------------------------------------------------------------


def parse_address(text: str) -> bytes:
    """ "10.0.0.1" -> 4 bytes; ValueError if it is not a dotted quad."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    values = [int(p) for p in parts]
    if max(values) > 255:
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(values)


def format_address(address: bytes) -> str:
    return ".".join(str(b) for b in address)


def is_multicast(address: bytes) -> bool:
    return 224 <= address[0] <= 239


def is_unicast(address: bytes) -> bool:
    """True for addresses a single host may own: not 0/8, loopback, multicast or class E."""
    first = address[0]
    return first != 0 and first != 127 and first < 224


def multicast_mac(address: bytes) -> bytes:
    """The Ethernet group address a multicast IPv4 address maps to (RFC 1112 section 6.4)."""
    return b"\x01\x00\x5e" + bytes((address[1] & 0x7F, address[2], address[3]))


# --- errors -------------------------------------------------------------------------------


class Ipv4Error(ParseError):
    """A packet that is not valid IPv4; `reason` names the condition for counters."""

    layer = "ipv4"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Ipv4IntegrityError(Ipv4Error, IntegrityError):
    pass


class Ipv4SanityError(Ipv4Error, SanityError):
    pass


class FragmentationNeeded(NetError):
    """Sending: the datagram is larger than the MTU and its DF bit forbids fragmenting it."""

    def __init__(self, size: int, mtu: int) -> None:
        super().__init__(f"ipv4: datagram of {size} bytes > MTU {mtu} with DF set")
        self.size = size
        self.mtu = mtu


class DatagramTooLarge(NetError):
    """Sending: header and payload exceed IPv4's 65535-byte limit."""


class NoRoute(NetError):
    """Sending: the destination is not on the link and there is no gateway (or is loopback)."""


# --- the packet --------------------------------------------------------------------------


class Ipv4Packet(Record):
    """One IPv4 packet (a whole datagram or a fragment of one).

    `fragment_offset` is in bytes (a multiple of 8); `options` are the raw option bytes
    (a multiple of 4, kept so a quoted header reproduces exactly), not interpreted.
    """

    __slots__ = (
        "dont_fragment",
        "dst",
        "fragment_offset",
        "identification",
        "more_fragments",
        "options",
        "payload",
        "protocol",
        "src",
        "tos",
        "ttl",
    )

    def __init__(
        self,
        src: bytes,
        dst: bytes,
        protocol: int,
        payload: bytes,
        *,
        ttl: int = DEFAULT_TTL,
        tos: int = 0,
        identification: int = 0,
        dont_fragment: bool = False,
        more_fragments: bool = False,
        fragment_offset: int = 0,
        options: bytes = b"",
    ) -> None:
        self.src = src
        self.dst = dst
        self.protocol = protocol
        self.payload = payload
        self.ttl = ttl
        self.tos = tos
        self.identification = identification
        self.dont_fragment = dont_fragment
        self.more_fragments = more_fragments
        self.fragment_offset = fragment_offset
        self.options = options

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(self.options)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0

    @classmethod
    def parse(cls, data: bytes) -> Ipv4Packet:
        """The packet at the start of data (bytes past Total Length are link padding), or
        Ipv4Error."""
        # Step one, integrity: every length the header claims fits, and the checksum holds;
        # no other field is read before that.
        size = len(data)
        if size < HEADER_LEN:
            raise Ipv4IntegrityError("too_short", f"packet of {size} bytes < header {HEADER_LEN}")
        version_ihl, tos, total_len, ident, flags_offset, ttl, proto, _, src, dst = (
            HEADER.unpack_from(data)
        )
        version = version_ihl >> 4
        if version != 4:
            raise Ipv4IntegrityError("bad_version", f"version {version} != 4")
        header_len = (version_ihl & 0x0F) * 4
        if header_len < HEADER_LEN:
            raise Ipv4IntegrityError(
                "bad_header_length", f"header length {header_len // 4} words < 5"
            )
        if header_len > size:
            raise Ipv4IntegrityError(
                "truncated_header", f"header length {header_len} > {size} bytes received"
            )
        if total_len < header_len:
            raise Ipv4IntegrityError(
                "bad_total_length", f"total length {total_len} < header length {header_len}"
            )
        if total_len > size:
            raise Ipv4IntegrityError(
                "truncated", f"total length {total_len} > {size} bytes received"
            )
        header = data[:header_len]
        if ones_complement_sum(header) != 0xFFFF:
            raise Ipv4IntegrityError(
                "bad_checksum",
                f"header checksum 0x{data[10] << 8 | data[11]:04x} does not verify",
            )
        # Step two, sanity: what the fields mean.
        if flags_offset & FLAG_RESERVED:
            raise Ipv4SanityError("reserved_flag", "reserved flag bit is set")
        if ttl == 0:
            raise Ipv4SanityError("ttl_zero", "time to live is 0")
        if not is_unicast(src) and src != ANY:
            raise Ipv4SanityError(
                "bad_source", f"source {format_address(src)} is not a unicast address"
            )
        if dst == ANY or dst[0] == 127 or (dst[0] >= 240 and dst != LIMITED_BROADCAST):
            raise Ipv4SanityError(
                "bad_destination", f"destination {format_address(dst)} is not deliverable"
            )
        options = header[HEADER_LEN:]
        if options:
            _check_options(options)
        payload = data[header_len:total_len]
        offset = (flags_offset & OFFSET_MASK) * 8
        more = bool(flags_offset & FLAG_MF)
        if more and (not payload or len(payload) % 8):
            raise Ipv4SanityError(
                "bad_fragment_length",
                f"fragment with more to come carries {len(payload)} bytes, not a positive "
                "multiple of 8",
            )
        if offset + len(payload) + header_len > MAX_DATAGRAM_LEN:
            raise Ipv4SanityError(
                "fragment_too_long",
                f"fragment at {offset} of {len(payload)} bytes ends past {MAX_DATAGRAM_LEN}",
            )
        return cls(
            src,
            dst,
            proto,
            payload,
            ttl=ttl,
            tos=tos,
            identification=ident,
            dont_fragment=bool(flags_offset & FLAG_DF),
            more_fragments=more,
            fragment_offset=offset,
            options=options,
        )

    def header(self) -> bytes:
        """The header as sent: its total length counts the payload, its checksum is set."""
        options = self.options
        header_len = HEADER_LEN + len(options)
        if len(options) % 4 or header_len > MAX_HEADER_LEN:
            raise ValueError(f"ipv4: options of {len(options)} bytes: not a multiple of 4 <= 40")
        total_len = header_len + len(self.payload)
        if total_len > MAX_DATAGRAM_LEN:
            raise DatagramTooLarge(f"ipv4: datagram of {total_len} bytes > {MAX_DATAGRAM_LEN}")
        flags_offset = (
            (FLAG_DF if self.dont_fragment else 0)
            | (FLAG_MF if self.more_fragments else 0)
            | (self.fragment_offset >> 3)
        )
        header = bytearray(
            HEADER.pack(
                0x40 | header_len >> 2,
                self.tos,
                total_len,
                self.identification,
                flags_offset,
                self.ttl,
                self.protocol,
                0,
                self.src,
                self.dst,
            )
        )
        header += options
        struct.pack_into("!H", header, 10, checksum(header))
        return bytes(header)

    def serialize(self) -> bytes:
        return self.header() + self.payload


def _check_options(options: bytes) -> None:
    """Walk the option list so that no option claims bytes beyond the header."""
    i = 0
    end = len(options)
    while i < end:
        kind = options[i]
        if kind == OPT_END:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise Ipv4SanityError("bad_option", f"option {kind} at offset {i} has no length byte")
        length = options[i + 1]
        if length < 2 or i + length > end:
            raise Ipv4SanityError(
                "bad_option",
                f"option {kind} at offset {i} has length {length}: outside 2..{end - i}",
            )
        i += length


def _copied_options(options: bytes) -> bytes:
    """The options RFC 791 says every fragment after the first carries, padded to 4."""
    kept = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        length = options[i + 1]
        if kind & OPT_COPIED:
            kept += options[i : i + length]
        i += length
    kept += bytes(-len(kept) % 4)
    return bytes(kept)


# --- fragmentation on send ---------------------------------------------------------------


def fragment(packet: Ipv4Packet, mtu: int) -> list[Ipv4Packet]:
    """packet cut into pieces that each fit mtu: [packet] itself when it fits.

    Raises FragmentationNeeded when it does not fit and DF is set, ValueError if mtu is
    below IPv4's minimum of 68.
    """
    size = packet.header_len + len(packet.payload)
    if size <= mtu:
        return [packet]
    if packet.dont_fragment:
        raise FragmentationNeeded(size, mtu)
    if mtu < MIN_MTU:
        raise ValueError(f"ipv4: MTU {mtu} < minimum {MIN_MTU}")
    later_options = _copied_options(packet.options)
    payload = packet.payload
    pieces: list[Ipv4Packet] = []
    start = 0
    options = packet.options
    while start < len(payload):
        room = (mtu - HEADER_LEN - len(options)) & ~7
        end = min(start + room, len(payload))
        last = end == len(payload)
        pieces.append(
            Ipv4Packet(
                packet.src,
                packet.dst,
                packet.protocol,
                payload[start:end],
                ttl=packet.ttl,
                tos=packet.tos,
                identification=packet.identification,
                # A fragment of a fragment keeps "more to come" on its last piece.
                more_fragments=packet.more_fragments if last else True,
                fragment_offset=packet.fragment_offset + start,
                options=options,
            )
        )
        start = end
        options = later_options
    return pieces


# --- reassembly on receive ---------------------------------------------------------------

# What one held fragment costs beyond its payload bytes, measured on 64-bit CPython: the
# bytes object's header (33, allocated in 8s), the (start, end, data) tuple (64), two ints
# (32 each), the list slot (8). tracemalloc counts ~170; a little more is charged.
FRAGMENT_OVERHEAD = 176


def _first_at_or_after(pieces: list[tuple[int, int, bytes]], start: int) -> int:
    """The index of the first piece that starts at or after start (bisection: the stack
    imports nothing asyncio does not, and bisect is not among those)."""
    lo, hi = 0, len(pieces)
    while lo < hi:
        mid = (lo + hi) // 2
        if pieces[mid][0] < start:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Partial:
    """The fragments of one datagram received so far."""

    __slots__ = ("deadline", "first", "held", "pieces", "total")

    def __init__(self, deadline: float) -> None:
        # (start, end, data), sorted by start, disjoint: each fragment finds its neighbours
        # by bisection (8,000 eight-byte fragments of one datagram once cost 2.2 s of CPU).
        self.pieces: list[tuple[int, int, bytes]] = []
        self.held = 0
        # The payload length, known once the fragment without MF arrives; -1 before.
        self.total = -1
        # The fragment at offset 0: its header becomes the datagram's.
        self.first: Ipv4Packet | None = None
        self.deadline = deadline


class Reassembler:
    """Puts fragmented datagrams back together, within bounds of memory and time.

    Policy, for untrusted input:
    - a fragment that overlaps another of its datagram drops the whole datagram (as RFC 5722
      asks of IPv6, and Linux does for IPv4); an exact duplicate is ignored, and so is a
      fragment without data;
    - at most `max_datagrams` datagrams and `max_bytes` bytes are held: past either, the
      oldest datagram is evicted. A fragment costs its payload plus FRAGMENT_OVERHEAD, what
      Python spends to hold it: counting payload alone, 8-byte fragments kept 22.7 MB in
      a 1 MiB bound;
    - a datagram's timer follows RFC 791: it starts at `timeout` seconds and is raised to
      each fragment's TTL (as seconds), capped at `max_timeout`; when it runs out the
      datagram is dropped and counted.
    Tunables are public attributes.
    """

    __slots__ = (
        "_held",
        "_partials",
        "counters",
        "max_bytes",
        "max_datagrams",
        "max_timeout",
        "timeout",
    )  # fmt: skip

    def __init__(
        self,
        counters: Counters,
        *,
        max_bytes: int = 1 << 20,
        max_datagrams: int = 64,
        timeout: float = 15.0,
        max_timeout: float = 60.0,
    ) -> None:
        if max_bytes < MAX_DATAGRAM_LEN:
            raise ValueError(f"max_bytes {max_bytes} < one whole datagram {MAX_DATAGRAM_LEN}")
        self.counters = counters
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self.max_timeout = max_timeout
        self._held = 0
        # Insertion order is age order: eviction takes the first.
        self._partials: dict[tuple[bytes, bytes, int, int], _Partial] = {}

    @property
    def bytes_held(self) -> int:
        """What the held fragments cost: their payload plus FRAGMENT_OVERHEAD each."""
        return self._held

    def __len__(self) -> int:
        return len(self._partials)

    def add(self, packet: Ipv4Packet, now: float) -> Ipv4Packet | None:
        """Take one fragment; return the whole datagram when this completes it."""
        data = packet.payload
        if not data:
            # A last fragment with no bytes (the parser lets only that one through) adds
            # nothing, and held at no cost it was a list entry per copy: kept alive by its
            # own TTL, a stream of them grew the list without bound. Linux drops them too.
            self.counters.inc("ipv4__empty_fragment__drop")
            return None
        key = (packet.src, packet.dst, packet.protocol, packet.identification)
        start = packet.fragment_offset
        end = start + len(data)
        lifetime = min(float(packet.ttl), self.max_timeout)
        partial = self._partials.get(key)
        if partial is None:
            while len(self._partials) >= self.max_datagrams:
                self._evict_oldest("reassembly_datagrams_full")
            partial = _Partial(now + max(self.timeout, lifetime))
            self._partials[key] = partial
        else:
            partial.deadline = max(partial.deadline, now + lifetime)

        pieces = partial.pieces
        if not packet.more_fragments:
            if partial.total not in (-1, end) or (pieces and pieces[-1][1] > end):
                self._drop(key, "fragment_length_mismatch")
                return None
            partial.total = end
        elif partial.total != -1 and end > partial.total:
            self._drop(key, "fragment_length_mismatch")
            return None
        # The pieces are sorted and disjoint: only the one before `at` can reach past start,
        # and if the one at `at` does not reach below end, none after it can.
        at = _first_at_or_after(pieces, start)
        for s, e, d in pieces[max(0, at - 1) : at + 1]:
            if start < e and s < end:
                if s == start and e == end and d == data:
                    self.counters.inc("ipv4__duplicate_fragment__drop")
                    return None
                self._drop(key, "overlapping_fragment")
                return None

        cost = len(data) + FRAGMENT_OVERHEAD
        while self._held + cost > self.max_bytes:
            oldest = next(iter(self._partials))
            if oldest == key:
                # This datagram is itself the oldest: evicting it is the same policy.
                self._drop(key, "reassembly_memory")
                return None
            self._evict_oldest("reassembly_memory")
        pieces.insert(at, (start, end, data))
        partial.held += len(data)
        self._held += cost
        if start == 0:
            partial.first = packet

        first = partial.first
        # With no overlaps, the pieces cover [0, total) exactly when their sizes add up.
        if first is None or partial.total < 0 or partial.held != partial.total:
            return None
        del self._partials[key]
        self._held -= _cost(partial)
        if first.header_len + partial.total > MAX_DATAGRAM_LEN:
            self.counters.inc("ipv4__reassembled_too_long__drop")
            return None
        return Ipv4Packet(
            first.src,
            first.dst,
            first.protocol,
            b"".join(d for _, _, d in partial.pieces),
            ttl=first.ttl,
            tos=first.tos,
            identification=first.identification,
            dont_fragment=first.dont_fragment,
            options=first.options,
        )

    def expire(self, now: float) -> list[Ipv4Packet]:
        """Drop datagrams whose timer ran out; return the first fragments of those that had
        one (RFC 792 has the host send Time Exceeded only then)."""
        firsts: list[Ipv4Packet] = []
        for key in [k for k, p in self._partials.items() if p.deadline <= now]:
            first = self._partials[key].first
            if first is not None:
                firsts.append(first)
            self._drop(key, "reassembly_timeout")
        return firsts

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._partials.values()), default=None)

    def _drop(self, key: tuple[bytes, bytes, int, int], reason: str) -> None:
        partial = self._partials.pop(key)
        self._held -= _cost(partial)
        self.counters.inc(f"ipv4__{reason}__drop")

    def _evict_oldest(self, reason: str) -> None:
        partial = self._partials.pop(next(iter(self._partials)))
        self._held -= _cost(partial)
        self.counters.inc(f"ipv4__{reason}__evict")


def _cost(partial: _Partial) -> int:
    return partial.held + FRAGMENT_OVERHEAD * len(partial.pieces)
