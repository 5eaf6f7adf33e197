"""The "direct" network mode: summon.net's sans-IO layers driven by asyncio over one Link.

DirectStack is the Stack device (summon.devices) on the app's own network stack: the app gets
a raw frame device (a TAP fd, or a NIC through AF_PACKET) and nothing else, and this module
moves frames between it and Interface (Ethernet, ARP, IPv4, ICMP, UDP) and TCP. The asyncio
face (transports for StreamReader/StreamWriter, servers, UDP endpoints) is streams.py; what
the environment says is netspec.py; DHCP on the wire is dhcp_port.py; names are resolver.py.

How it is driven, all on the event loop's thread:
- the link's fd is watched with loop.add_reader; each wake-up takes a batch of frames;
- one timer, re-armed from the layers' next_deadline(), fires their timers;
- after either, and (coalesced once per loop iteration) after app calls, `_kick` hands the
  layers' news (tcp.ready(), UDP arrivals) to the transports and endpoints, then writes the
  frames the layers queued.

Memory for what peers send is bounded stack-wide, not only per connection: TCP's receive
buffers together hold at most TCPConfig.receive_memory (16 MiB) plus one buffer, windows
closing past it (tcp/buffers.py's ReceiveBudget); IP reassembly holds 1 MiB, each fragment
charged its Python overhead too (ipv4.Reassembler); a StreamReader (the app's buffer) is
past twice its 64 KiB limit when asyncio pauses reading; a UDP endpoint queues 1,024
datagrams and 1 MiB at most (streams.py).

Addressing comes from SUMMON_NET (static, or "dhcp"), see docs/direct.md. Every path a unit
takes is counted in `counters`, shared by all layers; with `stats_path` a snapshot is written
there (JSON) about once a second for the instance's stats.
"""

from __future__ import annotations

import asyncio
import os
import sys

from summon.devices import Stack
from summon.net.arp import OP_REQUEST, ZERO_MAC, ArpPacket
from summon.net.counters import Counters
from summon.net.dhcp_port import DhcpPort
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, EthernetFrame
from summon.net.interface import Interface
from summon.net.ipv4 import PROTO_TCP, format_address
from summon.net.netspec import DEFAULT_MTU, NetSpec, open_link, random_mac
from summon.net.resolver import Resolver
from summon.net.streams import (
    STREAM_LIMIT,
    Connecting,
    DirectServer,
    DirectUDPEndpoint,
    TCPTransport,
)
from summon.net.tcp.config import TCPConfig
from summon.net.tcp.layer import TCP
from summon.net.udp import AddressInUse

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from summon.devices import ClientConnected, Server, UDPEndpoint
    from summon.net.links import Link
    from summon.net.tcp.connection import Connection
    from summon.net.tcp.listener import Listener

STATS_INTERVAL = 1.0  # seconds between counter snapshots written to stats_path


