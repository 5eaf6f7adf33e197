"""The "direct" network mode: summon.net's sans-IO layers driven by asyncio over one Link.

DirectStack is the Stack device (summon.devices) on the app's own network stack: the app gets
a raw frame device (a TAP fd, or a NIC through AF_PACKET) and nothing else, and this module
moves frames between it and Interface (Ethernet, ARP, IPv4, ICMP, UDP) and TCP. Readers and
writers are genuine asyncio.StreamReader / StreamWriter: a small asyncio.Transport over a TCP
connection feeds a StreamReaderProtocol, so drain() waits on the TCP send buffer, write_eof()
sends a FIN, and close()/wait_closed() behave as on kernel sockets.

How it is driven, all on the event loop's thread:
- the link's fd is watched with loop.add_reader; each wake-up takes a batch of frames;
- one timer, re-armed from the layers' next_deadline(), fires their timers;
- after either, and (coalesced once per loop iteration) after app calls, `_kick` hands the
  layers' news (tcp.ready(), UDP arrivals) to the transports and endpoints, then writes the
  frames the layers queued.

Addressing comes from SUMMON_NET (static, or "dhcp": see dhcp.py), names from a stub resolver
(dns.py); see docs/direct.md. Every path a unit takes is counted in `counters`, shared by all
layers; with `stats_path` a snapshot is written there (JSON) about once a second for the
instance's stats.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from errno import EBADF, EHOSTUNREACH

from summon.devices import Server, Stack, UDPEndpoint
from summon.net.arp import OP_REQUEST, ZERO_MAC, ArpPacket
from summon.net.counters import Counters
from summon.net.errors import NetError
from summon.net.ethernet import (
    BROADCAST,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    EthernetFrame,
    parse_mac,
)
from summon.net.interface import Interface
from summon.net.ipv4 import (
    LIMITED_BROADCAST,
    PROTO_TCP,
    PROTO_UDP,
    Ipv4Packet,
    format_address,
    parse_address,
)
from summon.net.tcp.config import TCPConfig
from summon.net.tcp.connection import ConnectionStateError
from summon.net.tcp.events import ConnectionClosed, ConnectionEstablished, DataReceived, EndOfStream
from summon.net.tcp.layer import TCP
from summon.net.udp import UdpDatagram, UdpReceived

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from summon.devices import ClientConnected
    from summon.net.dhcp import DhcpClient
    from summon.net.links import Link
    from summon.net.tcp.connection import Connection
    from summon.net.tcp.listener import Listener

# A TAP can carry 64 KiB frames: with an MTU this large a TCP segment is ~64 KB, and the
# per-segment cost of Python (parsing, events, a syscall) is paid 44 times less than at 1500.
TAP_MTU = 65000
DEFAULT_MTU = 1500
READ_CHUNK = 256 * 1024  # most bytes one DataReceived takes from a connection
STREAM_LIMIT = 64 * 1024  # asyncio.StreamReader's default limit, as asyncio.open_connection
WRITE_HIGH_WATER = 64 * 1024  # asyncio's transport defaults
UDP_QUEUE_LIMIT = 1024  # as SocketStack: datagrams an endpoint queues before dropping
STATS_INTERVAL = 1.0  # seconds between counter snapshots written to stats_path
DNS_PORT = 53
DHCP_CLIENT_PORT = 68
DHCP_SERVER_PORT = 67

_CLOSED_ERRORS: dict[str, Callable[[], OSError] | None] = {
    "closed": None,
    "aborted": None,
    "reset": lambda: ConnectionResetError("connection reset by peer"),
    "refused": lambda: ConnectionRefusedError("connection refused"),
    "timeout": lambda: TimeoutError("connection timed out"),
    "unreachable": lambda: OSError(EHOSTUNREACH, "no route to host"),
}


# --- configuration -------------------------------------------------------------------------


class NetSpec:
    """The parsed SUMMON_NET: a static address or "dhcp", and the link settings.

        SUMMON_NET = ("dhcp" | ADDRESS/PREFIX) *("," KEY "=" VALUE)
        KEY        = "gateway" | "dns" (may repeat) | "mac" | "mtu"

    e.g. "10.7.0.2/30,gateway=10.7.0.1,dns=10.7.0.1,mtu=65000" or "dhcp,mtu=1500".
    """

    __slots__ = ("dhcp", "gateway", "ip", "mac", "mtu", "nameservers", "prefix_len")

    def __init__(
        self,
        ip: bytes | None = None,
        prefix_len: int = 24,
        gateway: bytes | None = None,
        nameservers: tuple[bytes, ...] = (),
        mac: bytes | None = None,
        mtu: int | None = None,
    ) -> None:
        self.dhcp = ip is None
        self.ip = ip
        self.prefix_len = prefix_len
        self.gateway = gateway
        self.nameservers = nameservers
        self.mac = mac
        self.mtu = mtu

    @classmethod
    def parse(cls, text: str) -> NetSpec:
        """The spec `text` describes; ValueError naming the bad item otherwise."""
        items = [item.strip() for item in text.split(",")]
        first, rest = items[0], items[1:]
        spec = cls()
        if first != "dhcp":
            address, slash, prefix = first.partition("/")
            try:
                spec.ip = parse_address(address)
            except ValueError:
                raise ValueError(_bad_net(first, "ADDRESS/PREFIX such as 10.7.0.2/30")) from None
            if not slash or not prefix.isdigit() or not 1 <= int(prefix) <= 32:
                raise ValueError(_bad_net(first, "ADDRESS/PREFIX with a prefix of 1..32"))
            spec.prefix_len = int(prefix)
            spec.dhcp = False
        nameservers = []
        for item in rest:
            key, eq, value = item.partition("=")
            try:
                if not eq:
                    raise ValueError
                if key == "gateway":
                    spec.gateway = parse_address(value)
                elif key == "dns":
                    nameservers.append(parse_address(value))
                elif key == "mac":
                    spec.mac = parse_mac(value)
                elif key == "mtu":
                    spec.mtu = int(value)
                    if not 576 <= spec.mtu <= 65535:
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    _bad_net(item, "gateway=IP, dns=IP, mac=MAC or mtu=576..65535")
                ) from None
        spec.nameservers = tuple(nameservers)
        return spec


def _bad_net(item: str, want: str) -> str:
    return f"SUMMON_NET: {item!r} is not {want}"


def open_link(environ: Mapping[str, str]) -> tuple[Link, bytes | None, int]:
    """(link, its MAC if it has one, its default MTU) from SUMMON_TAP_FD or SUMMON_NET_IFACE."""
    fd = environ.get("SUMMON_TAP_FD", "")
    iface = environ.get("SUMMON_NET_IFACE", "")
    if fd:
        if not fd.isdigit():
            raise ValueError(f"SUMMON_TAP_FD: {fd!r} is not a file descriptor number")
        from summon.net.links.tap import TapLink

        try:
            link = TapLink(int(fd))
        except OSError as e:
            why = "is not open" if e.errno == EBADF else "is not a TAP device"
            raise ValueError(
                f"SUMMON_TAP_FD: fd {fd} {why}; the target must pass the TAP device"
            ) from None
        return link, None, TAP_MTU
    if iface:
        from summon.net.links.packet import PacketLink

        try:
            nic = PacketLink.open(iface)
        except OSError as e:
            raise ValueError(f"SUMMON_NET_IFACE: cannot open {iface!r}: {e.strerror}") from None
        return nic, nic.mac, DEFAULT_MTU
    raise ValueError(
        'network = "direct" needs a network device from the target (SUMMON_TAP_FD or '
        "SUMMON_NET_IFACE); run it with --target sandbox"
    )


# --- the stack -----------------------------------------------------------------------------


class DirectStack(Stack):
    """A Stack on summon.net over `link`: TCP streams and UDP endpoints, no kernel sockets.

    Give `ip` for a static address, or none to lease one with DHCP when first used. Nothing
    happens until the first call on a running event loop (devices are built before it runs);
    `await start()` does it explicitly (and, under DHCP, returns once a lease is bound).
    """

    def __init__(
        self,
        link: Link,
        mac: bytes,
        *,
        ip: bytes | None = None,
        prefix_len: int = 24,
        gateway: bytes | None = None,
        mtu: int = DEFAULT_MTU,
        nameservers: tuple[bytes, ...] = (),
        tcp_config: TCPConfig | None = None,
        stats_path: str | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.link = link
        self.mac = mac
        self.mtu = mtu
        self.nameservers = nameservers
        self.counters = Counters()
        self.stats_path = stats_path
        self.random_bytes = random_bytes
        # TCP's MSS follows the link: segments as large as the MTU allows.
        self.tcp_config = tcp_config or TCPConfig(mss=mtu - 40)
        # The link decides: a TAP with virtio-net headers completes TCP checksums, and marks
        # every TCP frame so; a full checksum under that mark would come out wrong.
        self.tcp_config.checksum_offload = bool(getattr(link, "checksum_offload", False))
        if not isinstance(getattr(type(link), "counters", None), property):
            # One bag for every layer: the link's drops (tx ring full...) too.
            link.counters = self.counters  # type: ignore[attr-defined]
        self.iface: Interface | None = None
        self.tcp: TCP | None = None
        self.dhcp: DhcpClient | None = None
        self._static = (ip, prefix_len, gateway) if ip is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[Connection | Listener, _TCPTransport | DirectServer | _Connecting] = {}
        self._udp: dict[int, DirectUDPEndpoint] = {}
        self._configured: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._kicking = False
        self._again = False
        self._kick_scheduled = False
        self._to_push: dict[_TCPTransport, None] = {}  # ordered: fair, in order of writes
        self._dns_cache: dict[str, tuple[bytes, float]] = {}
        self._stats_written: dict[str, int] | None = None
        self._closed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DirectStack:
        """The stack SUMMON_TAP_FD / SUMMON_NET_IFACE and SUMMON_NET describe (docs/direct.md);
        ValueError if they are missing or malformed."""
        spec = NetSpec.parse(environ.get("SUMMON_NET") or "dhcp")
        link, link_mac, link_mtu = open_link(environ)
        mac = spec.mac or link_mac or _random_mac()
        return cls(
            link,
            mac,
            ip=spec.ip,
            prefix_len=spec.prefix_len,
            gateway=spec.gateway,
            mtu=spec.mtu or link_mtu,
            nameservers=spec.nameservers,
            stats_path=environ.get("SUMMON_NET_STATS") or None,
        )

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Attach to the running loop and bring the interface up (under DHCP: once leased)."""
        if self._configured is None:
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._configured = loop.create_future()
            fd = self.link.fileno()
            if fd >= 0:
                loop.add_reader(fd, self._on_readable)
            if self._static is not None:
                self._configure(*self._static)
            else:
                from summon.net.dhcp import DhcpClient

                self.dhcp = DhcpClient(
                    self.mac, random_bytes=self.random_bytes, counters=self.counters
                )
                self.dhcp.start(loop.time())
                self._kick()
            if self.stats_path:
                loop.call_later(STATS_INTERVAL, self._write_stats_periodically)
        await asyncio.shield(self._configured)

    def close(self) -> None:
        """Stop: every connection aborted, the link released. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for handler in list(self._handlers.values()):
            handler.shut()
        if self._loop is not None and self.link.fileno() >= 0:
            self._loop.remove_reader(self.link.fileno())
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
        self.link.close()
        if self.stats_path:
            self.write_stats()

    @property
    def address(self) -> str | None:
        """Our IPv4 address, dotted; None until one is configured (DHCP)."""
        return format_address(self.iface.ip) if self.iface is not None else None

    def _configure(self, ip: bytes, prefix_len: int, gateway: bytes | None) -> None:
        """Bring the interface and TCP up with this address (or move them to it)."""
        assert self._loop is not None
        if self.iface is None:
            self.iface = Interface(
                self.mac, ip, prefix_len, gateway, mtu=self.mtu, counters=self.counters
            )
            self.tcp = TCP(
                ip,
                self.iface.send_ip,
                config=self.tcp_config,
                clock=self._loop.time,
                random_bytes=self.random_bytes,
                counters=self.counters,
            )
            self.iface.register_transport(PROTO_TCP, self.tcp.receive, self.tcp.receive_error)
            self._touch()
        else:
            self.iface.set_address(ip, prefix_len, gateway)
            assert self.tcp is not None
            self.tcp.local_ip = ip
        # An ARP announcement (RFC 5227): a neighbour that asked for us while we were
        # starting (or knew an old MAC) learns the answer now, not at its next retry.
        announcement = ArpPacket(OP_REQUEST, self.mac, ip, ZERO_MAC, ip).serialize()
        frame = EthernetFrame(BROADCAST, self.mac, ETHERTYPE_ARP, announcement)
        self.link.send(frame.serialize_padded())
        self.counters.inc("arp__announcement__send")
        assert self._configured is not None
        if not self._configured.done():
            self._configured.set_result(None)

    # --- driving the layers -------------------------------------------------------------

    def _on_readable(self) -> None:
        frames = self.link.receive()
        if not frames:
            return
        assert self._loop is not None
        now = self._loop.time()
        iface = self.iface
        if iface is not None:
            receive = iface.receive_frame
            for frame in frames:
                receive(frame, now)
        else:
            for frame in frames:
                self._receive_unconfigured(frame, now)
        self._kick()

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        if self.iface is not None:
            self.iface.timers(now)
        if self.tcp is not None:
            self.tcp.timers(now)
        if self.dhcp is not None:
            self.dhcp.timers(now)
        self._kick()

    def _schedule_kick(self, transport: _TCPTransport | None = None) -> None:
        """After an app call: one _kick per loop iteration, however many calls were made;
        `transport` has bytes to hand to TCP then (so writes of one iteration share segments)."""
        if transport is not None:
            self._to_push[transport] = None
        if not self._kick_scheduled and self._loop is not None:
            self._kick_scheduled = True
            self._loop.call_soon(self._app_kick)

    def _app_kick(self) -> None:
        self._touch()
        self._kick()

    def _touch(self) -> None:
        """Give the interface the time: what it sends is stamped with the last time it saw
        (ARP's retry deadlines), and app calls come between frames and timers."""
        if self.iface is not None and self._loop is not None:
            self.iface.timers(self._loop.time())

    def _kick(self) -> None:
        """Hand the layers' news to transports and endpoints, send what is queued, re-arm."""
        self._kick_scheduled = False
        if self._kicking:  # a handler called back into the stack: the outer loop goes again
            self._again = True
            return
        self._kicking = True
        try:
            while True:
                self._again = False
                if self._to_push:
                    to_push, self._to_push = self._to_push, {}
                    for transport in to_push:
                        transport._push()
                tcp = self.tcp
                if tcp is not None:
                    handlers = self._handlers
                    for thing in tcp.ready():
                        handler = handlers.get(thing)
                        if handler is not None:
                            handler.on_ready()
                if self._udp:
                    for endpoint in list(self._udp.values()):
                        endpoint.on_ready()
                if self.dhcp is not None:
                    self._run_dhcp()
                self._flush()
                if not self._again:
                    break
        finally:
            self._kicking = False
        self._arm_timer()

    def _flush(self) -> None:
        iface = self.iface
        if iface is not None:
            send = self.link.send
            for frame in iface.frames_to_send():
                send(frame)

    def _arm_timer(self) -> None:
        deadline: float | None = None
        for layer in (self.iface, self.tcp, self.dhcp):
            if layer is not None:
                t = layer.next_deadline()
                if t is not None and (deadline is None or t < deadline):
                    deadline = t
        if deadline is None or self._loop is None or self._closed:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return  # it fires early and re-arms then: cheaper than moving it every time
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    # --- DHCP ---------------------------------------------------------------------------

    def _receive_unconfigured(self, frame: bytes, now: float) -> None:
        """Before a lease there is no Interface: pick DHCP replies out of the frames by hand."""
        from summon.net.errors import ParseError

        counters = self.counters
        try:
            eth = EthernetFrame.parse(frame)
            if eth.ethertype != ETHERTYPE_IPV4 or eth.dst not in (self.mac, BROADCAST):
                counters.inc("stack__unconfigured__drop")
                return
            packet = Ipv4Packet.parse(eth.payload)
            if packet.protocol != PROTO_UDP or packet.more_fragments or packet.fragment_offset:
                counters.inc("stack__unconfigured__drop")
                return
            datagram = UdpDatagram.parse(packet.payload, packet.src, packet.dst)
        except ParseError as e:
            counters.inc(f"{e.layer}__{getattr(e, 'reason', 'invalid')}__drop")
            return
        if datagram.dst_port != DHCP_CLIENT_PORT or self.dhcp is None:
            counters.inc("stack__unconfigured__drop")
            return
        self.dhcp.receive(datagram.payload, now)

    def _run_dhcp(self) -> None:
        dhcp = self.dhcp
        assert dhcp is not None and self._loop is not None
        iface = self.iface
        if iface is not None:
            socket = iface.udp.lookup(DHCP_CLIENT_PORT)
            if socket is not None:
                now = self._loop.time()
                for event in socket.events():
                    if isinstance(event, UdpReceived) and event.src_port == DHCP_SERVER_PORT:
                        dhcp.receive(event.payload, now)
        for lease in dhcp.leases():
            self._configure(lease.address, lease.prefix_len, lease.gateway)
            if lease.nameservers and not self.nameservers:
                self.nameservers = lease.nameservers
            assert self.iface is not None
            if self.iface.udp.lookup(DHCP_CLIENT_PORT) is None:
                self.iface.udp_bind(DHCP_CLIENT_PORT)
        for message in dhcp.messages_to_send():
            self._send_dhcp(message.payload, message.dst_ip, message.src_ip)

    def _send_dhcp(self, payload: bytes, dst_ip: bytes, src_ip: bytes) -> None:
        iface = self.iface
        if iface is not None and src_ip == iface.ip and dst_ip != LIMITED_BROADCAST:
            socket = iface.udp.lookup(DHCP_CLIENT_PORT)
            if socket is not None:  # renewing: unicast to the server, ARP and all
                try:
                    socket.send_to(payload, dst_ip, DHCP_SERVER_PORT)
                except NetError:
                    self.counters.inc("dhcp__send_failed__drop")
                return
        # From 0.0.0.0 (no address yet) or to everyone: a frame built by hand, as no
        # Interface can send from an address it does not have.
        udp = UdpDatagram(DHCP_CLIENT_PORT, DHCP_SERVER_PORT, payload).serialize(src_ip, dst_ip)
        ip = Ipv4Packet(src_ip, dst_ip, PROTO_UDP, udp, ttl=64).serialize()
        self.link.send(EthernetFrame(BROADCAST, self.mac, ETHERTYPE_IPV4, ip).serialize_padded())

    # --- TCP ----------------------------------------------------------------------------

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        await self.start()
        assert self.tcp is not None
        if port == 0:
            port = self._free_port()
        try:
            listener = self.tcp.listen(port, backlog=backlog)
        except ValueError:
            raise OSError(98, f"port {port} is in use or out of range") from None
        server = DirectServer(self, listener, client_connected_cb)
        self._handlers[listener] = server
        return server

    def _free_port(self) -> int:
        assert self.tcp is not None
        listening = {h.port for h in self._handlers.values() if isinstance(h, DirectServer)}
        first, last = self.tcp.config.ephemeral_ports
        start = int.from_bytes(self.random_bytes(2), "big")
        for i in range(last - first + 1):
            port = first + (start + i) % (last - first + 1)
            if port not in listening:
                return port
        raise OSError(98, "no free TCP port")

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await self.start()
        assert self.tcp is not None and self._loop is not None
        if not 0 < port < 65536:
            raise ValueError(f"port {port} outside 1..65535")
        ip = await self.resolve(host)
        connecting = _Connecting(self, self._loop.create_future())
        self._touch()
        try:
            conn = self.tcp.connect(ip, port)
        except ValueError as e:
            raise OSError(99, str(e)) from None
        self._handlers[conn] = connecting
        connecting.conn = conn
        self._kick()
        try:
            transport: _TCPTransport = await connecting.future
        except asyncio.CancelledError:
            if not connecting.future.done() or connecting.future.cancelled():
                conn.abort()
                self._handlers.pop(conn, None)
                self._kick()
            raise
        reader = transport.protocol_reader
        writer = asyncio.StreamWriter(transport, transport._protocol, reader, self._loop)
        return reader, writer

    def _adopt(
        self, conn: Connection, client_connected_cb: ClientConnected | None
    ) -> _TCPTransport:
        """A transport, StreamReader and StreamReaderProtocol for an established conn."""
        loop = self._loop
        assert loop is not None
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
        transport = _TCPTransport(self, conn, protocol, reader)
        self._handlers[conn] = transport
        protocol.connection_made(transport)
        transport.on_ready()  # data may have come with the handshake
        return transport

    # --- UDP ----------------------------------------------------------------------------

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        await self.start()
        assert self.iface is not None
        from summon.net.udp import AddressInUse

        try:
            socket = self.iface.udp_bind(port)
        except AddressInUse:
            raise OSError(98, f"UDP port {port} is in use") from None
        except ValueError as e:
            raise OSError(22, str(e)) from None
        endpoint = DirectUDPEndpoint(self, socket)
        self._udp[socket.port] = endpoint
        return endpoint

    # --- names --------------------------------------------------------------------------

    async def resolve(self, host: str) -> bytes:
        """The IPv4 address of `host`: a dotted quad as it is, a name through the stub
        resolver (A records, cached for their TTL). OSError if it cannot be resolved."""
        try:
            return parse_address(host)
        except ValueError:
            pass
        from summon.net import dns

        key = host.lower().rstrip(".")
        assert self._loop is not None
        cached = self._dns_cache.get(key)
        if cached is not None and cached[1] > self._loop.time():
            return cached[0]
        if not self.nameservers:
            raise dns.ResolutionError(
                f"cannot resolve {host!r}: no name server (give dns=IP in SUMMON_NET, or DHCP)"
            )
        answer = await dns.resolve(self, host, self.nameservers)
        if len(self._dns_cache) >= 256:
            self._dns_cache.clear()
        self._dns_cache[key] = (answer.addresses[0], self._loop.time() + answer.ttl)
        self.counters.inc("dns__query__resolved")
        return answer.addresses[0]

    # --- counters -----------------------------------------------------------------------

    def write_stats(self) -> None:
        """Write the counters to stats_path as one JSON object (write, then rename)."""
        if not self.stats_path:
            return
        snapshot = self.counters.snapshot()
        if snapshot == self._stats_written:
            return
        # Names are [a-z0-9_] and values ints: no json module needed (it costs ~5 ms).
        text = "{" + ",".join(f'"{k}":{v}' for k, v in snapshot.items()) + "}\n"
        tmp = self.stats_path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.stats_path)
        except OSError:
            return  # stats are a courtesy: a full /tmp must not stop the app
        self._stats_written = snapshot

    def _write_stats_periodically(self) -> None:
        if self._closed or self._loop is None:
            return
        self.write_stats()
        self._loop.call_later(STATS_INTERVAL, self._write_stats_periodically)


