"""ICMP for IPv4 (RFC 792): the message record and its parser, the error events handed to
transports, and the rate limiter for the errors the stack sends."""

from __future__ import annotations

import struct

from summon.net._record import Record
from summon.net.checksum import checksum, ones_complement_sum
from summon.net.errors import IntegrityError, ParseError, SanityError

# Wire (RFC 792): a 4-byte header, 4 bytes whose meaning depends on the type, then data.
#
#    0       1       2               4                               8
#   +-------+-------+---------------+-------------------------------+--------
#   | type  | code  |   checksum    | rest of header                | data ...
#   +-------+-------+---------------+-------------------------------+--------
#
#   rest of header: echo: identifier (2), sequence (2); destination unreachable: unused
#   (2), next-hop MTU (2, RFC 1191, code 4 only); parameter problem: pointer (1), unused.
#   data of an error: the IPv4 header of the datagram that caused it and at least its
#   first 8 payload bytes (RFC 792; RFC 1812 allows as much as fits in 576 bytes).
HEADER = struct.Struct("!BBH4s")
HEADER_LEN = 8
ECHO = struct.Struct("!HH")

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

# Destination unreachable codes (RFC 792, RFC 1122, RFC 1812).
NET_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTOCOL_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAGMENTATION_NEEDED = 4
# Time exceeded codes.
TTL_EXCEEDED = 0
REASSEMBLY_EXCEEDED = 1

ERROR_TYPES = frozenset({DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                         PARAMETER_PROBLEM})  # fmt: skip
_MAX_CODE = {ECHO_REPLY: 0, ECHO_REQUEST: 0, DEST_UNREACHABLE: 15, SOURCE_QUENCH: 0,
             REDIRECT: 3, TIME_EXCEEDED: 1, PARAMETER_PROBLEM: 2}  # fmt: skip
# The most of the offending datagram an error quotes: RFC 1812's 576-byte message limit,
# less the IPv4 and ICMP headers of the error itself.
MAX_QUOTE = 576 - 20 - HEADER_LEN
_UNUSED = b"\0\0\0\0"


class IcmpError(ParseError):
    """A message that is not valid ICMP; `reason` names the condition for counters."""

    layer = "icmp"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IcmpIntegrityError(IcmpError, IntegrityError):
    pass


class IcmpSanityError(IcmpError, SanityError):
    pass


class IcmpMessage(Record):
    """One ICMP message. `rest` is the 4 type-specific header bytes, raw; the properties
    read them for the types that give them a meaning."""

    __slots__ = ("code", "data", "rest", "type")

    def __init__(self, type: int, code: int, rest: bytes, data: bytes) -> None:
        self.type = type
        self.code = code
        self.rest = rest
        self.data = data

    @classmethod
    def echo_request(cls, identifier: int, sequence: int, data: bytes) -> IcmpMessage:
        return cls(ECHO_REQUEST, 0, ECHO.pack(identifier, sequence), data)

    @classmethod
    def echo_reply(cls, identifier: int, sequence: int, data: bytes) -> IcmpMessage:
        return cls(ECHO_REPLY, 0, ECHO.pack(identifier, sequence), data)

    @classmethod
    def error(cls, type: int, code: int, datagram: bytes, *, mtu: int = 0) -> IcmpMessage:
        """An error about datagram (the offending IPv4 packet as received), quoted within
        RFC 1812's limit."""
        return cls(type, code, struct.pack("!HH", 0, mtu), datagram[:MAX_QUOTE])

    @property
    def identifier(self) -> int:
        return int.from_bytes(self.rest[:2], "big")

    @property
    def sequence(self) -> int:
        return int.from_bytes(self.rest[2:], "big")

    @property
    def next_hop_mtu(self) -> int:
        """The MTU a router reports with "fragmentation needed" (0 from pre-RFC 1191 ones)."""
        return int.from_bytes(self.rest[2:], "big")

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES

    @classmethod
    def parse(cls, data: bytes) -> IcmpMessage:
        """The message filling data (an IPv4 payload), or IcmpError."""
        # Step one, integrity.
        if len(data) < HEADER_LEN:
            raise IcmpIntegrityError("too_short", f"message of {len(data)} bytes < {HEADER_LEN}")
        if ones_complement_sum(data) != 0xFFFF:
            raise IcmpIntegrityError(
                "bad_checksum", f"checksum 0x{data[2] << 8 | data[3]:04x} does not verify"
            )
        type_, code, _, rest = HEADER.unpack_from(data)
        # Step two, sanity.
        max_code = _MAX_CODE.get(type_)
        if max_code is not None and code > max_code:
            raise IcmpSanityError("bad_code", f"code {code} > {max_code} for type {type_}")
        body = data[HEADER_LEN:]
        if type_ in ERROR_TYPES:
            # The quoted header must be readable to tell whose datagram this is about.
            if len(body) < 20 or body[0] >> 4 != 4:
                raise IcmpSanityError(
                    "bad_quote", f"error quotes {len(body)} bytes, not an IPv4 header"
                )
            header_len = (body[0] & 0x0F) * 4
            if header_len < 20 or len(body) < header_len + 8:
                raise IcmpSanityError(
                    "bad_quote",
                    f"error quotes {len(body)} bytes < header length {header_len} + 8",
                )
        return cls(type_, code, rest, body)

    def serialize(self) -> bytes:
        message = bytearray(HEADER.pack(self.type, self.code, 0, self.rest))
        message += self.data
        struct.pack_into("!H", message, 2, checksum(message))
        return bytes(message)


