"""IPv4: the recorded header, every parse failure, fragmentation, and reassembly's limits."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.checksum import checksum
from summon.net.counters import Counters
from summon.net.errors import IntegrityError, SanityError
from summon.net.ipv4 import (
    FRAGMENT_OVERHEAD,
    PROTO_ICMP,
    PROTO_UDP,
    FragmentationNeeded,
    Ipv4Error,
    Ipv4Packet,
    Reassembler,
    format_address,
    fragment,
    parse_address,
)

# A textbook header (192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64, checksum 0xb861), with
# the 95 payload bytes its total length of 115 promises.
TEXTBOOK = bytes.fromhex("450000730000400040 11b861c0a80001c0a800c7".replace(" ", ""))
TEXTBOOK_DATAGRAM = TEXTBOOK + bytes(range(95))
# The IPv4 part of Linux's `ping -p 5a5a 10.231.0.2`, read from a TAP.
LINUX_ECHO = bytes.fromhex(
    "45000054e2e64000400141f20ae700010ae700020800f1c6532500013f8e096b000000004c0a0f0000000000"
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
)
A = parse_address("10.0.0.1")
B = parse_address("10.0.0.2")


def test_textbook_header_parses_and_reserializes_byte_for_byte() -> None:
    packet = Ipv4Packet.parse(TEXTBOOK_DATAGRAM)
    assert format_address(packet.src) == "192.168.0.1"
    assert format_address(packet.dst) == "192.168.0.199"
    assert (packet.protocol, packet.ttl, packet.dont_fragment) == (PROTO_UDP, 64, True)
    assert not packet.is_fragment
    assert packet.payload == bytes(range(95))
    assert packet.serialize() == TEXTBOOK_DATAGRAM


def test_recorded_linux_echo_request_parses() -> None:
    packet = Ipv4Packet.parse(LINUX_ECHO)
    assert packet.protocol == PROTO_ICMP
    assert packet.identification == 0xE2E6
    assert len(packet.payload) == 64
    assert packet.serialize() == LINUX_ECHO


def test_link_padding_after_total_length_is_trimmed() -> None:
    assert Ipv4Packet.parse(TEXTBOOK_DATAGRAM + bytes(20)).payload == bytes(range(95))


def header(
    *,
    version_ihl: int = 0x45,
    total: int | None = None,
    flags_offset: int = 0,
    ttl: int = 64,
    src: bytes = A,
    dst: bytes = B,
    options: bytes = b"",
    payload: bytes = b"data",
    fix_checksum: bool = True,
) -> bytes:
    """A packet with any field set, checksum made right unless asked otherwise."""
    if total is None:
        total = 20 + len(options) + len(payload)
    raw = bytearray(
        struct.pack("!BBHHHBBH4s4s", version_ihl, 0, total, 1, flags_offset, ttl, 17, 0, src, dst)
    )
    raw += options
    if fix_checksum:
        struct.pack_into("!H", raw, 10, checksum(raw))
    return bytes(raw) + payload


CASES = [
    (b"\x45" * 19, IntegrityError, "too_short", "packet of 19 bytes < header 20"),
    (header(version_ihl=0x65), IntegrityError, "bad_version", "version 6 != 4"),
    (header(version_ihl=0x44), IntegrityError, "bad_header_length", "header length 4 words < 5"),
    (header(version_ihl=0x4F), IntegrityError, "truncated_header", "header length 60 > 24 bytes"),
    (header(total=19), IntegrityError, "bad_total_length", "total length 19 < header length 20"),
    (header(total=25), IntegrityError, "truncated", "total length 25 > 24 bytes received"),
    (header(fix_checksum=False), IntegrityError, "bad_checksum", "header checksum 0x0000"),
    (header(flags_offset=0x8000), SanityError, "reserved_flag", "reserved flag bit is set"),
    (header(ttl=0), SanityError, "ttl_zero", "time to live is 0"),
    (header(src=b"\xe0\0\0\x01"), SanityError, "bad_source", "source 224.0.0.1 is not"),
    (header(src=b"\x7f\0\0\x01"), SanityError, "bad_source", "source 127.0.0.1"),
    (header(dst=b"\0\0\0\0"), SanityError, "bad_destination", "destination 0.0.0.0"),
    (header(dst=b"\x7f\0\0\x01"), SanityError, "bad_destination", "destination 127.0.0.1"),
    (header(dst=b"\xf0\0\0\x01"), SanityError, "bad_destination", "destination 240.0.0.1"),
    (
        header(version_ihl=0x46, options=b"\x44\x08\x00\x00"),
        SanityError,
        "bad_option",
        "option 68 at offset 0 has length 8: outside 2..4",
    ),
    (
        header(version_ihl=0x46, options=b"\x01\x01\x01\x83"),
        SanityError,
        "bad_option",
        "option 131 at offset 3 has no length byte",
    ),
    (
        header(version_ihl=0x46, options=b"\x07\x01\x00\x00"),
        SanityError,
        "bad_option",
        "option 7 at offset 0 has length 1",
    ),
    (
        header(flags_offset=0x2000, payload=b"12345"),
        SanityError,
        "bad_fragment_length",
        "carries 5 bytes, not a positive multiple of 8",
    ),
    (
        header(flags_offset=0x2000, payload=b""),
        SanityError,
        "bad_fragment_length",
        "carries 0 bytes",
    ),
    (
        header(flags_offset=0x1FFF, payload=b"12345678"),
        SanityError,
        "fragment_too_long",
        "fragment at 65528 of 8 bytes ends past 65535",
    ),
]


@pytest.mark.parametrize(("data", "error", "reason", "message"), CASES)
def test_bad_packets_raise_the_typed_error_naming_the_condition(
    data: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(Ipv4Error) as info:
        Ipv4Packet.parse(data)
    assert isinstance(info.value, error)
    assert info.value.reason == reason
    assert message in str(info.value)


def test_well_formed_options_are_skipped_and_kept() -> None:
    # NOP, a 4-byte router alert (RFC 2113, copied), then end of list.
    options = b"\x01\x94\x04\x00\x00\x00\x00\x00"
    packet = Ipv4Packet.parse(header(version_ihl=0x47, options=options))
    assert packet.options == options
    assert packet.header_len == 28
    assert packet.payload == b"data"


unicast = st.binary(min_size=4, max_size=4).filter(lambda b: 0 < b[0] < 224 and b[0] != 127)
options = st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00", b"\x07\x07" + bytes(6)])


@st.composite
def packets(draw: st.DrawFn) -> Ipv4Packet:
    more = draw(st.booleans())
    size = draw(st.integers(1, 180)) * 8 if more else draw(st.integers(0, 1500))
    offset = draw(st.integers(0, 8000)) * 8
    return Ipv4Packet(
        draw(unicast),
        draw(unicast),
        draw(st.integers(0, 255)),
        draw(st.binary(min_size=size, max_size=size)),
        ttl=draw(st.integers(1, 255)),
        tos=draw(st.integers(0, 255)),
        identification=draw(st.integers(0, 0xFFFF)),
        dont_fragment=draw(st.booleans()),
        more_fragments=more,
        fragment_offset=offset,
        options=draw(options),
    )


@given(packets())
def test_parse_inverts_serialize(packet: Ipv4Packet) -> None:
    assert Ipv4Packet.parse(packet.serialize()) == packet


# --- fragmentation -----------------------------------------------------------------------


def test_datagram_within_the_mtu_is_not_cut() -> None:
    packet = Ipv4Packet(A, B, PROTO_UDP, bytes(1480))
    assert fragment(packet, 1500) == [packet]


def test_fragments_fit_the_mtu_and_carry_8_byte_aligned_offsets() -> None:
    payload = bytes(i % 251 for i in range(4000))
    pieces = fragment(Ipv4Packet(A, B, PROTO_UDP, payload, identification=7), 1500)
    assert [(p.fragment_offset, len(p.payload), p.more_fragments) for p in pieces] == [
        (0, 1480, True),
        (1480, 1480, True),
        (2960, 1040, False),
    ]
    assert all(len(p.serialize()) <= 1500 and p.identification == 7 for p in pieces)
    assert b"".join(p.payload for p in pieces) == payload


def test_only_copied_options_go_into_later_fragments() -> None:
    # Router alert (copied flag set) and a record-route-like option 7 (not copied).
    options = b"\x94\x04\x00\x00" + b"\x07\x07" + bytes(5) + b"\x00"
    pieces = fragment(Ipv4Packet(A, B, PROTO_UDP, bytes(300), options=options), 200)
    assert pieces[0].options == options
    assert all(p.options == b"\x94\x04\x00\x00" for p in pieces[1:])
    assert all(len(p.serialize()) <= 200 for p in pieces)


def test_dont_fragment_is_honoured_with_an_error() -> None:
    with pytest.raises(FragmentationNeeded) as info:
        fragment(Ipv4Packet(A, B, PROTO_UDP, bytes(1481), dont_fragment=True), 1500)
    assert (info.value.size, info.value.mtu) == (1501, 1500)
    assert "datagram of 1501 bytes > MTU 1500 with DF set" in str(info.value)


def test_a_fragment_is_cut_again_keeping_its_place_and_more_flag() -> None:
    middle = Ipv4Packet(A, B, PROTO_UDP, bytes(1000), more_fragments=True, fragment_offset=800)
    pieces = fragment(middle, 576)
    assert pieces[0].fragment_offset == 800
    assert all(p.more_fragments for p in pieces)
    assert sum(len(p.payload) for p in pieces) == 1000


def test_mtu_below_the_ipv4_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="MTU 60 < minimum 68"):
        fragment(Ipv4Packet(A, B, PROTO_UDP, bytes(100)), 60)


# --- reassembly --------------------------------------------------------------------------


def cut(payload: bytes, mtu: int = 1500, ident: int = 1, ttl: int = 64) -> list[Ipv4Packet]:
    """Fragments as they would arrive: serialized by the sender, parsed by us."""
    packet = Ipv4Packet(A, B, PROTO_UDP, payload, identification=ident, ttl=ttl)
    return [Ipv4Packet.parse(p.serialize()) for p in fragment(packet, mtu)]


def feed(reassembler: Reassembler, pieces: list[Ipv4Packet], now: float = 0.0) -> list[Ipv4Packet]:
    return [d for p in pieces if (d := reassembler.add(p, now)) is not None]


def test_fragments_in_any_order_give_the_datagram_once() -> None:
    payload = bytes(i % 253 for i in range(5000))
    pieces = cut(payload)
    for order in (pieces, pieces[::-1], pieces[1:] + pieces[:1]):
        reassembler = Reassembler(Counters())
        (whole,) = feed(reassembler, order)
        assert whole.payload == payload
        assert not whole.is_fragment
        assert reassembler.bytes_held == 0
        assert len(reassembler) == 0


def tiny(data: bytes, offset: int, more: bool) -> Ipv4Packet:
    """One fragment of datagram 1 from A to B, as parsed off the wire (of any size: the
    fragment() helper keeps to the 68-byte minimum MTU, a sender need not)."""
    packet = Ipv4Packet(
        A, B, PROTO_UDP, data, identification=1, more_fragments=more, fragment_offset=offset
    )
    return Ipv4Packet.parse(packet.serialize())


def test_thousands_of_tiny_fragments_in_random_order_with_overlaps_anywhere() -> None:
    """Each fragment is checked against its neighbours only (the pieces are kept sorted):
    8,000 eight-byte fragments of one datagram cost 2.2 s of CPU when each was checked
    against every piece held. The policy is the same: in any order the datagram comes out
    whole once, and an overlap wherever it lands drops it."""
    payload = random.Random(5).randbytes(8 * 8000)
    pieces = [tiny(payload[i : i + 8], i, i + 8 < len(payload)) for i in range(0, len(payload), 8)]
    for seed in range(3):
        order = pieces[:]
        random.Random(seed).shuffle(order)
        # 8,000 fragments cost 1.5 MB to hold (FRAGMENT_OVERHEAD each): over the default bound.
        (whole,) = feed(Reassembler(Counters(), max_bytes=2 << 20), order)
        assert whole.payload == payload
        counters = Counters()
        at = random.Random(seed).randrange(1, 7999) * 8 - 4  # across two fragments' bytes
        spans = tiny(bytes(16), at - at % 8, more=True)
        reassembler = Reassembler(counters, max_bytes=2 << 20)
        assert feed(reassembler, [*order[:4000], spans, *order[4000:]]) == []
        assert counters["ipv4__overlapping_fragment__drop"] == 1


def test_exact_duplicate_fragments_are_ignored() -> None:
    counters = Counters()
    pieces = cut(bytes(3000))
    (whole,) = feed(Reassembler(counters), [pieces[0], pieces[0], *pieces[1:]])
    assert len(whole.payload) == 3000
    assert counters["ipv4__duplicate_fragment__drop"] == 1


def test_empty_last_fragments_are_dropped_not_held() -> None:
    """An empty last fragment passes the parser (only fragments with more to come must
    carry data) and overlaps nothing: held at no cost to the byte bound, 200,000 copies of
    one kept 20 MB in a single datagram's list."""
    counters = Counters()
    reassembler = Reassembler(counters)
    empty = tiny(b"", 1480, more=False)
    for _ in range(1000):
        assert reassembler.add(empty, 0.0) is None
    assert counters["ipv4__empty_fragment__drop"] == 1000
    assert len(reassembler) == 0
    # The datagram it claimed to end still comes out whole from its real fragments.
    (whole,) = feed(reassembler, cut(bytes(3000)))
    assert len(whole.payload) == 3000