def _random_mac() -> bytes:
    # Locally administered (bit 1) unicast (bit 0 clear), as Linux picks for a TAP.
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


# --- TCP streams ---------------------------------------------------------------------------


class _Connecting:
    """A connect() under way: resolves its future with the transport once established."""

    __slots__ = ("conn", "future", "stack")

    def __init__(self, stack: DirectStack, future: asyncio.Future[_TCPTransport]) -> None:
        self.stack = stack
        self.future = future
        self.conn: Connection | None = None

    def on_ready(self) -> None:
        conn = self.conn
        assert conn is not None
        event = conn.next_event(0)
        if event is None:
            return
        if isinstance(event, ConnectionEstablished):
            transport = self.stack._adopt(conn, None)
            if not self.future.done():
                self.future.set_result(transport)
            else:  # the caller gave up meanwhile
                transport.abort()
            return
        if isinstance(event, ConnectionClosed):
            self.stack._handlers.pop(conn, None)
            make = _CLOSED_ERRORS.get(event.reason)
            error = make() if make is not None else ConnectionRefusedError(event.reason)
            if not self.future.done():
                self.future.set_exception(error)

    def shut(self) -> None:
        if self.conn is not None:
            self.conn.abort()
        if not self.future.done():
            self.future.set_exception(ConnectionAbortedError("the network stack was closed"))