# Names transports can switch on instead of (type, code) pairs.
_KINDS = {
    (DEST_UNREACHABLE, NET_UNREACHABLE): "net_unreachable",
    (DEST_UNREACHABLE, HOST_UNREACHABLE): "host_unreachable",
    (DEST_UNREACHABLE, PROTOCOL_UNREACHABLE): "protocol_unreachable",
    (DEST_UNREACHABLE, PORT_UNREACHABLE): "port_unreachable",
    (DEST_UNREACHABLE, FRAGMENTATION_NEEDED): "fragmentation_needed",
    (TIME_EXCEEDED, TTL_EXCEEDED): "ttl_exceeded",
    (TIME_EXCEEDED, REASSEMBLY_EXCEEDED): "reassembly_exceeded",
}


class IcmpErrorEvent(Record):
    """An ICMP error about a datagram we sent, as handed up to its transport.

    type, code      the ICMP type and code (see `kind` for a name)
    reporter        4 bytes: who sent the error (a router, the peer, or our own address
                    for errors the stack raises locally, e.g. ARP gave up: host_unreachable)
    src_ip, dst_ip  4 bytes each: the addresses of the datagram we sent
    protocol        its IP protocol number
    next_hop_mtu    for fragmentation_needed: the MTU to use (0 if the router did not say)
    original        the start of that datagram's payload as quoted: >= 8 bytes, so a
                    transport's ports (and TCP's sequence number) are there
    """

    __slots__ = (
        "code",
        "dst_ip",
        "next_hop_mtu",
        "original",
        "protocol",
        "reporter",
        "src_ip",
        "type",
    )  # fmt: skip

    def __init__(
        self,
        type: int,
        code: int,
        reporter: bytes,
        src_ip: bytes,
        dst_ip: bytes,
        protocol: int,
        next_hop_mtu: int,
        original: bytes,
    ) -> None:
        self.type = type
        self.code = code
        self.reporter = reporter
        self.src_ip = src_ip
        self.dst_ip = dst_ip
        self.protocol = protocol
        self.next_hop_mtu = next_hop_mtu
        self.original = original

    @property
    def kind(self) -> str:
        """ "port_unreachable", "fragmentation_needed", ... or "type_T_code_C"."""
        return _KINDS.get((self.type, self.code)) or f"type_{self.type}_code_{self.code}"

    @classmethod
    def from_message(cls, message: IcmpMessage, reporter: bytes) -> IcmpErrorEvent:
        """The event for a parsed error message (parse() checked its quote is readable)."""
        quote = message.data
        header_len = (quote[0] & 0x0F) * 4
        mtu = message.next_hop_mtu if message.type == DEST_UNREACHABLE else 0
        return cls(
            message.type,
            message.code,
            reporter,
            quote[12:16],
            quote[16:20],
            quote[9],
            mtu,
            quote[header_len:],
        )


class TokenBucket:
    """Allows `rate` events per second on average, `burst` at once: RFC 1812 section 4.3.2.8
    asks routers (and Linux does it for hosts) to limit the ICMP errors they send."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
