"""ICMP: the recorded echo request, parse failures, error events, and the rate limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.checksum import checksum
from summon.net.errors import IntegrityError, SanityError
from summon.net.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    FRAGMENTATION_NEEDED,
    MAX_QUOTE,
    PORT_UNREACHABLE,
    TIME_EXCEEDED,
    IcmpError,
    IcmpErrorEvent,
    IcmpMessage,
    TokenBucket,
)
from summon.net.ipv4 import PROTO_UDP, Ipv4Packet, parse_address

# The ICMP part of Linux's `ping -p 5a5a`: id 0x5325, seq 1, a timestamp, then the pattern.
LINUX_ECHO = bytes.fromhex(
    "0800f1c6532500013f8e096b000000004c0a0f00000000005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
)
# What the stack answered on the wire (checksum 0xf9c6 = 0xf1c6 + 0x0800, as RFC 1624 says).
STACK_REPLY = bytes.fromhex("0000f9c6") + LINUX_ECHO[4:]
US = parse_address("10.231.0.2")
PEER = parse_address("10.231.0.1")


def test_recorded_echo_request_parses_and_its_reply_matches_the_wire() -> None:
    request = IcmpMessage.parse(LINUX_ECHO)
    assert (request.type, request.code) == (ECHO_REQUEST, 0)
    assert (request.identifier, request.sequence) == (0x5325, 1)
    assert request.serialize() == LINUX_ECHO
    reply = IcmpMessage.echo_reply(request.identifier, request.sequence, request.data)
    assert reply.serialize() == STACK_REPLY


def offending() -> bytes:
    """A UDP datagram we sent, as an error would quote it."""
    return Ipv4Packet(US, PEER, PROTO_UDP, b"\x13\x88\x00\x35\x00\x0c\x00\x00abcd").serialize()


def _fix(message: bytes) -> bytes:
    """message with its checksum made right, so only the condition under test is wrong."""
    raw = bytearray(message)
    raw[2:4] = b"\0\0"
    raw[2:4] = checksum(raw).to_bytes(2, "big")
    return bytes(raw)


@pytest.mark.parametrize(
    ("data", "error", "reason", "message"),
    [
        (b"\x08\x00\x00", IntegrityError, "too_short", "icmp: message of 3 bytes < 8"),
        (LINUX_ECHO[:-1] + b"\0", IntegrityError, "bad_checksum", "checksum 0xf1c6 does not"),
        (_fix(b"\x08\x01" + LINUX_ECHO[2:]), SanityError, "bad_code", "code 1 > 0 for type 8"),
        (_fix(b"\x03\x10\0\0\0\0\0\0" + offending()), SanityError, "bad_code", "code 16 > 15"),
        (_fix(b"\x03\x03\0\0\0\0\0\0" + b"\x45" * 10), SanityError, "bad_quote", "quotes 10"),
        (
            _fix(b"\x03\x03\0\0\0\0\0\0" + b"\x65" + bytes(27)),
            SanityError,
            "bad_quote",
            "not an IPv4 header",
        ),
        (
            _fix(b"\x0b\x00\0\0\0\0\0\0" + offending()[:24]),
            SanityError,
            "bad_quote",
            "error quotes 24 bytes < header length 20 + 8",
        ),
    ],
)
def test_bad_messages_raise_the_typed_error_naming_the_condition(
    data: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(IcmpError) as info:
        IcmpMessage.parse(data)
    assert isinstance(info.value, error)
    assert info.value.reason == reason
    assert message in str(info.value)


def test_unknown_types_parse_for_the_stack_to_count() -> None:
    message = IcmpMessage(42, 7, b"\1\2\3\4", b"extended")
    assert IcmpMessage.parse(message.serialize()) == message


def test_error_event_names_our_datagram_and_its_ports() -> None:
    message = IcmpMessage.error(DEST_UNREACHABLE, PORT_UNREACHABLE, offending())
    event = IcmpErrorEvent.from_message(IcmpMessage.parse(message.serialize()), PEER)
    assert event.kind == "port_unreachable"
    assert (event.src_ip, event.dst_ip, event.protocol) == (US, PEER, PROTO_UDP)
    assert event.original[:4] == b"\x13\x88\x00\x35"
    assert event.reporter == PEER


def test_fragmentation_needed_carries_the_next_hop_mtu() -> None:
    message = IcmpMessage.error(DEST_UNREACHABLE, FRAGMENTATION_NEEDED, offending(), mtu=1280)
    parsed = IcmpMessage.parse(message.serialize())
    assert parsed.next_hop_mtu == 1280
    event = IcmpErrorEvent.from_message(parsed, PEER)
    assert (event.kind, event.next_hop_mtu) == ("fragmentation_needed", 1280)


def test_error_quotes_at_most_rfc_1812s_576_byte_budget() -> None:
    big = Ipv4Packet(US, PEER, PROTO_UDP, bytes(2000)).serialize()
    message = IcmpMessage.error(TIME_EXCEEDED, 0, big)
    assert len(message.data) == MAX_QUOTE
    assert 20 + len(message.serialize()) == 576


def test_unnamed_type_code_pairs_get_a_generic_kind() -> None:
    event = IcmpErrorEvent(12, 0, PEER, US, PEER, 6, 0, bytes(8))
    assert event.kind == "type_12_code_0"


@given(
    kind=st.sampled_from([ECHO_REQUEST, ECHO_REPLY]),
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    data=st.binary(max_size=2000),
)
def test_parse_inverts_serialize(kind: int, ident: int, seq: int, data: bytes) -> None:
    make = IcmpMessage.echo_request if kind == ECHO_REQUEST else IcmpMessage.echo_reply
    message = make(ident, seq, data)
    assert IcmpMessage.parse(message.serialize()) == message


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5)
    assert [bucket.allow(0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.allow(0.05) is False  # half a token back
    assert bucket.allow(0.1) is True
    assert [bucket.allow(100.0) for _ in range(6)] == [True] * 5 + [False]
    # Time going backwards (a clock glitch) refills nothing and breaks nothing.
    assert bucket.allow(50.0) is False
