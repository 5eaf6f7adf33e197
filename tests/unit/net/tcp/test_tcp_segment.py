"""The segment record and its two-step parser: round trips, and one typed error per condition."""

from __future__ import annotations

import struct

import pytest

from summon.net.checksum import checksum, pseudo_header_sum
from summon.net.tcp import Segment, TCPIntegrityError, TCPSanityError, parse_segment
from summon.net.tcp.wire import ACK, FIN, PSH, RST, SYN

SRC = bytes((192, 0, 2, 1))
DST = bytes((192, 0, 2, 2))


def raw(
    flags: int = ACK,
    options: bytes = b"",
    payload: bytes = b"",
    offset_words: int | None = None,
    ports: tuple[int, int] = (1234, 80),
) -> bytes:
    """A segment built by hand (not with our encoder), checksum right unless spoiled later."""
    words = offset_words if offset_words is not None else 5 + len(options) // 4
    head = struct.pack("!HHIIBBHHH", *ports, 100, 200, words << 4, flags, 4096, 0, 0)
    data = head + options + payload
    csum = checksum(data, pseudo_header_sum(SRC, DST, 6, len(data)))
    return data[:16] + csum.to_bytes(2, "big") + data[18:]


def test_round_trip_with_every_option() -> None:
    seg = Segment(
        40000, 80, 0xFFFFFFFE, 7, SYN | ACK, 65535, b"hello",
        mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 2),
    )  # fmt: skip
    data = seg.encode(SRC, DST)
    assert len(data) % 2 == 1  # odd length: the checksum's zero padding is exercised
    assert parse_segment(SRC, DST, data) == seg
    assert seg.length == 6  # payload + SYN


def test_parses_a_hand_built_segment() -> None:
    seg = parse_segment(SRC, DST, raw(PSH | ACK, payload=b"abc"))
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.window) == (1234, 80, 100, 200, 4096)
    assert seg.payload == b"abc" and seg.flags == PSH | ACK and seg.mss is None


def test_unknown_options_and_sack_blocks_are_skipped_and_wscale_is_clamped() -> None:
    options = bytes((1, 99, 4, 0xAA, 0xBB, 5, 10)) + bytes(8) + bytes((3, 3, 20, 0))
    seg = parse_segment(SRC, DST, raw(SYN, options + bytes(-len(options) % 4)))
    assert seg.wscale == 14  # RFC 7323 2.3: larger shifts are used as 14


def test_options_stop_at_end_of_list() -> None:
    seg = parse_segment(SRC, DST, raw(SYN, bytes((0, 2, 4, 5))))  # MSS after EOL: ignored
    assert seg.mss is None


def test_checksum_covers_the_pseudo_header() -> None:
    data = raw()
    with pytest.raises(TCPIntegrityError):
        parse_segment(SRC, bytes((192, 0, 2, 3)), data)  # same bytes, other destination


IE, SE = TCPIntegrityError, TCPSanityError


def spoil(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes((value,)) + data[at + 1 :]


@pytest.mark.parametrize(
    ("data", "error", "reason", "message"),  # error: IE integrity, SE sanity
    [
        (b"\x00" * 19, IE, "short_header", "segment length 19 < 20"),
        (raw(offset_words=4), IE, "bad_data_offset", "data offset 4 words < 5"),
        (raw(offset_words=6), IE, "bad_data_offset", "header length 24 > segment length 20"),
        (spoil(raw(), 19, 1), IE, "bad_checksum", "checksum 0x"),
        (raw(options=bytes((1, 1, 1, 2))), IE, "bad_option", "has no length byte"),
        (raw(options=bytes((2, 1, 0, 0))), IE, "bad_option", "length 1 outside 2..4"),
        (raw(options=bytes((2, 8, 0, 0))), IE, "bad_option", "length 8 outside 2..4"),
        (raw(ports=(0, 80)), SE, "port_zero", "source port 0"),
        (raw(ports=(80, 0)), SE, "port_zero", "destination port 0"),
        (raw(SYN | FIN), SE, "syn_fin", "SYN and FIN both set"),
        (raw(SYN | RST), SE, "syn_rst", "SYN and RST both set"),
        (raw(SYN, bytes((2, 3, 5, 0))), SE, "bad_option_length", "option kind 2 length 3 != 4"),
        (raw(SYN, bytes((3, 4, 7, 0))), SE, "bad_option_length", "option kind 3 length 4 != 3"),
    ],
)  # fmt: skip
def test_each_broken_condition_raises_its_typed_error(
    data: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        parse_segment(SRC, DST, data)
    assert info.value.reason == reason  # type: ignore[attr-defined]
    assert info.value.layer == "tcp"  # type: ignore[attr-defined]
    assert str(info.value).startswith("tcp: ")


def test_integrity_is_checked_before_sanity() -> None:
    # port 0 AND a bad checksum: nothing is believed before the checksum holds
    with pytest.raises(TCPIntegrityError):
        parse_segment(SRC, DST, spoil(raw(ports=(0, 80)), 19, 1))


def test_repr_reads_like_packetdrill() -> None:
    seg = Segment(1, 2, 100, 5, SYN | ACK, 512, mss=1460, wscale=7)
    assert repr(seg) == "<Segment 1>2 S. 100:100(0) ack 5 win 512 <mss 1460,wscale 7>>"
