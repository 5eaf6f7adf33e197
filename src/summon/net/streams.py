"""The direct stack's asyncio face: TCP connections as asyncio transports for genuine
StreamReader / StreamWriter pairs, listeners as devices.Server, UDP ports as
devices.UDPEndpoint.

A small asyncio.Transport over a TCP connection feeds a StreamReaderProtocol, so drain()
waits on the TCP send buffer, write_eof() sends a FIN, and close()/wait_closed() behave as on
kernel sockets. Each adapter is told of news by the stack (`on_ready`, after the layers
marked its connection, listener or socket) and asks the stack for what it needs through
StreamHost: the loop, a coalesced kick after an app call, adopting a connection, being
forgotten. It never imports stack.py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from errno import EBADF, EHOSTUNREACH

from summon.devices import Server, UDPEndpoint
from summon.net.errors import NetError
from summon.net.ipv4 import format_address, parse_address
from summon.net.tcp.connection import ConnectionStateError
from summon.net.tcp.events import ConnectionClosed, ConnectionEstablished, DataReceived, EndOfStream
from summon.net.udp import UdpReceived

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from summon.devices import ClientConnected
    from summon.net.counters import Counters
    from summon.net.tcp.connection import Connection
    from summon.net.tcp.layer import TCP
    from summon.net.tcp.listener import Listener
    from summon.net.udp import UdpSocket

    class StreamHost(Protocol):
        """What the adapters need of the stack that drives them (DirectStack)."""

        counters: Counters

        @property
        def loop(self) -> asyncio.AbstractEventLoop: ...

        def adopt(
            self, conn: Connection, client_connected_cb: ClientConnected | None
        ) -> TCPTransport: ...

        def forget(self, thing: Connection | Listener) -> None: ...

        def forget_udp(self, port: int) -> None: ...

        def schedule_kick(self, transport: TCPTransport | None = None) -> None: ...

        def touch(self) -> None: ...


READ_CHUNK = 256 * 1024  # most bytes one DataReceived takes from a connection
STREAM_LIMIT = 64 * 1024  # asyncio.StreamReader's default limit, as asyncio.open_connection
WRITE_HIGH_WATER = 64 * 1024  # asyncio's transport defaults
UDP_QUEUE_LIMIT = 1024  # as SocketStack: datagrams an endpoint queues before dropping
# ...and bytes: 1024 reassembled 64 KiB datagrams from a peer on the link were 64 MB queued
# for an app that reads slowly. Each datagram is charged its payload and UDP_OVERHEAD, what
# its queue entry costs in Python (tuple, bytes header, address str and tuple).
UDP_QUEUE_BYTES = 1024 * 1024
UDP_OVERHEAD = 256

# ConnectionClosed's reason -> the exception a kernel socket would raise (None: a clean end).
CLOSED_ERRORS: dict[str, Callable[[], OSError] | None] = {
    "closed": None,
    "aborted": None,
    "reset": lambda: ConnectionResetError("connection reset by peer"),
    "refused": lambda: ConnectionRefusedError("connection refused"),
    "timeout": lambda: TimeoutError("connection timed out"),
    "unreachable": lambda: OSError(EHOSTUNREACH, "no route to host"),
}


# --- TCP streams ---------------------------------------------------------------------------


class Connecting:
    """A connect() under way: resolves its future with the transport once established."""

    __slots__ = ("conn", "future", "host", "tcp")

    def __init__(self, host: StreamHost, tcp: TCP, future: asyncio.Future[TCPTransport]) -> None:
        self.host = host
        self.tcp = tcp
        self.future = future
        self.conn: Connection | None = None

    def on_ready(self) -> None:
        conn = self.conn
        assert conn is not None
        event = self.tcp.next_event(conn, 0)
        if event is None:
            return
        if isinstance(event, ConnectionEstablished):
            transport = self.host.adopt(conn, None)
            if not self.future.done():
                self.future.set_result(transport)
            else:  # the caller gave up meanwhile
                transport.abort()
            return
        if isinstance(event, ConnectionClosed):
            self.host.forget(conn)
            make = CLOSED_ERRORS.get(event.reason)
            error = make() if make is not None else ConnectionRefusedError(event.reason)
            if not self.future.done():
                self.future.set_exception(error)

    def shut(self) -> None:
        if self.conn is not None:
            self.tcp.abort(self.conn)
        if not self.future.done():
            self.future.set_exception(ConnectionAbortedError("the network stack was closed"))


class TCPTransport(asyncio.Transport):
    """One TCP connection as an asyncio transport, for a StreamReaderProtocol.

    Write buffering, as asyncio's socket transports do it: write() hands bytes to the TCP
    send buffer; what does not fit waits here, and above the high-water mark the protocol is
    paused, which is what makes StreamWriter.drain() wait. Reading is paused by leaving bytes
    in TCP's receive buffer, which closes the window the peer sees.
    """

    # No __dict__: a server holding a thousand idle connections holds a thousand of these.
    __slots__ = (
        "_chunks",
        "_closing",
        "_conn",
        "_eof",
        "_fin_sent",
        "_high",
        "_host",
        "_lost",
        "_low",
        "_protocol",
        "_reading",
        "_size",
        "_tcp",
        "_writes_after_lost",
        "_writing_paused",
        "protocol_reader",
    )

    def __init__(
        self,
        host: StreamHost,
        tcp: TCP,
        conn: Connection,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
    ) -> None:
        super().__init__(
            {
                "peername": (format_address(conn.remote_ip), conn.remote_port),
                "sockname": (format_address(tcp.local_ip), conn.local_port),
            }
        )
        self._host = host
        self._tcp = tcp
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
            self.push()
        protocol = self._protocol
        next_event = self._tcp.next_event
        while self._reading or self._closing or conn.state == "CLOSED":
            event = next_event(conn, READ_CHUNK)
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
                self._host.forget(conn)
                self._chunks.clear()
                self._size = 0
                if not self._lost:
                    make = CLOSED_ERRORS.get(event.reason)  # type: ignore[attr-defined]
                    self._lose(make() if make is not None else None)
                break

    def shut(self) -> None:
        self.abort()

    def push(self) -> None:
        """Move written bytes into TCP's send buffer as space frees; FIN after the last."""
        conn = self._conn
        tcp = self._tcp
        chunks = self._chunks
        try:
            while chunks:
                space = conn.send_space
                if space <= 0:
                    break
                chunk = chunks[0]
                if len(chunk) <= space:
                    n = tcp.send(conn, chunk if type(chunk) is bytes else bytes(chunk))
                else:
                    n = tcp.send(conn, bytes(memoryview(chunk)[:space]))
                if n == len(chunk):
                    chunks.popleft()
                elif n:
                    chunks[0] = memoryview(chunk)[n:]
                self._size -= n
                if n < len(chunk):
                    break
            if chunks:  # if the stack's send budget is what stopped it, TCP says when it has room
                tcp.wants_send_space(conn)
            if not chunks and self._eof and not self._fin_sent:
                self._fin_sent = True
                tcp.close(conn)
                if self._closing:
                    tcp.orphan(conn)  # closed, not half-closed: nobody reads it any more
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
        self._host.loop.call_soon(self._protocol.connection_lost, exc)

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
        self._host.schedule_kick(self)
        if not self._writing_paused and self._size > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        self._host.schedule_kick(self)

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
        self._tcp.abort(self._conn)
        self._host.forget(self._conn)
        self._lose(None)
        self._host.schedule_kick()

    # --- asyncio.ReadTransport ------------------------------------------------------------

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._host.loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._reading and not self._lost:
            self.on_ready()
            self._host.schedule_kick()  # reading opened the window: the ACK must go out

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # --- asyncio.BaseTransport ------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._eof = True
        if self._fin_sent and not self._lost:  # half-closed before: orphaned now
            self._tcp.orphan(self._conn)
        self._host.schedule_kick(self)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


