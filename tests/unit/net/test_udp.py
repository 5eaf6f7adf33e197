"""UDP: the recorded datagram, checksum rules, parse failures, and the socket table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.errors import IntegrityError, SanityError
from summon.net.ipv4 import parse_address
from summon.net.udp import AddressInUse, UdpDatagram, UdpError, UdpSockets

# The UDP part of Linux's "hello" from 10.231.0.1:40000 to 10.231.0.2:7.
LINUX_HELLO = bytes.fromhex("9c400007000d09ea68656c6c6f")
PEER = parse_address("10.231.0.1")
US = parse_address("10.231.0.2")


def test_recorded_datagram_parses_and_reserializes_byte_for_byte() -> None:
    datagram = UdpDatagram.parse(LINUX_HELLO, PEER, US)
    assert datagram == UdpDatagram(40000, 7, b"hello")
    assert datagram.serialize(PEER, US) == LINUX_HELLO


def test_the_pseudo_header_is_covered() -> None:
    with pytest.raises(UdpError, match="checksum 0x09ea does not verify"):
        UdpDatagram.parse(LINUX_HELLO, PEER, parse_address("10.231.0.3"))


def test_zero_checksum_means_none_was_computed() -> None:
    unchecked = LINUX_HELLO[:6] + b"\0\0" + LINUX_HELLO[8:]
    # Any addresses: there is nothing to verify (RFC 768).
    assert UdpDatagram.parse(unchecked, US, US).payload == b"hello"


def test_a_computed_zero_checksum_is_sent_as_all_ones() -> None:
    # Search a payload whose checksum computes to 0: it must go out as 0xffff.
    for n in range(0x10000):
        wire = UdpDatagram(1, 2, n.to_bytes(2, "big")).serialize(PEER, US)
        if wire[6:8] == b"\xff\xff":
            break
    else:  # pragma: no cover
        pytest.fail("no payload with a zero checksum in range")
    assert UdpDatagram.parse(wire, PEER, US).payload == n.to_bytes(2, "big")


def test_bytes_past_the_udp_length_are_not_payload() -> None:
    assert UdpDatagram.parse(LINUX_HELLO + b"junk", PEER, US).payload == b"hello"


@pytest.mark.parametrize(
    ("data", "error", "reason", "message"),
    [
        (LINUX_HELLO[:7], IntegrityError, "too_short", "udp: datagram of 7 bytes < 8"),
        (
            LINUX_HELLO[:4] + b"\x00\x07" + LINUX_HELLO[6:],
            IntegrityError,
            "bad_length",
            "length 7 < header 8",
        ),
        (
            LINUX_HELLO[:4] + b"\x00\x0e" + LINUX_HELLO[6:],
            IntegrityError,
            "truncated",
            "length 14 > 13 bytes received",
        ),
        (LINUX_HELLO[:-1] + b"O", IntegrityError, "bad_checksum", "checksum 0x09ea"),
        (
            UdpDatagram(40000, 0, b"hello").serialize(PEER, US),
            SanityError,
            "port_zero",
            "destination port 0",
        ),
    ],
)
def test_bad_datagrams_raise_the_typed_error_naming_the_condition(
    data: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(UdpError) as info:
        UdpDatagram.parse(data, PEER, US)
    assert isinstance(info.value, error)
    assert info.value.reason == reason
    assert message in str(info.value)


@given(
    src_port=st.integers(0, 0xFFFF),
    dst_port=st.integers(1, 0xFFFF),
    payload=st.binary(max_size=3000),
    src=st.binary(min_size=4, max_size=4),
    dst=st.binary(min_size=4, max_size=4),
)
def test_parse_inverts_serialize(
    src_port: int, dst_port: int, payload: bytes, src: bytes, dst: bytes
) -> None:
    datagram = UdpDatagram(src_port, dst_port, payload)
    assert UdpDatagram.parse(datagram.serialize(src, dst), src, dst) == datagram


def _no_send(*args: object) -> None:
    raise AssertionError("not sending in this test")


def test_socket_table_binds_ports_once_and_frees_them_on_close() -> None:
    table = UdpSockets()
    socket = table.bind(53, _no_send)
    assert table.lookup(53) is socket
    with pytest.raises(AddressInUse, match="port 53 is in use"):
        table.bind(53, _no_send)
    socket.close()
    assert table.lookup(53) is None
    assert table.bind(53, _no_send).port == 53


def test_ephemeral_ports_are_distinct_and_in_the_dynamic_range() -> None:
    table = UdpSockets()
    ports = {table.bind(0, _no_send).port for _ in range(500)}
    assert len(ports) == 500
    assert all(49152 <= p <= 65535 for p in ports)


@pytest.mark.parametrize("port", [-1, 65536])
def test_ports_outside_the_range_are_refused(port: int) -> None:
    with pytest.raises(ValueError):
        UdpSockets().bind(port, _no_send)
