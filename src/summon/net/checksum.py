"""The Internet checksum (RFC 1071), shared by IPv4, ICMP, UDP and TCP."""

from __future__ import annotations

import struct


def ones_complement_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The 16-bit one's complement sum of data (padded with a zero byte if odd), folded."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    # 2**16 = 1 (mod 0xFFFF), so data read as one big number is congruent to the sum of its
    # 16-bit words: one C-speed conversion and one division replace a Python loop (about 3x
    # faster on a full frame). The folded sum is never 0 unless everything was 0, so a 0
    # remainder of anything else stands for 0xFFFF, one's complement's other zero.
    value = int.from_bytes(data, "big")
    total = (value % 0xFFFF + start) % 0xFFFF
    return total if total or not (value or start) else 0xFFFF


def checksum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The value to put in a checksum field: the complement of the sum."""
    return ~ones_complement_sum(data, start) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """The partial sum of the IPv4 pseudo-header UDP and TCP checksums cover."""
    return ones_complement_sum(src + dst + struct.pack("!BBH", 0, protocol, length))
