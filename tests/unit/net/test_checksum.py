"""The Internet checksum against a plain RFC 1071 reference, and RFC 1071's own example."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from summon.net.checksum import checksum, ones_complement_sum, pseudo_header_sum


def reference_sum(data: bytes, start: int = 0) -> int:
    """RFC 1071 section 4.1, as written: add 16-bit words, then fold the carries."""
    if len(data) % 2:
        data += b"\0"
    total = start
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc_1071_example() -> None:
    # Section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    assert ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_fast_sum_agrees_with_the_reference(data: bytes, start: int) -> None:
    assert ones_complement_sum(data, start) == reference_sum(data, start)
    assert ones_complement_sum(bytearray(data), start) == reference_sum(data, start)
    assert ones_complement_sum(memoryview(data), start) == reference_sum(data, start)


@given(st.sampled_from([b"", b"\0", b"\0\0\0", b"\xff\xff", b"\xff", b"\xff\xfe\0\x01"]),
       st.sampled_from([0, 1, 0xFFFE, 0xFFFF]))  # fmt: skip
def test_both_zeros_of_ones_complement_come_out_as_the_reference_says(
    data: bytes, start: int
) -> None:
    assert ones_complement_sum(data, start) == reference_sum(data, start)


@given(st.binary(max_size=1000))
def test_a_unit_carrying_its_checksum_sums_to_all_ones(data: bytes) -> None:
    unit = bytearray(data + b"\0" * (len(data) % 2) + b"\0\0")
    unit[-2:] = checksum(unit).to_bytes(2, "big")
    assert ones_complement_sum(unit) == 0xFFFF


def test_pseudo_header_sum_covers_addresses_protocol_and_length() -> None:
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    expected = reference_sum(src + dst + bytes([0, 17, 0, 13]))
    assert pseudo_header_sum(src, dst, 17, 13) == expected