class _TCPTransport(asyncio.Transport):
    """One TCP connection as an asyncio transport, for a StreamReaderProtocol.

    Write buffering, as asyncio's socket transports do it: write() hands bytes to the TCP
    send buffer; what does not fit waits here, and above the high-water mark the protocol is
    paused, which is what makes StreamWriter.drain() wait. Reading is paused by leaving bytes
    in TCP's receive buffer, which closes the window the peer sees.
    """

    def __init__(
        self,
        stack: DirectStack,
        conn: Connection,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
    ) -> None:
        super().__init__(
            {
                "peername": (format_address(conn.remote_ip), conn.remote_port),
                "sockname": (
                    format_address(stack.iface.ip) if stack.iface else "0.0.0.0",
                    conn.local_port,
                ),
            }
        )
        self._stack = stack
        self._conn = conn
        self._protocol = protocol
        self.protocol_reader = reader
        # Written, not yet taken into TCP's send buffer: the app's own objects, not copies.
        self._chunks: deque[bytes | memoryview] = deque()
        self._size = 0
        self._high = WRITE_HIGH_WATER
        self._low = WRITE_HIGH_WATER // 4
        self._writing_paused = False
        self._reading = True
        self._eof = False  # write_eof() or close(): a FIN follows the pending bytes
        self._fin_sent = False
        self._closing = False
        self._lost = False  # connection_lost has been (or is about to be) called
        self._writes_after_lost = 0

    # --- what the stack calls ---------------------------------------------------------------

    def on_ready(self) -> None:
        """The connection has news: send space freed, bytes or EOF to deliver, or its end."""
        conn = self._conn
        if self._size or (self._eof and not self._fin_sent):
            self._push()
        protocol = self._protocol
        while self._reading or self._closing or conn.state == "CLOSED":
            event = conn.next_event(READ_CHUNK)
            if event is None:
                break
            kind = type(event)
            if kind is DataReceived:
                if not self._closing:
                    protocol.data_received(event.data)  # type: ignore[attr-defined]
            elif kind is EndOfStream:
                if not self._closing and not protocol.eof_received():
                    self.close()
            elif kind is ConnectionClosed:
                self._stack._handlers.pop(conn, None)
                self._chunks.clear()
                self._size = 0
                if not self._lost:
                    make = _CLOSED_ERRORS.get(event.reason)  # type: ignore[attr-defined]
                    self._lose(make() if make is not None else None)
                break

    def shut(self) -> None:
        self.abort()

    def _push(self) -> None:
        """Move written bytes into TCP's send buffer as space frees; FIN after the last."""
        conn = self._conn
        chunks = self._chunks
        try:
            while chunks:
                space = conn.send_space
                if space <= 0:
                    break
                chunk = chunks[0]
                if len(chunk) <= space:
                    n = conn.send(chunk if type(chunk) is bytes else bytes(chunk))
                else:
                    n = conn.send(bytes(memoryview(chunk)[:space]))
                if n == len(chunk):
                    chunks.popleft()
                elif n:
                    chunks[0] = memoryview(chunk)[n:]
                self._size -= n
                if n < len(chunk):
                    break
            if not chunks and self._eof and not self._fin_sent:
                self._fin_sent = True
                conn.close()
                if self._closing and not self._lost:
                    self._lose(None)
        except ConnectionStateError:
            # The connection is gone; its ConnectionClosed event follows.
            chunks.clear()
            self._size = 0
        if self._writing_paused and self._size <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()

    def _lose(self, exc: Exception | None) -> None:
        self._lost = True
        loop = self._stack._loop
        assert loop is not None
        loop.call_soon(self._protocol.connection_lost, exc)

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            if self._closing and self._lost:
                return
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost or self._conn.state == "CLOSED":
            self._writes_after_lost += 1  # as asyncio: silently dropped, the error comes by read
            return
        # bytes are immutable: kept as they are; anything else may change after we return.
        self._chunks.append(data if type(data) is bytes else bytes(data))
        self._size += len(data)
        self._stack._schedule_kick(self)
        if not self._writing_paused and self._size > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        self._stack._schedule_kick(self)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = WRITE_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = self._eof = True
        self._chunks.clear()
        self._size = 0
        self._conn.abort()
        self._stack._handlers.pop(self._conn, None)
        self._lose(None)
        self._stack._schedule_kick()

    # --- asyncio.ReadTransport ------------------------------------------------------------

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            loop = self._stack._loop
            assert loop is not None
            loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._reading and not self._lost:
            self.on_ready()
            self._stack._schedule_kick()  # reading opened the window: the ACK must go out

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # --- asyncio.BaseTransport ------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._eof = True
        self._stack._schedule_kick(self)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


