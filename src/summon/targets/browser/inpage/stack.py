"""The Stack device in memory: the browser's stand-in for sockets, and the bridge's one seam.

In a browser tab there are no sockets. The app still calls `stack.start_server(cb, 80)`;
MemoryStack records the callback, and each HTTP request the service worker forwards becomes
one in-memory connection (connect()): a pair of transports wired back to back, the app's end
made by asyncio's own StreamReaderProtocol exactly as asyncio.start_server makes it, so the
app gets a real asyncio.StreamReader and StreamWriter and runs unchanged.

The pipe keeps TCP's shape where apps can see it: bytes arrive in order, a loop iteration
later (never re-entrantly inside write()); write_eof() and close() reach the peer as end of
stream; a peer that pauses reading holds the bytes until it resumes; writing to a closed end
is a no-op, as asyncio's socket transports make it after close.

Runs inside Pyodide (copied into the site as summon_browser): stdlib only, and nothing is
imported at run time beyond asyncio, which Pyodide has loaded before any app code runs.
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque

from summon.devices import Server, Stack, UDPEndpoint

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from summon.devices import ClientConnected

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FIRST_EPHEMERAL_PORT = 49152
# What asyncio.start_server gives its StreamReaders unless told otherwise.
STREAM_LIMIT = 64 * 1024


class PipeTransport(asyncio.Transport):
    """One end of an in-memory byte pipe; write() here is data_received() at the other end."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.BaseProtocol,
        sockname: tuple[str, int],
        peername: tuple[str, int],
    ) -> None:
        super().__init__({"sockname": sockname, "peername": peername})
        self._loop = loop
        self._protocol = protocol
        self.peer: PipeTransport | None = None
        self._closing = False  # close() was called on this end
        self._lost = False  # connection_lost has been delivered to our protocol
        self._eof_sent = False
        self._paused = False
        self._held: deque[bytes | None] = deque()  # arrived while paused; None is end of stream

    # --- asyncio.Transport ------------------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_sent or not data:
            return
        peer = self.peer
        if peer is not None:
            self._loop.call_soon(peer._arrive, bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if self._closing or self._eof_sent:
            return
        self._eof_sent = True
        if self.peer is not None:
            self._loop.call_soon(self.peer._arrive, None)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0  # bytes are handed over at once: the writer never has to drain

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._paused and not self._lost

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        # Later, as a socket's next read would come: StreamReader resumes just before it
        # waits for data, and bytes delivered inside this call would find no waiter.
        self._loop.call_soon(self._release)

    def _release(self) -> None:
        while self._held and not self._paused and not self._lost:
            self._deliver(self._held.popleft())

    def close(self) -> None:
        """Stop sending: the peer reads end of stream; our protocol hears connection_lost."""
        if self._closing:
            return
        self.write_eof()
        self._closing = True
        self._loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        self.close()

    # --- the pipe ---------------------------------------------------------------------------

    def _arrive(self, data: bytes | None) -> None:
        if self._lost:
            return  # we are gone: as a closed socket, drop what the peer still sends
        if self._paused or self._held:
            self._held.append(data)
            return
        self._deliver(data)

    def _deliver(self, data: bytes | None) -> None:
        protocol = self._protocol
        if data is None:
            keep_open = protocol.eof_received() if hasattr(protocol, "eof_received") else False
            if not keep_open:
                self.close()
        elif hasattr(protocol, "data_received"):
            protocol.data_received(data)

    def _connection_lost(self) -> None:
        if not self._lost:
            self._lost = True
            self._held.clear()
            self._protocol.connection_lost(None)


class MemoryServer(Server):
    """A server of MemoryStack: the app's callback for one port, until closed."""

    def __init__(self, stack: MemoryStack, port: int, callback: ClientConnected) -> None:
        self._stack = stack
        self._port = port
        self.callback = callback
        self._closed = asyncio.Event()

    @property
    def port(self) -> int:
        return self._port

    @property
    def is_serving(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        if not self._closed.is_set():
            self._stack._unlisten(self)
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self.close()


class MemoryStack(Stack):
    """TCP in memory: the app's servers, reached by connect(); no outside network.

    open_connection reaches the app's own servers on a loopback name (as localhost would);
    any other host is unreachable from a browser tab, and UDP does not exist there.
    """

    def __init__(self) -> None:
        self._servers: dict[int, MemoryServer] = {}
        self._next_port = FIRST_EPHEMERAL_PORT
        self._changed = asyncio.Event()
        self.connections = 0  # accepted so far: a count tests and stats read

    @property
    def ports(self) -> list[int]:
        """The ports listened on, in the order the app opened them."""
        return list(self._servers)

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        if not 0 <= port <= 65535:
            raise OverflowError(f"port must be 0-65535, got {port}")
        if port == 0:
            port = self._free_port()
        if port in self._servers:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listened on")
        server = MemoryServer(self, port, client_connected_cb)
        self._servers[port] = server
        self._notify()
        return server

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host not in LOOPBACK:
            raise OSError(
                errno.ENETUNREACH,
                f"cannot connect to {host}:{port}: an app in a browser tab reaches no network",
            )
        return self.connect(port)

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        raise OSError(errno.EAFNOSUPPORT, "an app in a browser tab has no UDP")

    async def wait_listening(self, port: int | None = None) -> int:
        """Wait until the app listens on `port` (None: on any port); return that port."""
        while True:
            if port is None and self._servers:
                return next(iter(self._servers))
            if port is not None and port in self._servers:
                return port
            self._changed.clear()
            await self._changed.wait()

    def connect(
        self, port: int, peer: tuple[str, int] = ("127.0.0.1", 0)
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the app's server on `port`: the client's (reader, writer).

        The app's callback is started as asyncio.start_server starts it. Call from a
        running event loop; ConnectionRefusedError if nothing listens on `port`.
        """
        server = self._servers.get(port)
        if server is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"nothing listens on port {port}")
        loop = asyncio.get_running_loop()
        if peer[1] == 0:
            peer = (peer[0], self._free_port())
        # The app's end, made as asyncio.start_server makes it: its protocol creates the
        # StreamWriter and runs the callback (as a task, if it is a coroutine function).
        app_reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        app_protocol = asyncio.StreamReaderProtocol(app_reader, server.callback, loop=loop)
        app_end = PipeTransport(loop, app_protocol, ("127.0.0.1", port), peer)
        client_reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        client_protocol = asyncio.StreamReaderProtocol(client_reader, loop=loop)
        client_end = PipeTransport(loop, client_protocol, peer, ("127.0.0.1", port))
        app_end.peer, client_end.peer = client_end, app_end
        client_protocol.connection_made(client_end)
        app_protocol.connection_made(app_end)
        self.connections += 1
        writer = asyncio.StreamWriter(client_end, client_protocol, client_reader, loop)
        return client_reader, writer

    def _free_port(self) -> int:
        while self._next_port in self._servers:
            self._next_port += 1
        port = self._next_port
        self._next_port = FIRST_EPHEMERAL_PORT + (port + 1 - FIRST_EPHEMERAL_PORT) % 16384
        return port

    def _unlisten(self, server: MemoryServer) -> None:
        if self._servers.get(server.port) is server:
            del self._servers[server.port]
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
