"""A server's first look at the ClientHello: the versions offered, the SNI name and ALPN list.

summon reads these before any backend runs, so it can refuse TLS 1.0/1.1 the same way on both
backends (with the version named in the error) and pick the certificate for the SNI name. The
backend then parses the same bytes again in full; this parser only reads what it needs, and a
ClientHello it cannot read is refused with ProtocolViolation(decode error).

Grammar (RFC 8446 section 4.1.2, 4.2; RFC 6066 section 3; RFC 7301 section 3.1):

    Handshake   = msg_type:uint8 (1 = client_hello) length:uint24 body[length]
    ClientHello = legacy_version:uint16 random:opaque[32]
                  legacy_session_id:opaque<0..32>            ; uint8 length
                  cipher_suites:uint16<2..2^16-2>            ; uint16 length, even
                  legacy_compression_methods:opaque<1..255>  ; uint8 length
                  [extensions:Extension<8..2^16-1>]          ; uint16 length; absent in old hellos
    Extension   = type:uint16 data:opaque<0..2^16-1>
    server_name (0)         = uint16 length, (name_type:uint8 name:opaque<1..2^16-1>)*
    alpn (16)               = uint16 length, (protocol:opaque<1..255>)*
    supported_versions (43) = uint8 length, version:uint16*
"""

from __future__ import annotations

from summon.tls.errors import DECODE_ERROR, UNEXPECTED_MESSAGE, ProtocolViolation
from summon.tls.record import HANDSHAKE, Record

CLIENT_HELLO = 1
MAX_HELLO = 2**16  # a ClientHello is a few hundred bytes; more is an attack on our buffers

EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43


class ClientHello:
    """What the server needs from a ClientHello before choosing how to answer it."""

    __slots__ = ("alpn", "max_version", "record_version", "server_name", "versions")

    def __init__(
        self,
        versions: tuple[int, ...],
        server_name: str | None,
        alpn: tuple[str, ...],
        record_version: int,
    ) -> None:
        self.versions = versions
        self.max_version = max(versions) if versions else 0
        self.server_name = server_name
        self.alpn = alpn
        self.record_version = record_version

    def __repr__(self) -> str:
        return (
            f"ClientHello(versions={[hex(v) for v in self.versions]}, "
            f"server_name={self.server_name!r}, alpn={self.alpn!r})"
        )


class HelloCollector:
    """Gathers the handshake records that carry the first ClientHello (it may span several)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._message = bytearray()

    def add(self, record: Record) -> ClientHello | None:
        """Take the next record; return the ClientHello once it is whole, else None."""
        if record.content_type != HANDSHAKE:
            raise ProtocolViolation(
                f"expected a handshake record with the ClientHello, got content type "
                f"{record.content_type}",
                reason=UNEXPECTED_MESSAGE,
            )
        self.records.append(record)
        self._message += record.fragment
        if len(self._message) < 4:
            return None
        if self._message[0] != CLIENT_HELLO:
            raise ProtocolViolation(
                f"first handshake message has type {self._message[0]}, not client_hello (1)",
                reason=UNEXPECTED_MESSAGE,
            )
        length = int.from_bytes(self._message[1:4], "big")
        if length > MAX_HELLO:
            raise ProtocolViolation(
                f"ClientHello length {length} > {MAX_HELLO}", reason=DECODE_ERROR
            )
        if len(self._message) < 4 + length:
            return None
        if len(self._message) > 4 + length:
            # Anything after the ClientHello in the same flight is out of place (RFC 8446 5.1).
            raise ProtocolViolation(
                f"{len(self._message) - 4 - length} bytes after the ClientHello",
                reason=UNEXPECTED_MESSAGE,
            )
        return parse_client_hello(bytes(self._message[4:]), self.records[0].version)


class _Reader:
    """Reads big-endian fields from a bounded slice, raising decode errors past its end."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolViolation(
                f"{self.what}: needs {n} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left",
                reason=DECODE_ERROR,
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def parse_client_hello(body: bytes, record_version: int) -> ClientHello:
    """Read the versions, SNI and ALPN from a ClientHello body (after the 4-byte header)."""
    r = _Reader(body, "ClientHello")
    legacy_version = r.uint(2)
    r.take(32)
    session_id = r.vector(1)
    if len(session_id) > 32:
        raise ProtocolViolation(
            f"ClientHello: session id of {len(session_id)} bytes > 32", reason=DECODE_ERROR
        )
    suites = r.vector(2)
    if not suites or len(suites) % 2:
        raise ProtocolViolation(
            f"ClientHello: cipher suite list of {len(suites)} bytes", reason=DECODE_ERROR
        )
    if not r.vector(1):
        raise ProtocolViolation("ClientHello: no compression methods", reason=DECODE_ERROR)
    versions: tuple[int, ...] = (legacy_version,)
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if r.left:
        extensions = _Reader(r.vector(2), "ClientHello extensions")
        if r.left:
            raise ProtocolViolation(
                f"ClientHello: {r.left} bytes after the extensions", reason=DECODE_ERROR
            )
        seen: set[int] = set()
        while extensions.left:
            kind = extensions.uint(2)
            data = extensions.vector(2)
            if kind in seen:
                raise ProtocolViolation(f"ClientHello: extension {kind} twice", reason=DECODE_ERROR)
            seen.add(kind)
            if kind == EXT_SUPPORTED_VERSIONS:
                versions = _supported_versions(data)
            elif kind == EXT_SERVER_NAME:
                server_name = _server_name(data)
            elif kind == EXT_ALPN:
                alpn = _alpn(data)
    return ClientHello(versions, server_name, alpn, record_version)


def _supported_versions(data: bytes) -> tuple[int, ...]:
    r = _Reader(data, "supported_versions")
    listed = _Reader(r.vector(1), "supported_versions list")
    if r.left or not listed.left or listed.left % 2:
        raise ProtocolViolation("supported_versions: bad length", reason=DECODE_ERROR)
    versions = []
    while listed.left:
        v = listed.uint(2)
        # GREASE values (RFC 8701: 0x?a?a) mean nothing; skip them.
        if v & 0x0F0F != 0x0A0A:
            versions.append(v)
    return tuple(versions)


def _server_name(data: bytes) -> str | None:
    r = _Reader(data, "server_name")
    names = _Reader(r.vector(2), "server_name list")
    if r.left or not names.left:
        raise ProtocolViolation("server_name: bad length", reason=DECODE_ERROR)
    found: str | None = None
    while names.left:
        kind = names.uint(1)
        name = names.vector(2)
        if kind == 0:
            if found is not None or not name:
                raise ProtocolViolation(
                    "server_name: empty or repeated host_name", reason=DECODE_ERROR
                )
            try:
                found = name.decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                raise ProtocolViolation(
                    f"server_name: host name {name[:64]!r} is not ASCII", reason=DECODE_ERROR
                ) from None
    return found


def _alpn(data: bytes) -> tuple[str, ...]:
    r = _Reader(data, "alpn")
    listed = _Reader(r.vector(2), "alpn list")
    if r.left or not listed.left:
        raise ProtocolViolation("alpn: bad length", reason=DECODE_ERROR)
    protocols = []
    while listed.left:
        name = listed.vector(1)
        if not name:
            raise ProtocolViolation("alpn: empty protocol name", reason=DECODE_ERROR)
        protocols.append(name.decode("latin-1"))
    return tuple(protocols)
