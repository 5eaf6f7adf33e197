"""UDP (RFC 768): the datagram record and its parser, and the socket table the interface
demultiplexes into."""

from __future__ import annotations

import os
import struct

from summon.net._record import Record
from summon.net.checksum import checksum, ones_complement_sum, pseudo_header_sum
from summon.net.errors import IntegrityError, NetError, ParseError, SanityError
from summon.net.ipv4 import DatagramTooLarge

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.net.icmp import IcmpErrorEvent

# Wire (RFC 768):
#
#    0               2               4               6               8
#   +---------------+---------------+---------------+---------------+--------
#   | source port   | dest port     | length        | checksum      | data ...
#   +---------------+---------------+---------------+---------------+--------
#
# The checksum covers a pseudo-header (source and destination IP, zero, protocol 17, UDP
# length), the header and the data. 0 means "none computed"; a computed 0 goes out as 0xFFFF.
HEADER = struct.Struct("!HHHH")
HEADER_LEN = 8
PROTO_UDP = 17
MAX_PAYLOAD = 65535 - 20 - HEADER_LEN
EPHEMERAL_FIRST = 49152  # RFC 6335's dynamic range, to 65535


class UdpError(ParseError):
    """A datagram that is not valid UDP; `reason` names the condition for counters."""

    layer = "udp"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UdpIntegrityError(UdpError, IntegrityError):
    pass


class UdpSanityError(UdpError, SanityError):
    pass


class AddressInUse(NetError):
    """bind(): the port already has a socket."""


class SocketClosed(NetError):
    """send_to() on a socket after close()."""


class UdpDatagram(Record):
    __slots__ = ("dst_port", "payload", "src_port")

    def __init__(self, src_port: int, dst_port: int, payload: bytes) -> None:
        self.src_port = src_port
        self.dst_port = dst_port
        self.payload = payload

    @classmethod
    def parse(cls, data: bytes, src_ip: bytes, dst_ip: bytes) -> UdpDatagram:
        """The datagram in data (an IPv4 payload from src_ip to dst_ip), or UdpError."""
        # Step one, integrity.
        size = len(data)
        if size < HEADER_LEN:
            raise UdpIntegrityError("too_short", f"datagram of {size} bytes < {HEADER_LEN}")
        src_port, dst_port, length, sum_field = HEADER.unpack_from(data)
        if length < HEADER_LEN:
            raise UdpIntegrityError("bad_length", f"length {length} < header {HEADER_LEN}")
        if length > size:
            raise UdpIntegrityError("truncated", f"length {length} > {size} bytes received")
        if length < size:
            # Bytes past UDP's own length are not the sender's data (RFC 768): drop them.
            data = data[:length]
        if (
            sum_field
            and ones_complement_sum(data, pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length))
            != 0xFFFF
        ):
            raise UdpIntegrityError("bad_checksum", f"checksum 0x{sum_field:04x} does not verify")
        # Step two, sanity.
        if dst_port == 0:
            raise UdpSanityError("port_zero", "destination port 0")
        return cls(src_port, dst_port, data[HEADER_LEN:])

    def serialize(self, src_ip: bytes, dst_ip: bytes) -> bytes:
        """The datagram with its checksum, for a packet from src_ip to dst_ip."""
        length = HEADER_LEN + len(self.payload)
        if length > 0xFFFF:
            raise ValueError(f"udp: datagram of {length} bytes does not fit the length field")
        datagram = bytearray(HEADER.pack(self.src_port, self.dst_port, length, 0))
        datagram += self.payload
        value = checksum(datagram, pseudo_header_sum(src_ip, dst_ip, PROTO_UDP, length))
        struct.pack_into("!H", datagram, 6, value or 0xFFFF)
        return bytes(datagram)


class UdpReceived(Record):
    """A datagram that arrived for a socket."""

    __slots__ = ("dst_ip", "dst_port", "payload", "src_ip", "src_port")

    def __init__(
        self, src_ip: bytes, src_port: int, dst_ip: bytes, dst_port: int, payload: bytes
    ) -> None:
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_ip = dst_ip
        self.dst_port = dst_port
        self.payload = payload


