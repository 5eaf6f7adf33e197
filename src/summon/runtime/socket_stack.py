"""The "socket" network mode: the Stack device on the host kernel's sockets, through asyncio.

Guest ports (the ones the app names) become host ports through SUMMON_PORTS, and servers
listen on SUMMON_BIND; see docs/image-format.md.

Two ways the host hands the app its traffic instead, so that no byte is copied through summon:
- listening sockets made on the host (systemd's convention: LISTEN_FDS sockets from fd 3,
  LISTEN_PID the process they are for, LISTEN_FDNAMES their guest ports, ":"-separated):
  start_server on such a port accepts on the host's listener rather than binding;
- connections a gateway accepted, over the socketpair at SUMMON_HANDOFF_FD (handoff.py):
  start_server on a port also runs its callback on those.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from errno import EBADF, EPERM

from summon.devices import Server, Stack, UDPEndpoint

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping
    from typing import Any

    from summon.devices import ClientConnected
    from summon.runtime.handoff import Receiver

DEFAULT_BIND = "0.0.0.0"
# Datagrams queued for an endpoint that does not read them fast enough; later ones are
# dropped, as a kernel drops them when a socket's receive buffer is full.
UDP_QUEUE_LIMIT = 1024

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first handed-over socket

PortMap = dict[tuple[int, str], int]  # (guest port, "tcp" | "udp") -> host port

# Figures summon.runtime.stats reports when the host asks (never written anywhere by itself).
accepted = 0  # connections the app's servers took: own listener, host listener or gateway
active = 0  # of which an async callback is still serving


def parse_ports(spec: str) -> PortMap:
    """Parse SUMMON_PORTS: "80/tcp=8080,53/udp=5353" (a guest port without /udp is tcp)."""
    ports: PortMap = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        guest, eq, host = item.partition("=")
        number, _, proto = guest.strip().partition("/")
        proto = proto or "tcp"
        if not eq or proto not in ("tcp", "udp") or not _is_port(number) or not _is_port(host):
            raise ValueError(
                f"SUMMON_PORTS: {item!r} is not GUEST=HOST such as 80/tcp=8080 or 53/udp=5353"
            )
        ports[(int(number), proto)] = int(host)
    return ports


def _is_port(text: str) -> bool:
    text = text.strip()
    return text.isdigit() and text.isascii() and 0 < int(text) < 65536


def handed_listeners(environ: Mapping[str, str], pid: int) -> dict[int, tuple[int, ...]]:
    """Guest port -> fds of the listening sockets the host handed over, for process pid.

    systemd's convention: LISTEN_FDS sockets from fd 3 on, meant for LISTEN_PID only (a
    process that inherited the variables from its parent ignores them); LISTEN_FDNAMES names
    them, here by guest port. A socket whose name is not a port is left alone. Several may
    share a port (-p 8080:80 -p 8081:80): the app's server accepts on each.
    """
    count = environ.get("LISTEN_FDS", "")
    if not count or environ.get("LISTEN_PID", "") != str(pid):
        return {}
    if not (count.isdigit() and count.isascii()):
        raise ValueError(f"LISTEN_FDS: {count!r} is not a number of sockets")
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    found: dict[int, tuple[int, ...]] = {}
    for i in range(int(count)):
        name = names[i] if i < len(names) else ""
        if _is_port(name):
            found[int(name)] = (*found.get(int(name), ()), LISTEN_FDS_START + i)
    return found


def _counted(callback: ClientConnected) -> ClientConnected:
    """callback, counting the connections it takes (and serves, if it is a coroutine)."""

    def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        global accepted
        accepted += 1
        result = callback(reader, writer)
        if result is not None and hasattr(result, "__await__"):
            return _served(result)
        return result

    return on_connection


async def _served(work: Awaitable[None]) -> None:
    global active
    active += 1
    try:
        await work
    finally:
        active -= 1


class SocketStack(Stack):
    """A Stack on host sockets: servers listen on `bind`, guest ports map through `ports`.

    listeners: guest port -> fds of the listening sockets the host made (start_server accepts
    on a copy of each); handoff: the fd of a gateway's hand-off socketpair (handoff.py).
    """

    def __init__(
        self,
        bind: str = DEFAULT_BIND,
        ports: Mapping[tuple[int, str], int] | None = None,
        listeners: Mapping[int, tuple[int, ...]] | None = None,
        handoff: int | None = None,
    ) -> None:
        self.bind = bind
        self.ports = dict(ports or {})
        self.listeners = dict(listeners or {})
        self._handoff_fd = handoff
        self._receiver: Receiver | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SocketStack:
        """The stack SUMMON_BIND, SUMMON_PORTS, LISTEN_FDS... and SUMMON_HANDOFF_FD describe;
        ValueError if they are malformed."""
        handoff = environ.get("SUMMON_HANDOFF_FD", "")
        if handoff and not (handoff.isdigit() and handoff.isascii()):
            raise ValueError(f"SUMMON_HANDOFF_FD: {handoff!r} is not a file descriptor")
        return cls(
            environ.get("SUMMON_BIND") or DEFAULT_BIND,
            parse_ports(environ.get("SUMMON_PORTS", "")),
            handed_listeners(environ, os.getpid()),
            int(handoff) if handoff else None,
        )

    @property
    def receiver(self) -> Receiver | None:
        """The gateway's hand-off channel, if this instance has one (made on first use)."""
        if self._receiver is None and self._handoff_fd is not None:
            from summon.runtime.handoff import Receiver

            self._receiver = Receiver(self._handoff_fd)
        return self._receiver

    def host_port(self, port: int, proto: str) -> int:
        """The host port that stands for guest `port`/`proto`: mapped, or the same number."""
        return self.ports.get((port, proto), port)

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        callback = _counted(client_connected_cb)
        servers = []
        # Copies: the host's listeners stay ours, so a server closed and started again on
        # this port accepts on them again.
        for fd in self.listeners.get(port, ()):
            listener = socket.socket(fileno=os.dup(fd))
            servers.append(await asyncio.start_server(callback, sock=listener, backlog=backlog))
        receiver = self.receiver
        # An instance a gateway boots is handed its connections by fd (receiver.serve): a
        # listener of its own would take none, and its socket() is not in a profile the
        # recording run derived (it was handed its listeners): refused, with a line.
        if not servers and (receiver is None or not port):
            servers.append(await self._own_server(callback, port, backlog))
        if receiver is not None and port:
            receiver.serve(port, callback)
        return SocketServer(servers, port, receiver)

    async def _own_server(
        self, callback: ClientConnected, port: int, backlog: int
    ) -> asyncio.Server:
        """A listener the app makes itself. asyncio skips an address whose socket() fails
        and then serves on none: an app the sandbox refused socket() (one handed its
        listeners, asking for a port it was not handed) went on as if it served that port,
        and its clients were refused. It gets the error instead."""
        host_port = self.host_port(port, "tcp")
        server = await asyncio.start_server(callback, self.bind, host_port, backlog=backlog)
        if not server.sockets:
            server.close()
            raise OSError(
                EPERM,
                f"cannot listen on port {port}: no socket could be made for "
                f"{self.bind}:{host_port} (socket() was refused)",
            )
        return server

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, local_addr=(self.bind, self.host_port(port, "udp"))
        )
        return SocketUDPEndpoint(transport, protocol, port)


