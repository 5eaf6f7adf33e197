"""Ethernet II: the recorded frame, each parse failure, and the round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.errors import IntegrityError, SanityError
from summon.net.ethernet import (
    BROADCAST,
    ETHERTYPE_ARP,
    MIN_FRAME_LEN,
    EthernetError,
    EthernetFrame,
    format_mac,
    parse_mac,
)

# Linux's ARP request for 10.231.0.2, as read from a TAP (42 bytes: unpadded).
LINUX_ARP_FRAME = bytes.fromhex(
    "ffffffffffff025a0000000108060001080006040001025a000000010ae700010000000000000ae70002"
)


def test_recorded_linux_frame_parses_to_its_fields() -> None:
    frame = EthernetFrame.parse(LINUX_ARP_FRAME)
    assert frame.dst == BROADCAST
    assert format_mac(frame.src) == "02:5a:00:00:00:01"
    assert frame.ethertype == ETHERTYPE_ARP
    assert len(frame.payload) == 28
    assert frame.serialize() == LINUX_ARP_FRAME


@pytest.mark.parametrize(
    ("frame", "error", "reason", "message"),
    [
        (b"", IntegrityError, "too_short", "ethernet: frame of 0 bytes < header 14"),
        (LINUX_ARP_FRAME[:13], IntegrityError, "too_short", "frame of 13 bytes < header 14"),
        (
            BROADCAST + b"\x03" + bytes(5) + b"\x08\x00",
            SanityError,
            "source_multicast",
            "source MAC 03:00:00:00:00:00 is a group address",
        ),
        (
            BROADCAST + b"\x02" + bytes(5) + b"\x05\xdc",
            SanityError,
            "not_ethernet_ii",
            "type field 0x05dc < 0x0600 is an 802.3 length",
        ),
    ],
)
def test_bad_frames_raise_the_typed_error_naming_the_condition(
    frame: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(EthernetError) as info:
        EthernetFrame.parse(frame)
    assert isinstance(info.value, error)
    assert info.value.reason == reason
    assert message in str(info.value)
    assert str(info.value).startswith("ethernet: ")


def test_padding_fills_a_short_frame_to_the_wire_minimum() -> None:
    frame = EthernetFrame(BROADCAST, parse_mac("02:00:00:00:00:01"), ETHERTYPE_ARP, b"x" * 28)
    wire = frame.serialize_padded()
    assert len(wire) == MIN_FRAME_LEN
    assert wire.endswith(bytes(MIN_FRAME_LEN - 14 - 28))
    # Padding stays in the payload on the way in: the layer above trims it by its length.
    assert EthernetFrame.parse(wire).payload[:28] == b"x" * 28


@pytest.mark.parametrize("text", ["02:00:00:00:00", "02:00:00:00:00:001", "zz:00:00:00:00:00"])
def test_parse_mac_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mac(text)


unicast_macs = st.binary(min_size=6, max_size=6).map(lambda b: bytes([b[0] & 0xFE]) + b[1:])


@given(
    dst=st.binary(min_size=6, max_size=6),
    src=unicast_macs,
    ethertype=st.integers(0x0600, 0xFFFF),
    payload=st.binary(max_size=1500),
)
def test_parse_inverts_serialize(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = EthernetFrame(dst, src, ethertype, payload)
    assert EthernetFrame.parse(frame.serialize()) == frame
    assert parse_mac(format_mac(src)) == src