class UdpSocket:
    """A bound UDP port. Made by `Interface.udp_bind`; sans-IO like the rest: datagrams
    sent become frames in the interface's output, arrivals wait in `events()`."""

    __slots__ = ("_events", "_send", "_table", "closed", "port")

    def __init__(self, port: int, table: UdpSockets, send: UdpSender) -> None:
        self.port = port
        self.closed = False
        self._table = table
        self._send = send
        self._events: list[UdpEvent] = []

    def send_to(
        self, payload: bytes, dst_ip: bytes, dst_port: int, *, dont_fragment: bool | None = None
    ) -> None:
        """Send payload to (dst_ip, dst_port).

        dont_fragment: None sets DF when the packet fits the MTU and fragments it when not
        (Linux's IP_PMTUDISC_WANT); True raises FragmentationNeeded instead of fragmenting;
        False never sets DF. Raises NoRoute, DatagramTooLarge, SocketClosed, ValueError.
        """
        if self.closed:
            raise SocketClosed(f"udp: socket on port {self.port} is closed")
        if not 0 < dst_port <= 0xFFFF:
            raise ValueError(f"udp: destination port {dst_port} outside 1..65535")
        if len(payload) > MAX_PAYLOAD:
            raise DatagramTooLarge(f"udp: payload of {len(payload)} bytes > {MAX_PAYLOAD}")
        self._send(self.port, payload, dst_ip, dst_port, dont_fragment)

    def events(self) -> list[UdpEvent]:
        """Take every datagram (UdpReceived) and error (IcmpErrorEvent) that came in."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._table.unbind(self.port)

    def _deliver(self, event: UdpEvent) -> bool:
        """Queue event for events(); False if the queue is full (the caller counts it)."""
        if len(self._events) >= self._table.queue_len:
            return False
        self._events.append(event)
        return True


class UdpSockets:
    """The socket table: one socket per local port (the interface has one address)."""

    __slots__ = ("_by_port", "_next", "queue_len")

    def __init__(self, *, queue_len: int = 256) -> None:
        self.queue_len = queue_len
        self._by_port: dict[int, UdpSocket] = {}
        # A random start makes our source ports hard to guess (RFC 6056).
        self._next = EPHEMERAL_FIRST + int.from_bytes(os.urandom(2), "big") % (
            65536 - EPHEMERAL_FIRST
        )

    def reseed(self) -> None:
        """Draw the ephemeral start again (a VM restored from a snapshot shares the old one)."""
        self._next = EPHEMERAL_FIRST + int.from_bytes(os.urandom(2), "big") % (
            65536 - EPHEMERAL_FIRST
        )

    def bind(self, port: int, send: UdpSender) -> UdpSocket:
        if port == 0:
            port = self._ephemeral()
        elif not 0 < port <= 0xFFFF:
            raise ValueError(f"udp: port {port} outside 0..65535")
        elif port in self._by_port:
            raise AddressInUse(f"udp: port {port} is in use")
        socket = self._by_port[port] = UdpSocket(port, self, send)
        return socket

    def lookup(self, port: int) -> UdpSocket | None:
        return self._by_port.get(port)

    def unbind(self, port: int) -> None:
        self._by_port.pop(port, None)

    def _ephemeral(self) -> int:
        span = 65536 - EPHEMERAL_FIRST
        for _ in range(span):
            port = self._next
            self._next = EPHEMERAL_FIRST + (port + 1 - EPHEMERAL_FIRST) % span
            if port not in self._by_port:
                return port
        raise AddressInUse("udp: every ephemeral port is in use")


if TYPE_CHECKING:
    UdpEvent = UdpReceived | IcmpErrorEvent
    # (source port, payload, destination IP, destination port, dont_fragment)
    UdpSender = Callable[[int, bytes, bytes, int, bool | None], None]