def _bound_port(sockname: object) -> int:
    # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
    return int(sockname[1]) if isinstance(sockname, tuple) else 0


class SocketServer(Server):
    """asyncio.Servers of one guest port (one per host listener) seen through the Server
    interface (and the hand-off's port)."""

    def __init__(
        self, servers: list[asyncio.Server], guest_port: int, receiver: Receiver | None = None
    ) -> None:
        self._servers = servers
        self._port = guest_port or _bound_port(servers[0].sockets[0].getsockname())
        self._receiver = receiver
        self._closed: asyncio.Event | None = None  # serve_forever's wait, without servers

    @property
    def port(self) -> int:
        return self._port

    def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._receiver is not None:
            self._receiver.unserve(self._port)
        if self._closed is not None:
            self._closed.set()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()

    async def serve_forever(self) -> None:
        if not self._servers:  # handed its connections only: serves until closed
            self._closed = self._closed or asyncio.Event()
            await self._closed.wait()
            return
        await asyncio.gather(*(server.serve_forever() for server in self._servers))


class _Datagrams(asyncio.DatagramProtocol):
    """Queues received datagrams for SocketUDPEndpoint.recvfrom."""

    def __init__(self) -> None:
        self.queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(self.queue) >= UDP_QUEUE_LIMIT:
            self.dropped += 1
            return
        self.queue.append((data, (str(addr[0]), int(addr[1]))))
        self.wake(1)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors about earlier datagrams (port unreachable...): UDP does not report them.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self.queue.clear()
        self.wake(len(self.waiters))

    def wake(self, count: int) -> None:
        while count and self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1


class SocketUDPEndpoint(UDPEndpoint):
    """A datagram socket seen through the UDPEndpoint interface."""

    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: _Datagrams, guest_port: int
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._port = guest_port or _bound_port(transport.get_extra_info("sockname"))

    @property
    def port(self) -> int:
        return self._port

    @property
    def dropped(self) -> int:
        """Datagrams dropped so far because the queue was full."""
        return self._protocol.dropped

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        protocol = self._protocol
        while not protocol.queue:
            if protocol.closed or self._transport.is_closing():
                raise EOFError("UDP endpoint is closed")
            waiter = asyncio.get_running_loop().create_future()
            protocol.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in protocol.waiters:
                    protocol.waiters.remove(waiter)
        return protocol.queue.popleft()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._protocol.closed or self._transport.is_closing():
            raise OSError(EBADF, "UDP endpoint is closed")
        self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()
        # connection_lost comes a loop iteration later; readers wake now.
        self._protocol.close()
