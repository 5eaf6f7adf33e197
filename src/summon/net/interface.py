"""One IPv4 interface, sans-IO: Ethernet, ARP, IPv4, ICMP and UDP wired together, with a hook
for transports (TCP) above. Frames in, frames out; time is always passed in.

The transport interface (register_transport / send_ip) is documented value by value in
docs/net.md; that page is the contract the TCP code is written against.
"""

from __future__ import annotations

import os

from summon.net.arp import ArpError, ArpPacket, ArpResolver
from summon.net.counters import Counters
from summon.net.errors import NetError, ParseError
from summon.net.ethernet import (
    BROADCAST,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    VLAN_ETHERTYPES,
    EthernetError,
    EthernetFrame,
)
from summon.net.icmp import (
    DEST_UNREACHABLE,
    ECHO_REPLY,
    ECHO_REQUEST,
    ERROR_TYPES,
    HOST_UNREACHABLE,
    MAX_QUOTE,
    PORT_UNREACHABLE,
    PROTOCOL_UNREACHABLE,
    REASSEMBLY_EXCEEDED,
    REDIRECT,
    SOURCE_QUENCH,
    TIME_EXCEEDED,
    IcmpError,
    IcmpErrorEvent,
    IcmpMessage,
    TokenBucket,
)
from summon.net.ipv4 import (
    HEADER_LEN,
    LIMITED_BROADCAST,
    MAX_DATAGRAM_LEN,
    MIN_MTU,
    PROTO_ICMP,
    PROTO_UDP,
    DatagramTooLarge,
    Ipv4Error,
    Ipv4Packet,
    NoRoute,
    Reassembler,
    format_address,
    fragment,
    is_multicast,
    is_unicast,
    multicast_mac,
)
from summon.net.udp import UdpDatagram, UdpError, UdpReceived, UdpSocket, UdpSockets

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # handler(src_ip, dst_ip, payload, now): one whole datagram of the transport's protocol.
    TransportHandler = Callable[[bytes, bytes, bytes, float], None]
    # error_handler(event, now): an ICMP error (or a local one) about a datagram it sent.
    TransportErrorHandler = Callable[[IcmpErrorEvent, float], None]