class DirectServer(Server):
    """A listening TCP port of a DirectStack; accepted connections go to the callback."""

    def __init__(
        self, stack: DirectStack, listener: Listener, client_connected_cb: ClientConnected
    ) -> None:
        self._stack = stack
        self._listener = listener
        self._callback = client_connected_cb
        self._closed = False

    @property
    def port(self) -> int:
        return self._listener.port

    def on_ready(self) -> None:
        listener = self._listener
        while (conn := listener.accept()) is not None:
            self._stack.counters.inc("stack__tcp__accept")
            self._stack._adopt(conn, self._callback)

    def shut(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        self._stack._handlers.pop(self._listener, None)
        self._stack._schedule_kick()

    async def wait_closed(self) -> None:
        return None

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_future()  # only cancellation ends it
        finally:
            self.close()
            await self.wait_closed()


# --- UDP -----------------------------------------------------------------------------------


class DirectUDPEndpoint(UDPEndpoint):
    """A bound UDP port of a DirectStack."""

    def __init__(self, stack: DirectStack, socket: object) -> None:
        from summon.net.udp import UdpSocket

        assert isinstance(socket, UdpSocket)
        self._stack = stack
        self._socket = socket
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.dropped = 0

    @property
    def port(self) -> int:
        return self._socket.port

    def on_ready(self) -> None:
        events = self._socket.events()
        if not events:
            return
        queue = self._queue
        for event in events:
            if not isinstance(event, UdpReceived):
                continue  # ICMP errors: UDP does not report them (as SocketStack)
            if len(queue) >= UDP_QUEUE_LIMIT:
                self.dropped += 1
                self._stack.counters.inc("stack__udp_queue_full__drop")
                continue
            queue.append((event.payload, (format_address(event.src_ip), event.src_port)))
        self._wake(len(queue))

    def _wake(self, count: int) -> None:
        while count and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def shut(self) -> None:
        self.close()

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        while not self._queue:
            if self._closed:
                raise EOFError("UDP endpoint is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._queue.popleft()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closed:
            raise OSError(EBADF, "UDP endpoint is closed")
        host, port = addr
        try:
            ip = parse_address(host)
        except ValueError:
            raise ValueError(f"sendto needs an IPv4 address, not {host!r}") from None
        self._stack._touch()
        try:
            self._socket.send_to(bytes(data), ip, port)
        except NetError:
            # No route, or too large: lost like any datagram (the socket stack's transport
            # swallows these errors too).
            self._stack.counters.inc("stack__udp_send_failed__drop")
            return
        self._stack._schedule_kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._socket.close()
        self._stack._udp.pop(self._socket.port, None)
        self._queue.clear()
        self._wake(len(self._waiters))