def test_overlapping_fragment_drops_the_whole_datagram() -> None:
    counters = Counters()
    reassembler = Reassembler(counters)
    first, second, third = cut(bytes(3000))
    # The same start with other bytes: the classic overlap attack on a firewall's view.
    rewrite = Ipv4Packet.parse(
        Ipv4Packet(
            A, B, PROTO_UDP, b"\xff" * 16, identification=1, more_fragments=True,
            fragment_offset=1480,
        ).serialize()
    )  # fmt: skip
    assert feed(reassembler, [first, second, rewrite, third]) == []
    assert counters["ipv4__overlapping_fragment__drop"] == 1
    # A new attempt, holding only third.
    assert reassembler.bytes_held == len(third.payload) + FRAGMENT_OVERHEAD


def test_conflicting_last_fragments_drop_the_datagram() -> None:
    counters = Counters()
    reassembler = Reassembler(counters)
    pieces = cut(bytes(3000))
    short_last = Ipv4Packet(A, B, PROTO_UDP, bytes(8), identification=1, fragment_offset=1480)
    assert feed(reassembler, [pieces[2], short_last]) == []
    assert counters["ipv4__fragment_length_mismatch__drop"] == 1
    # A fragment reaching past a known end is as bad.
    reassembler.add(pieces[2], 0.0)
    past = Ipv4Packet(
        A, B, PROTO_UDP, bytes(16), identification=1, more_fragments=True, fragment_offset=2992
    )
    assert reassembler.add(past, 0.0) is None
    assert counters["ipv4__fragment_length_mismatch__drop"] == 2


