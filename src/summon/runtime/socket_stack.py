"""The "socket" network mode: the Stack device on the host kernel's sockets, through asyncio.

Guest ports (the ones the app names) become host ports through SUMMON_PORTS, and servers
listen on SUMMON_BIND; see docs/image-format.md.
"""

from __future__ import annotations

import asyncio
from collections import deque
from errno import EBADF

from summon.devices import Server, Stack, UDPEndpoint

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from summon.devices import ClientConnected

DEFAULT_BIND = "0.0.0.0"
# Datagrams queued for an endpoint that does not read them fast enough; later ones are
# dropped, as a kernel drops them when a socket's receive buffer is full.
UDP_QUEUE_LIMIT = 1024

PortMap = dict[tuple[int, str], int]  # (guest port, "tcp" | "udp") -> host port


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


class SocketStack(Stack):
    """A Stack on host sockets: servers listen on `bind`, guest ports map through `ports`."""

    def __init__(
        self, bind: str = DEFAULT_BIND, ports: Mapping[tuple[int, str], int] | None = None
    ) -> None:
        self.bind = bind
        self.ports = dict(ports or {})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SocketStack:
        """The stack SUMMON_BIND and SUMMON_PORTS describe; ValueError if they are malformed."""
        return cls(
            environ.get("SUMMON_BIND") or DEFAULT_BIND,
            parse_ports(environ.get("SUMMON_PORTS", "")),
        )

    def host_port(self, port: int, proto: str) -> int:
        """The host port that stands for guest `port`/`proto`: mapped, or the same number."""
        return self.ports.get((port, proto), port)

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        server = await asyncio.start_server(
            client_connected_cb, self.bind, self.host_port(port, "tcp"), backlog=backlog
        )
        return SocketServer(server, port)

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
    """An asyncio.Server seen through the Server interface."""

    def __init__(self, server: asyncio.Server, guest_port: int) -> None:
        self._server = server
        self._port = guest_port or _bound_port(server.sockets[0].getsockname())

    @property
    def port(self) -> int:
        return self._port

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()


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
