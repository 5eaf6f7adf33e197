"""A strict DER reader: tag, length, value, nothing the certificate parser does not need.

Grammar (X.690 section 8.1, DER restrictions of section 10):

    TLV    = tag length value
    tag    = one byte (class:2 constructed:1 number:5); number 31 (multi-byte tags) is refused
    length = 0x00..0x7f                       ; short form
           / 0x81..0x84 n-byte big-endian     ; long form, minimal (no leading zero byte,
                                              ; and only when the value is >= 128)
    value  = length bytes

Indefinite lengths (0x80) are BER, not DER, and are refused. Every failure raises DERError
naming the offset and what was wrong; certificate.py turns it into BadCertificate(malformed).
"""

from __future__ import annotations

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
BOOLEAN = 0x01


class DERError(ValueError):
    """Bytes that are not valid DER, or not the structure expected."""


class Element:
    """One TLV: `tag`, the `value` bytes, and `raw` (the whole encoding, tag and length too)."""

    __slots__ = ("raw", "tag", "value")

    def __init__(self, tag: int, value: bytes, raw: bytes) -> None:
        self.tag = tag
        self.value = value
        self.raw = raw

    def children(self) -> list[Element]:
        if not self.tag & 0x20:
            raise DERError(f"tag 0x{self.tag:02x} is primitive, not a constructed type")
        return parse_all(self.value)

    def expect(self, tag: int, what: str) -> Element:
        if self.tag != tag:
            raise DERError(f"{what}: tag 0x{self.tag:02x}, expected 0x{tag:02x}")
        return self

    def __repr__(self) -> str:
        return f"Element(tag=0x{self.tag:02x}, {len(self.value)} bytes)"


def parse_one(data: bytes, pos: int = 0) -> tuple[Element, int]:
    """The TLV at `pos` and the offset just after it."""
    if pos + 2 > len(data):
        raise DERError(f"offset {pos}: {len(data) - pos} bytes cannot hold a tag and length")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError(f"offset {pos}: multi-byte tag 0x{tag:02x}")
    first = data[pos + 1]
    head = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DERError(f"offset {pos}: indefinite length is not DER")
    else:
        n = first & 0x7F
        if n > 4:
            raise DERError(f"offset {pos}: length of {n} bytes")
        if head + n > len(data):
            raise DERError(f"offset {pos}: length bytes run past the end")
        length = int.from_bytes(data[head : head + n], "big")
        if data[head] == 0 or length < 0x80:
            raise DERError(f"offset {pos}: non-minimal length encoding")
        head += n
    end = head + length
    if end > len(data):
        raise DERError(f"offset {pos}: length {length} runs {end - len(data)} bytes past the end")
    return Element(tag, data[head:end], data[pos:end]), end


def parse_all(data: bytes) -> list[Element]:
    """Every TLV in `data`, which must hold nothing else."""
    out = []
    pos = 0
    while pos < len(data):
        element, pos = parse_one(data, pos)
        out.append(element)
    return out


def parse_single(data: bytes, what: str) -> Element:
    """The one TLV that `data` holds, with no trailing bytes."""
    element, end = parse_one(data)
    if end != len(data):
        raise DERError(f"{what}: {len(data) - end} bytes after the value")
    return element


def oid_string(value: bytes) -> str:
    """An OBJECT IDENTIFIER's content octets as dotted decimal ("2.5.29.19")."""
    if not value:
        raise DERError("empty OID")
    arcs: list[int] = []
    n = 0
    for i, byte in enumerate(value):
        if n == 0 and byte == 0x80:
            raise DERError("OID arc with a leading 0x80 byte")
        n = n << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(n)
            n = 0
        elif i == len(value) - 1:
            raise DERError("OID ends inside an arc")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def integer(element: Element) -> int:
    element.expect(INTEGER, "INTEGER")
    if not element.value:
        raise DERError("empty INTEGER")
    return int.from_bytes(element.value, "big", signed=True)


def boolean(element: Element) -> bool:
    element.expect(BOOLEAN, "BOOLEAN")
    if element.value not in (b"\x00", b"\xff"):
        raise DERError(f"BOOLEAN must be 0x00 or 0xff in DER, got {element.value.hex()}")
    return element.value == b"\xff"


def bit_string(element: Element) -> tuple[bytes, int]:
    """A BIT STRING's bytes and its count of unused trailing bits."""
    element.expect(BIT_STRING, "BIT STRING")
    if not element.value or element.value[0] > 7:
        raise DERError("BIT STRING without a valid unused-bits byte")
    return element.value[1:], element.value[0]


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (no datetime import: it costs)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def time_value(element: Element) -> float:
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as seconds since the epoch.

    RFC 5280 4.1.2.5: always UTC ("Z"), seconds present, no fractions; UTCTime years 50-99
    are 19xx.
    """
    try:
        text = element.value.decode("ascii")
    except UnicodeDecodeError:
        raise DERError("time is not ASCII") from None
    if element.tag == UTC_TIME and len(text) == 13:
        yy = int(text[:2]) if text[:2].isdigit() else -1
        year = 1900 + yy if yy >= 50 else 2000 + yy
        rest = text[2:]
    elif element.tag == GENERALIZED_TIME and len(text) == 15:
        year = int(text[:4]) if text[:4].isdigit() else -1
        rest = text[4:]
    else:
        raise DERError(f"time {text!r} is not UTCTime or GeneralizedTime in RFC 5280 form")
    if year < 0 or not rest[:-1].isdigit() or rest[-1] != "Z":
        raise DERError(f"time {text!r} is not digits ending in Z")
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise DERError(f"time {text!r} is out of range")
    days = days_from_civil(year, month, day)
    return float(days * 86400 + hour * 3600 + minute * 60 + second)
