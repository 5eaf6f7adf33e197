"""The Internet checksum (RFC 1071), shared by IPv4, ICMP, UDP and TCP."""

from __future__ import annotations

import struct


def ones_complement_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The 16-bit one's complement sum of data (padded with a zero byte if odd), folded."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The value to put in a checksum field: the complement of the sum."""
    return ~ones_complement_sum(data, start) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """The partial sum of the IPv4 pseudo-header UDP and TCP checksums cover."""
    return ones_complement_sum(src + dst + struct.pack("!BBH", 0, protocol, length))
