"""The TLS record layer's framing, checked before any backend sees a byte.

Both backends get whole records from here, so the limits summon promises (record size, content
types, no SSLv2, no renegotiation) hold the same for OpenSSL and tlslite-ng, and a fuzzer can
reach the framing without a handshake. Two steps as everywhere in summon: integrity (the
header's fields can be read and the length is within bounds) before sanity (what the fields
mean: a known content type, a TLS version byte).

Grammar (RFC 8446 section 5.1; RFC 5246 section 6.2):

    TLSRecord = type:uint8 legacy_version:uint16 length:uint16 fragment:opaque[length]
    type      = 20 (change_cipher_spec) / 21 (alert) / 22 (handshake) / 23 (application_data)
    legacy_version = 0x03 0x00..0x04          ; 0x0301 or 0x0303 in practice
    length    <= 2^14 + 2048                  ; TLS 1.2 ciphertext limit (RFC 5246 6.2.3)
              <= 2^14 + 256 once TLS 1.3 is negotiated (RFC 8446 5.2)
              >= 1 unless type is application_data
"""

from __future__ import annotations

from summon.tls.errors import (
    BAD_RECORD,
    OVERSIZED_RECORD,
    TRUNCATED_RECORD,
    ProtocolViolation,
)

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
CONTENT_TYPES = {
    CHANGE_CIPHER_SPEC: "change_cipher_spec",
    ALERT: "alert",
    HANDSHAKE: "handshake",
    APPLICATION_DATA: "application_data",
}

HEADER = 5
MAX_TLS12 = 2**14 + 2048
MAX_TLS13 = 2**14 + 256

# Alert descriptions summon sends itself (before a backend runs, or instead of one).
ALERT_PROTOCOL_VERSION = 70
ALERT_DECODE_ERROR = 50
ALERT_UNEXPECTED_MESSAGE = 10
ALERT_RECORD_OVERFLOW = 22
ALERT_NO_APPLICATION_PROTOCOL = 120  # RFC 7301 section 3.2


def version_name(version: int) -> str:
    """0x0303 -> "TLS 1.2"; 0x0300 -> "SSL 3.0"; anything else in hex."""
    names = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2"}
    if version in names:
        return names[version]
    if version == 0x0304:
        return "TLS 1.3"
    return f"0x{version:04x}"


def plaintext_alert(description: int, record_version: int = 0x0303) -> bytes:
    """A fatal alert record in the clear, for failures before any key exists."""
    return bytes((ALERT, record_version >> 8, record_version & 0xFF, 0, 2, 2, description))


class Record:
    """One whole record: its content type, its legacy version and its raw bytes (header too)."""

    __slots__ = ("content_type", "raw", "version")

    def __init__(self, content_type: int, version: int, raw: bytes) -> None:
        self.content_type = content_type
        self.version = version
        self.raw = raw

    @property
    def fragment(self) -> bytes:
        return self.raw[HEADER:]

    def __repr__(self) -> str:
        kind = CONTENT_TYPES.get(self.content_type, str(self.content_type))
        return f"Record({kind}, {len(self.raw) - HEADER} bytes)"


class RecordReader:
    """Splits a byte stream into whole records, refusing bad ones with ProtocolViolation.

    feed() may be given the stream in pieces of any size (a byte at a time or many records at
    once): the records it returns are the same.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.limit = MAX_TLS12

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole record."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        records: list[Record] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 1:
            first = buf[pos]
            if first & 0x80:
                # An SSLv2-format ClientHello (two-byte length with the top bit set).
                raise ProtocolViolation(
                    f"SSLv2-format record (first byte 0x{first:02x}) is not TLS", reason=BAD_RECORD
                )
            if first not in CONTENT_TYPES:
                raise ProtocolViolation(f"unknown content type {first}", reason=BAD_RECORD)
            if len(buf) - pos < HEADER:
                break
            # Integrity: the header's length within bounds before anything else is believed.
            length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            if length > self.limit:
                raise ProtocolViolation(
                    f"record length {length} > limit {self.limit}", reason=OVERSIZED_RECORD
                )
            # Sanity: a TLS version, and only application data may be empty.
            major, minor = buf[pos + 1], buf[pos + 2]
            if major != 3 or minor > 4:
                raise ProtocolViolation(
                    f"record version 0x{major:02x}{minor:02x} is not TLS", reason=BAD_RECORD
                )
            if length == 0 and first != APPLICATION_DATA:
                raise ProtocolViolation(f"empty {CONTENT_TYPES[first]} record", reason=BAD_RECORD)
            end = pos + HEADER + length
            if len(buf) < end:
                break
            records.append(Record(first, major << 8 | minor, bytes(buf[pos:end])))
            pos = end
        del buf[:pos]
        return records

    def check_eof(self) -> None:
        """The transport ended: raise if it ended inside a record."""
        if self._buffer:
            have = len(self._buffer)
            if have < HEADER:
                detail = f"{have} of {HEADER} header bytes"
            else:
                want = int.from_bytes(self._buffer[3:5], "big")
                detail = f"{have - HEADER} of {want} fragment bytes"
            raise ProtocolViolation(
                f"the transport ended inside a record ({detail})", reason=TRUNCATED_RECORD
            )