def test_timer_follows_rfc_791_and_expiry_drops_and_counts() -> None:
    counters = Counters()
    reassembler = Reassembler(counters, timeout=15.0, max_timeout=60.0)
    first, second, _ = cut(bytes(3000), ttl=5)
    reassembler.add(first, now=100.0)
    assert reassembler.next_deadline() == 115.0  # the 15 s floor beats TTL 5
    high_ttl = Ipv4Packet.parse(
        Ipv4Packet(
            A, B, PROTO_UDP, second.payload, identification=1, more_fragments=True,
            fragment_offset=1480, ttl=200,
        ).serialize()
    )  # fmt: skip
    reassembler.add(high_ttl, now=101.0)
    assert reassembler.next_deadline() == 161.0  # raised to the TTL, capped at 60 s
    assert reassembler.expire(160.9) == []
    assert reassembler.expire(161.0) == [first]  # handed back for ICMP time exceeded
    assert counters["ipv4__reassembly_timeout__drop"] == 1
    assert reassembler.bytes_held == 0


def test_memory_bound_evicts_the_oldest_datagram() -> None:
    counters = Counters()
    reassembler = Reassembler(counters, max_bytes=65535)
    # Each incomplete datagram holds its first 40000 bytes; two do not fit in 65535.
    old = cut(bytes(50000), mtu=40020, ident=1)[0]
    new = cut(bytes(50000), mtu=40020, ident=2)
    reassembler.add(old, 0.0)
    assert reassembler.bytes_held == 40000 + FRAGMENT_OVERHEAD
    (whole,) = feed(reassembler, new)
    assert whole.identification == 2
    assert counters["ipv4__reassembly_memory__evict"] == 1
    assert reassembler.bytes_held == 0