class DirectServer(Server):
    """A listening TCP port of a DirectStack; accepted connections go to the callback."""

    def __init__(
        self, host: StreamHost, tcp: TCP, listener: Listener, client_connected_cb: ClientConnected
    ) -> None:
        self._host = host
        self._tcp = tcp
        self._listener = listener
        self._callback = client_connected_cb
        self._closed = False

    @property
    def port(self) -> int:
        return self._listener.port

    def on_ready(self) -> None:
        listener = self._listener
        while (conn := listener.accept()) is not None:
            self._host.counters.inc("stack__tcp__accept")
            self._host.adopt(conn, self._callback)

    def shut(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tcp.unlisten(self._listener)
        self._host.forget(self._listener)
        self._host.schedule_kick()

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

    def __init__(self, host: StreamHost, socket: UdpSocket) -> None:
        self._host = host
        self._socket = socket
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._queued = 0  # bytes charged for what is in _queue
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
            cost = len(event.payload) + UDP_OVERHEAD
            if len(queue) >= UDP_QUEUE_LIMIT or self._queued + cost > UDP_QUEUE_BYTES:
                self.dropped += 1
                self._host.counters.inc("stack__udp_queue_full__drop")
                continue
            self._queued += cost
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
        datagram = self._queue.popleft()
        self._queued -= len(datagram[0]) + UDP_OVERHEAD
        return datagram

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closed:
            raise OSError(EBADF, "UDP endpoint is closed")
        host, port = addr
        try:
            ip = parse_address(host)
        except ValueError:
            raise ValueError(f"sendto needs an IPv4 address, not {host!r}") from None
        self._host.touch()
        try:
            self._socket.send_to(bytes(data), ip, port)
        except NetError:
            # No route, or too large: lost like any datagram (the socket stack's transport
            # swallows these errors too).
            self._host.counters.inc("stack__udp_send_failed__drop")
            return
        self._host.schedule_kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._socket.close()
        self._host.forget_udp(self._socket.port)
        self._queue.clear()
        self._queued = 0
        self._wake(len(self._waiters))