class Interface:
    """An Ethernet interface with one IPv4 address, as a sans-IO object.

    Drive it with receive_frame() for each frame from the link and timers() now and then
    (by next_deadline() at the latest); after either, and after any send, hand
    frames_to_send() to the link. Sends made outside those calls (send_ip, UdpSocket.send_to)
    are stamped with the latest `now` the interface was given.

    Components are public, tunables on them too: `arp` (ArpResolver, with `arp.cache`),
    `reassembler`, `icmp_errors` (the TokenBucket for errors sent), `udp` (the socket table).
    Every unit dropped, and most delivered, is counted in `counters` (see counters.py).
    """

    __slots__ = ("_broadcast", "_ident", "_mask", "_network", "_now", "_outbox",
                 "_transports", "arp", "counters", "gateway", "icmp_errors", "ip", "mac", "mtu",
                 "prefix_len", "reassembler", "udp")  # fmt: skip

    def __init__(
        self,
        mac: bytes,
        ip: bytes,
        prefix_len: int = 24,
        gateway: bytes | None = None,
        *,
        mtu: int = 1500,
        counters: Counters | None = None,
        first_identification: int | None = None,
    ) -> None:
        """first_identification: the IPv4 Identification of the first datagram sent (the
        next ones count up from it); random unless a test needs replies byte for byte."""
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError(f"interface MAC must be 6 bytes and unicast, not {mac!r}")
        if not MIN_MTU <= mtu <= MAX_DATAGRAM_LEN:
            raise ValueError(f"MTU {mtu} outside {MIN_MTU}..{MAX_DATAGRAM_LEN}")
        self.mac = mac
        self.mtu = mtu
        self.counters = counters if counters is not None else Counters()
        self.arp = ArpResolver(mac, ip, self.counters)
        self.reassembler = Reassembler(self.counters)
        # Linux's defaults for all ICMP errors a host sends: 1000 a second, 50 at once.
        self.icmp_errors = TokenBucket(rate=1000.0, burst=50)
        self.udp = UdpSockets()
        self._transports: dict[int, tuple[TransportHandler, TransportErrorHandler | None]] = {}
        self._outbox: list[bytes] = []
        self._now = 0.0
        # A random start keeps our IDs unguessable to off-path peers (RFC 7739).
        if first_identification is None:
            first_identification = int.from_bytes(os.urandom(2), "big")
        self._ident = (first_identification - 1) & 0xFFFF
        self.ip = ip
        self.prefix_len = prefix_len
        self.gateway = gateway
        self._mask = 0
        self._network = 0
        self._broadcast: bytes | None = None
        self.set_address(ip, prefix_len, gateway)

    def reseed(self) -> None:
        """Draw the next IP identification and UDP's ephemeral start again: a VM restored from
        a snapshot would otherwise share them with its siblings (RFC 7739, RFC 6056)."""
        self._ident = int.from_bytes(os.urandom(2), "big")
        self.udp.reseed()

    def set_address(self, ip: bytes, prefix_len: int, gateway: bytes | None = None) -> None:
        """(Re)configure the address, e.g. from a DHCP lease."""
        if len(ip) != 4 or not is_unicast(ip):
            raise ValueError(f"interface address must be unicast IPv4, not {ip!r}")
        if not 0 < prefix_len <= 32:
            raise ValueError(f"prefix length {prefix_len} outside 1..32")
        self.ip = ip
        self.arp.ip = ip
        self.prefix_len = prefix_len
        self.gateway = gateway
        self._mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF
        self._network = int.from_bytes(ip, "big") & self._mask
        # /31 and /32 links have no broadcast address (RFC 3021).
        self._broadcast = (
            (self._network | ~self._mask & 0xFFFFFFFF).to_bytes(4, "big")
            if prefix_len <= 30
            else None
        )

    # --- driving it ---------------------------------------------------------------------

    def receive_frame(self, frame: bytes, now: float) -> None:
        """Take one frame from the link. Never raises for bad input: it is counted."""
        self._now = now
        try:
            eth = EthernetFrame.parse(frame)
        except EthernetError as e:
            self.counters.inc(f"ethernet__{e.reason}__drop")
            return
        link_broadcast = False
        if eth.dst != self.mac:
            if eth.dst != BROADCAST:
                self.counters.inc("ethernet__not_for_us__drop")
                return
            link_broadcast = True
        ethertype = eth.ethertype
        if ethertype == ETHERTYPE_IPV4:
            self._receive_ipv4(eth.payload, link_broadcast, now)
        elif ethertype == ETHERTYPE_ARP:
            self._receive_arp(eth.payload, now)
        elif ethertype in VLAN_ETHERTYPES:
            self.counters.inc("ethernet__vlan_tagged__drop")
        else:
            self.counters.inc("ethernet__unknown_ethertype__drop")

    def frames_to_send(self) -> list[bytes]:
        """Take the frames waiting to go out, oldest first."""
        frames, self._outbox = self._outbox, []
        return frames

    def timers(self, now: float) -> None:
        """Run what is due at now: ARP retries and give-ups, reassembly timeouts, expiry."""
        self._now = now
        transmits, unresolved = self.arp.timers(now)
        for dst_mac, ethertype, payload in transmits:
            self._emit(dst_mac, ethertype, payload)
        for datagram in unresolved:
            self._report_unresolved(datagram)
        for first in self.reassembler.expire(now):
            if self._send_icmp_error(first, False, TIME_EXCEEDED, REASSEMBLY_EXCEEDED, now):
                self.counters.inc("ipv4__reassembly_timeout__icmp_time_exceeded")

    def next_deadline(self) -> float | None:
        """When timers() next has work, or None if nothing waits on time."""
        times = [t for t in (self.arp.next_deadline(), self.reassembler.next_deadline()) if t]
        return min(times, default=None)

    # --- the transport hook (see docs/net.md) ---------------------------------------------

    def register_transport(
        self,
        proto: int,
        handler: TransportHandler,
        error_handler: TransportErrorHandler | None = None,
    ) -> None:
        """Hand every whole datagram of IP protocol `proto` to handler(src_ip, dst_ip,
        payload, now), and ICMP errors about datagrams of it to error_handler(event, now)."""
        if proto in (PROTO_ICMP, PROTO_UDP) or not 0 <= proto <= 255:
            raise ValueError(f"IP protocol {proto} cannot be registered as a transport")
        self._transports[proto] = (handler, error_handler)

    def send_ip(self, proto: int, dst_ip: bytes, payload: bytes) -> None:
        """Send payload to dst_ip as one datagram of protocol proto (ARP resolved, queued,
        fragmented as needed; DF set when it fits the MTU). Raises NoRoute, DatagramTooLarge."""
        self._send_datagram(proto, dst_ip, payload, None)

    # --- UDP ------------------------------------------------------------------------------

    def udp_bind(self, port: int = 0) -> UdpSocket:
        """A socket on UDP port `port` (0: an ephemeral one). Raises AddressInUse."""
        return self.udp.bind(port, self._send_udp)

    # --- receive paths --------------------------------------------------------------------

    def _receive_arp(self, data: bytes, now: float) -> None:
        try:
            packet = ArpPacket.parse(data)
        except ArpError as e:
            self.counters.inc(f"arp__{e.reason}__drop")
            return
        for dst_mac, ethertype, payload in self.arp.receive(packet, now):
            self._emit(dst_mac, ethertype, payload)

    def _receive_ipv4(self, data: bytes, link_broadcast: bool, now: float) -> None:
        counters = self.counters
        try:
            packet = Ipv4Packet.parse(data)
        except Ipv4Error as e:
            counters.inc(f"ipv4__{e.reason}__drop")
            return
        dst = packet.dst
        if dst == self.ip:
            broadcast = False
        elif dst == LIMITED_BROADCAST or dst == self._broadcast:
            broadcast = True
        else:
            counters.inc("ipv4__not_for_us__drop")
            return
        if packet.src == self.ip:
            # Our own address as source: a spoofed packet or a loop; Linux's "martian source".
            counters.inc("ipv4__own_source__drop")
            return
        if link_broadcast and not broadcast:
            # RFC 1122 3.3.6: a unicast datagram in a link broadcast is someone's mistake.
            counters.inc("ipv4__unicast_in_link_broadcast__drop")
            return
        if packet.more_fragments or packet.fragment_offset:
            whole = self.reassembler.add(packet, now)
            if whole is None:
                return
            counters.inc("ipv4__reassembled__deliver")
            packet = whole
        proto = packet.protocol
        if proto == PROTO_UDP:
            self._receive_udp(packet, broadcast, now)
        elif proto == PROTO_ICMP:
            self._receive_icmp(packet, broadcast, now)
        else:
            transport = self._transports.get(proto)
            if transport is None:
                if self._send_icmp_error(
                    packet, broadcast, DEST_UNREACHABLE, PROTOCOL_UNREACHABLE, now
                ):
                    counters.inc("ipv4__unknown_protocol__icmp_unreachable")
                else:
                    counters.inc("ipv4__unknown_protocol__drop")
                return
            try:
                transport[0](packet.src, dst, packet.payload, now)
            except ParseError as e:
                # A transport's own typed error: counted in the same scheme as ours.
                counters.inc(f"{e.layer}__{getattr(e, 'reason', 'invalid')}__drop")

    def _receive_icmp(self, packet: Ipv4Packet, broadcast: bool, now: float) -> None:
        counters = self.counters
        try:
            message = IcmpMessage.parse(packet.payload)
        except IcmpError as e:
            counters.inc(f"icmp__{e.reason}__drop")
            return
        kind = message.type
        if kind == ECHO_REQUEST:
            if broadcast or not is_unicast(packet.src):
                # Linux's icmp_echo_ignore_broadcasts: no smurf amplifier here.
                counters.inc("icmp__echo_broadcast__ignore")
                return
            reply = IcmpMessage(ECHO_REPLY, 0, message.rest, message.data)
            try:
                self._send_datagram(PROTO_ICMP, packet.src, reply.serialize(), None)
            except NetError:
                counters.inc("icmp__echo_request_unroutable__drop")
                return
            counters.inc("icmp__echo_request__reply")
        elif kind in ERROR_TYPES:
            if kind in (SOURCE_QUENCH, REDIRECT):
                # Source quench is deprecated (RFC 6633); we follow no redirects.
                counters.inc(f"icmp__type_{kind}__ignore")
                return
            event = IcmpErrorEvent.from_message(message, packet.src)
            if event.src_ip != self.ip:
                counters.inc("icmp__error_not_ours__drop")
                return
            self._deliver_error(event)
        elif kind == ECHO_REPLY:
            counters.inc("icmp__echo_reply__ignore")
        else:
            counters.inc("icmp__unsupported_type__ignore")

    def _receive_udp(self, packet: Ipv4Packet, broadcast: bool, now: float) -> None:
        counters = self.counters
        try:
            datagram = UdpDatagram.parse(packet.payload, packet.src, packet.dst)
        except UdpError as e:
            counters.inc(f"udp__{e.reason}__drop")
            return
        socket = self.udp.lookup(datagram.dst_port)
        if socket is None:
            if self._send_icmp_error(packet, broadcast, DEST_UNREACHABLE, PORT_UNREACHABLE, now):
                counters.inc("udp__no_socket__icmp_unreachable")
            else:
                counters.inc("udp__no_socket__drop")
            return
        event = UdpReceived(
            packet.src, datagram.src_port, packet.dst, datagram.dst_port, datagram.payload
        )
        if socket._deliver(event):
            counters.inc("udp__datagram__deliver")
        else:
            counters.inc("udp__socket_queue_full__drop")

    def _deliver_error(self, event: IcmpErrorEvent) -> None:
        counters = self.counters
        if event.protocol == PROTO_UDP:
            port = int.from_bytes(event.original[:2], "big")
            socket = self.udp.lookup(port) if len(event.original) >= 2 else None
            if socket is None:
                counters.inc("icmp__error_no_socket__drop")
            elif socket._deliver(event):
                counters.inc("icmp__error__deliver")
            else:
                counters.inc("udp__socket_queue_full__drop")
            return
        transport = self._transports.get(event.protocol)
        if transport is None or transport[1] is None:
            counters.inc("icmp__error_no_transport__drop")
            return
        counters.inc("icmp__error__deliver")
        transport[1](event, self._now)

    def _report_unresolved(self, datagram: bytes) -> None:
        """Tell the sender of a datagram ARP gave up on, as Linux does with EHOSTUNREACH."""
        try:
            packet = Ipv4Packet.parse(datagram)
        except Ipv4Error:  # pragma: no cover - we serialized it ourselves
            return
        if packet.fragment_offset == 0:
            self._deliver_error(
                IcmpErrorEvent(
                    DEST_UNREACHABLE,
                    HOST_UNREACHABLE,
                    self.ip,
                    packet.src,
                    packet.dst,
                    packet.protocol,
                    0,
                    packet.payload[:MAX_QUOTE],
                )
            )

    # --- send paths -----------------------------------------------------------------------

    def _send_icmp_error(
        self, packet: Ipv4Packet, broadcast: bool, type_: int, code: int, now: float
    ) -> bool:
        """Send an ICMP error about packet if RFC 1122 3.2.2 and the rate limit allow."""
        if broadcast or packet.fragment_offset or not is_unicast(packet.src):
            return False
        if packet.protocol == PROTO_ICMP and (
            not packet.payload or packet.payload[0] in ERROR_TYPES
        ):
            return False  # never an error about an error
        if not self.icmp_errors.allow(now):
            self.counters.inc("icmp__rate_limited__drop")
            return False
        header = packet.header()
        quote = header + packet.payload[: MAX_QUOTE - len(header)]
        message = IcmpMessage.error(type_, code, quote)
        try:
            self._send_datagram(PROTO_ICMP, packet.src, message.serialize(), None)
        except NetError:
            return False
        return True

    def _send_udp(
        self,
        src_port: int,
        payload: bytes,
        dst_ip: bytes,
        dst_port: int,
        dont_fragment: bool | None,
    ) -> None:
        datagram = UdpDatagram(src_port, dst_port, payload).serialize(self.ip, dst_ip)
        self._send_datagram(PROTO_UDP, dst_ip, datagram, dont_fragment)
        self.counters.inc("udp__datagram__send")

    def _send_datagram(
        self, proto: int, dst: bytes, payload: bytes, dont_fragment: bool | None
    ) -> None:
        size = HEADER_LEN + len(payload)
        if size > MAX_DATAGRAM_LEN:
            raise DatagramTooLarge(f"ipv4: datagram of {size} bytes > {MAX_DATAGRAM_LEN}")
        link_dst, next_hop = self._route(dst)
        self._ident = (self._ident + 1) & 0xFFFF
        packet = Ipv4Packet(
            self.ip,
            dst,
            proto,
            payload,
            identification=self._ident,
            dont_fragment=size <= self.mtu if dont_fragment is None else dont_fragment,
        )
        pieces = fragment(packet, self.mtu)
        if len(pieces) > 1:
            self.counters.inc("ipv4__fragmented__send")
        for piece in pieces:
            data = piece.serialize()
            if link_dst is not None:
                self._emit(link_dst, ETHERTYPE_IPV4, data)
            else:
                for dst_mac, ethertype, frame_payload in self.arp.resolve(
                    next_hop, data, self._now
                ):
                    self._emit(dst_mac, ethertype, frame_payload)

    def _route(self, dst: bytes) -> tuple[bytes | None, bytes]:
        """(link destination if fixed, else None; next hop to resolve) for dst."""
        if len(dst) != 4:
            raise ValueError(f"IPv4 address must be 4 bytes, not {dst!r}")
        if dst == LIMITED_BROADCAST or dst == self._broadcast:
            return BROADCAST, dst
        if is_multicast(dst):
            return multicast_mac(dst), dst
        if not is_unicast(dst) or dst == self.ip:
            raise NoRoute(f"ipv4: no route to {format_address(dst)} (no loopback here)")
        if int.from_bytes(dst, "big") & self._mask == self._network:
            return None, dst
        if self.gateway is None:
            raise NoRoute(f"ipv4: {format_address(dst)} is off-link and there is no gateway")
        return None, self.gateway

    def _emit(self, dst_mac: bytes, ethertype: int, payload: bytes) -> None:
        self._outbox.append(EthernetFrame(dst_mac, self.mac, ethertype, payload).serialize_padded())