class DirectStack(Stack):
    """A Stack on summon.net over `link`: TCP streams and UDP endpoints, no kernel sockets.

    Give `ip` for a static address, or none to lease one with DHCP. The stack attaches to
    the event loop at `await start()`, which returns once the interface is up (under DHCP:
    once a lease is bound) and announced; the runtime awaits it before the app's entry runs,
    so the first SYN finds an answering stack. start_server, open_connection and open_udp
    start it too, if nothing did.
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
        self.counters = Counters()
        self.stats_path = stats_path
        self.random_bytes = random_bytes
        # TCP's MSS follows the link: segments as large as the MTU allows.
        self.tcp_config = tcp_config or TCPConfig(mss=mtu - 40)
        # The link decides: a TAP with virtio-net headers completes TCP checksums, and marks
        # every TCP frame so; a full checksum under that mark would come out wrong.
        self.tcp_config.checksum_offload = link.checksum_offload
        # One bag for every layer: the link's drops (tx ring full...) too.
        link.count_into(self.counters)
        self.iface: Interface | None = None
        self.tcp: TCP | None = None
        self.dhcp: DhcpPort | None = None
        self.resolver = Resolver(self, self.counters, self._time, nameservers)
        self._static = (ip, prefix_len, gateway) if ip is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[Connection | Listener, TCPTransport | DirectServer | Connecting] = {}
        self._udp: dict[int, DirectUDPEndpoint] = {}
        self._configured: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._kicking = False
        self._again = False
        self._kick_scheduled = False
        self._to_push: dict[TCPTransport, None] = {}  # ordered: fair, in order of writes
        self._stats_written: dict[str, int] | None = None
        self._closed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DirectStack:
        """The stack SUMMON_TAP_FD / SUMMON_NET_IFACE and SUMMON_NET describe (docs/direct.md);
        ValueError if they are missing or malformed."""
        spec = NetSpec.parse(environ.get("SUMMON_NET") or "dhcp")
        link, link_mac, link_mtu = open_link(environ)
        mac = spec.mac or link_mac or random_mac()
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

                client = DhcpClient(
                    self.mac, random_bytes=self.random_bytes, counters=self.counters
                )
                self.dhcp = DhcpPort(self.mac, client, self.counters)
                self.dhcp.start(loop.time())
                self._kick()
            if self.stats_path:
                loop.call_later(STATS_INTERVAL, self._write_stats_periodically)
            # A VM restored from a snapshot runs this stack's state in every sibling: redraw
            # what must differ between them (resume imports only sys: free to load here).
            from summon.runtime import resume

            resume.on_resume(self._renew_after_restore)
        await asyncio.shield(self._configured)

    def _renew_after_restore(self) -> None:
        """Fresh SYN-cookie keys, IP identification and UDP ephemeral start after a restore
        (ISNs, TCP ephemeral ports and DNS ids are drawn per use, so they are fresh already)."""
        if self.iface is not None:
            self.iface.reseed()
        for owner, handler in self._handlers.items():
            if isinstance(handler, DirectServer):  # its owner is a Listener
                owner.reseed()  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop: every connection aborted, the link released. Idempotent."""
        if self._closed:
            return
        self._closed = True
        resume = sys.modules.get("summon.runtime.resume")
        if resume is not None:
            resume.forget(self._renew_after_restore)
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

    @property
    def nameservers(self) -> tuple[bytes, ...]:
        """The resolver's name servers (SUMMON_NET's dns=, or the DHCP lease's)."""
        return self.resolver.nameservers

    @nameservers.setter
    def nameservers(self, servers: tuple[bytes, ...]) -> None:
        self.resolver.nameservers = servers

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the stack runs on (once started)."""
        if self._loop is None:
            raise RuntimeError("the direct stack is not started: await stack.start() first")
        return self._loop

    def _time(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

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
            self.touch()
        else:
            self.iface.set_address(ip, prefix_len, gateway)
            assert self.tcp is not None
            self.tcp.readdress(ip)
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
        elif self.dhcp is not None:
            receive = self.dhcp.receive_frame
            for frame in frames:
                receive(frame, now)
        else:
            self.counters.inc("stack__unconfigured__drop", len(frames))
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

    def schedule_kick(self, transport: TCPTransport | None = None) -> None:
        """After an app call: one _kick per loop iteration, however many calls were made;
        `transport` has bytes to hand to TCP then (so writes of one iteration share segments)."""
        if transport is not None:
            self._to_push[transport] = None
        if not self._kick_scheduled and self._loop is not None:
            self._kick_scheduled = True
            self._loop.call_soon(self._app_kick)

    def _app_kick(self) -> None:
        self.touch()
        self._kick()

    def touch(self) -> None:
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
                        transport.push()
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

    def _run_dhcp(self) -> None:
        dhcp = self.dhcp
        assert dhcp is not None and self._loop is not None
        for lease in dhcp.poll(self._loop.time()):
            self._configure(lease.address, lease.prefix_len, lease.gateway)
            if lease.nameservers and not self.nameservers:
                self.nameservers = lease.nameservers
            assert self.iface is not None
            dhcp.attach(self.iface)
        send = self.link.send
        for frame in dhcp.frames_to_send():
            send(frame)

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
        server = DirectServer(self, self.tcp, listener, client_connected_cb)
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
        connecting = Connecting(self, self.tcp, self._loop.create_future())
        self.touch()
        try:
            conn = self.tcp.connect(ip, port)
        except ValueError as e:
            raise OSError(99, str(e)) from None
        self._handlers[conn] = connecting
        connecting.conn = conn
        self._kick()
        try:
            transport: TCPTransport = await connecting.future
        except asyncio.CancelledError:
            if not connecting.future.done() or connecting.future.cancelled():
                self.tcp.abort(conn)
                self._handlers.pop(conn, None)
                self._kick()
            raise
        reader = transport.protocol_reader
        writer = asyncio.StreamWriter(transport, transport.get_protocol(), reader, self._loop)
        return reader, writer

    def adopt(self, conn: Connection, client_connected_cb: ClientConnected | None) -> TCPTransport:
        """A transport, StreamReader and StreamReaderProtocol for an established conn."""
        loop = self._loop
        assert loop is not None and self.tcp is not None
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
        transport = TCPTransport(self, self.tcp, conn, protocol, reader)
        self._handlers[conn] = transport
        protocol.connection_made(transport)
        transport.on_ready()  # data may have come with the handshake
        return transport

    def forget(self, thing: Connection | Listener) -> None:
        """An adapter is done with its connection or listener: no more news for it."""
        self._handlers.pop(thing, None)

    def forget_udp(self, port: int) -> None:
        self._udp.pop(port, None)

    # --- UDP ----------------------------------------------------------------------------

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        await self.start()
        assert self.iface is not None
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
        return await self.resolver.resolve(host)

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
