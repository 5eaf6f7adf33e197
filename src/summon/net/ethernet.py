"""Ethernet II framing: the wire layout, the frame record, and its two-step parser."""

from __future__ import annotations

import struct

from summon.net._record import Record
from summon.net.errors import IntegrityError, ParseError, SanityError

# Wire (Ethernet II / DIX), as links hand frames over: no preamble, no FCS.
#
#    0                   6                   12        14
#   +-------------------+-------------------+---------+----------------
#   | destination MAC   | source MAC        |EtherType| payload ...
#   +-------------------+-------------------+---------+----------------
HEADER = struct.Struct("!6s6sH")
HEADER_LEN = 14
# The shortest frame on the wire without its FCS; shorter frames are padded when sent.
MIN_FRAME_LEN = 60
# A type field below this is an IEEE 802.3 length (an LLC frame), not an EtherType.
MIN_ETHERTYPE = 0x0600

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q and 802.1ad tags: well-formed frames the stack does not take (it counts and drops).
VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})

BROADCAST = b"\xff" * 6


def is_multicast_mac(mac: bytes) -> bool:
    """True for group addresses (broadcast included): the I/G bit of the first octet."""
    return bool(mac[0] & 1)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """ "02:00:00:00:00:01" -> 6 bytes; ValueError if it is not six hex octets."""
    parts = text.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


class EthernetError(ParseError):
    """A frame that is not valid Ethernet II; `reason` names the condition for counters."""

    layer = "ethernet"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EthernetIntegrityError(EthernetError, IntegrityError):
    pass


class EthernetSanityError(EthernetError, SanityError):
    pass


class EthernetFrame(Record):
    """One Ethernet II frame: addresses, EtherType, and the payload (padding included)."""

    __slots__ = ("dst", "ethertype", "payload", "src")

    def __init__(self, dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
        self.dst = dst
        self.src = src
        self.ethertype = ethertype
        self.payload = payload

    @classmethod
    def parse(cls, frame: bytes) -> EthernetFrame:
        """The frame in `frame`, or EthernetError.

        Ethernet has no length field, so trailing padding stays in the payload; the layer
        above trims it by its own length field.
        """
        # Step one, integrity: without an FCS, all there is to check is the header's length.
        if len(frame) < HEADER_LEN:
            raise EthernetIntegrityError(
                "too_short", f"frame of {len(frame)} bytes < header {HEADER_LEN}"
            )
        dst, src, ethertype = HEADER.unpack_from(frame)
        # Step two, sanity.
        if src[0] & 1:
            raise EthernetSanityError(
                "source_multicast", f"source MAC {format_mac(src)} is a group address"
            )
        if ethertype < MIN_ETHERTYPE:
            raise EthernetSanityError(
                "not_ethernet_ii",
                f"type field 0x{ethertype:04x} < 0x{MIN_ETHERTYPE:04x} is an 802.3 length",
            )
        return cls(dst, src, ethertype, frame[HEADER_LEN:])

    def serialize(self) -> bytes:
        return HEADER.pack(self.dst, self.src, self.ethertype) + self.payload

    def serialize_padded(self) -> bytes:
        """The frame as a wire carries it: padded with zeros to the 60-byte minimum."""
        frame = self.serialize()
        if len(frame) < MIN_FRAME_LEN:
            frame += bytes(MIN_FRAME_LEN - len(frame))
        return frame