def test_tiny_fragments_of_many_datagrams_cost_the_bound_in_real_memory() -> None:
    """Each fragment is charged its payload and what Python spends to hold it: counting
    payload alone, 8-byte fragments of 64 datagrams from an attacker on the link kept
    22.7 MB of objects within a 1 MiB bound."""
    counters = Counters()
    reassembler = Reassembler(counters)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for ident in range(64):
            for i in range(2000):  # every other slot: no datagram ever completes
                fragment_ = Ipv4Packet(
                    A, B, PROTO_UDP, bytes(8), identification=ident, more_fragments=True,
                    fragment_offset=16 * i,
                )  # fmt: skip
                assert reassembler.add(fragment_, 0.0) is None
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert reassembler.bytes_held <= reassembler.max_bytes
    assert counters["ipv4__reassembly_memory__evict"] > 0
    assert held < 1.25 * reassembler.max_bytes


def test_concurrent_datagram_bound_evicts_the_oldest() -> None:
    counters = Counters()
    reassembler = Reassembler(counters, max_datagrams=4)
    for ident in range(10):
        reassembler.add(cut(bytes(3000), ident=ident)[0], 0.0)
    assert len(reassembler) == 4
    assert counters["ipv4__reassembly_datagrams_full__evict"] == 6
    # The survivors are the newest four.
    rest = cut(bytes(3000), ident=9)[1:]
    assert len(feed(reassembler, rest)) == 1


def test_datagram_over_65535_bytes_with_its_header_is_dropped() -> None:
    counters = Counters()
    reassembler = Reassembler(counters)
    # A first fragment with 40 bytes of options and a last one ending at 65512: valid each,
    # together 60 + 65512 > 65535.
    first = Ipv4Packet(
        A, B, PROTO_UDP, bytes(1000), identification=3, more_fragments=True,
        options=b"\x01" * 39 + b"\x00",
    )  # fmt: skip
    middle = Ipv4Packet(
        A, B, PROTO_UDP, bytes(63504), identification=3, more_fragments=True,
        fragment_offset=1000,
    )  # fmt: skip
    last = Ipv4Packet(A, B, PROTO_UDP, bytes(1008), identification=3, fragment_offset=64504)
    parsed = [Ipv4Packet.parse(p.serialize()) for p in (first, middle, last)]
    assert feed(reassembler, parsed) == []
    assert counters["ipv4__reassembled_too_long__drop"] == 1


def test_reassembler_refuses_a_memory_bound_below_one_datagram() -> None:
    with pytest.raises(ValueError, match="max_bytes 1000"):
        Reassembler(Counters(), max_bytes=1000)
