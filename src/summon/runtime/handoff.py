"""Connections the gateway accepted, handed to the app by file descriptor (SCM_RIGHTS).

The gateway keeps its own listeners (it must see a connection arrive to thaw or boot an
instance), and gives each connection it accepted to a socket-mode instance over a
SOCK_SEQPACKET socketpair the instance inherits at start (SUMMON_HANDOFF_FD). The app's
Stack then runs its callback on that connection as if its own server had accepted it: the
socket is the client's kernel socket, and no byte passes through the gateway after that.

Messages, one per packet (big-endian numbers):

    gateway -> app:  "C" PORT(2) HELD...   one fd attached: the client's connection to guest
                                           port PORT; HELD are the bytes the gateway already
                                           read from it while holding it (the app reads them
                                           first)
    app -> gateway:  "L" PORT(2)           the app serves PORT now (its first start_server
                                           on it): the gateway's sign that the boot is done

Connections for a port the app does not serve (yet) wait, at most WAITING_LIMIT per port;
a server that closes stops taking them. The gateway side is summon.gateway.handoff.

Image-side: stdlib only, and imported only when SUMMON_HANDOFF_FD is set.
"""

from __future__ import annotations

import asyncio
import socket

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.devices import ClientConnected

CONNECTION = b"C"
LISTENING = b"L"
HEADER = 3  # kind and port
HELD_LIMIT = 64 * 1024  # what the gateway holds of a connection at most (and sends along)
MESSAGE_LIMIT = HEADER + HELD_LIMIT
WAITING_LIMIT = 1024  # connections queued for a port nobody serves yet; more are closed
STREAM_LIMIT = 64 * 1024  # asyncio's StreamReader default, as start_server uses

handed = 0  # connections handed over so far (summon.runtime.stats reports it)


def connection_message(port: int, held: bytes) -> bytes:
    """The "C" message for a connection to guest `port` with `held` bytes already read."""
    if len(held) > HELD_LIMIT:
        raise ValueError(f"{len(held)} held bytes: at most {HELD_LIMIT} go with a connection")
    return CONNECTION + port.to_bytes(2, "big") + held


def listening_message(port: int) -> bytes:
    return LISTENING + port.to_bytes(2, "big")


def parse(message: bytes) -> tuple[bytes, int, bytes]:
    """(kind, port, held bytes) of one message; ValueError for what is not one."""
    if len(message) < HEADER or message[:1] not in (CONNECTION, LISTENING):
        raise ValueError(f"not a hand-off message: {message[:8]!r}")
    port = int.from_bytes(message[1:3], "big")
    if not 0 < port < 65536:
        raise ValueError(f"hand-off message for port {port}")
    if message[:1] == LISTENING and len(message) != HEADER:
        raise ValueError(f"a listening message of {len(message)} bytes")
    return message[:1], port, message[3:]


class Receiver:
    """The app's end of the hand-off socketpair: takes connections, runs servers' callbacks.

    Reading starts with the first serve(), on the running loop; until then connections wait
    in the socketpair, in the kernel.
    """

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.servers: dict[int, ClientConnected] = {}
        self.waiting: dict[int, list[tuple[socket.socket, bytes]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    def serve(self, port: int, callback: ClientConnected) -> None:
        """Run callback on every connection handed over for port, from now on."""
        self.servers[port] = callback
        if self._loop is None and self.sock.fileno() >= 0:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.sock.fileno(), self._readable)
        for conn, held in self.waiting.pop(port, []):
            self._accept(conn, held, callback)
        try:
            self.sock.send(listening_message(port))
        except OSError:
            pass  # a full or closed socketpair: the gateway learns from the connections

    def unserve(self, port: int) -> None:
        """A closed server: its port's connections are closed from now on."""
        self.servers.pop(port, None)

    def close(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for queue in self.waiting.values():
            for conn, _held in queue:
                conn.close()
        self.waiting.clear()

    def _readable(self) -> None:
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(
                    self.sock, MESSAGE_LIMIT, 1, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not message and not fds:
                self.close()  # the gateway has gone: nothing more will come
                return
            self._take(message, fds)

    def _take(self, message: bytes, fds: list[int]) -> None:
        conn = socket.socket(fileno=fds[0]) if fds else None
        try:
            kind, port, held = parse(message)
        except ValueError:
            kind, port, held = b"", 0, b""
        if conn is None or kind != CONNECTION:
            if conn is not None:
                conn.close()
            return
        global handed
        handed += 1
        callback = self.servers.get(port)
        if callback is not None:
            self._accept(conn, held, callback)
            return
        queue = self.waiting.setdefault(port, [])
        if len(queue) >= WAITING_LIMIT:
            conn.close()
            return
        queue.append((conn, held))

    def _accept(self, conn: socket.socket, held: bytes, callback: ClientConnected) -> None:
        """Serve conn as asyncio.start_server serves an accepted socket, held bytes first."""
        loop = self._loop
        assert loop is not None
        conn.setblocking(False)
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        if held:
            reader.feed_data(held)  # before the transport exists: nothing can come first
        protocol = asyncio.StreamReaderProtocol(reader, callback, loop=loop)
        task = loop.create_task(loop.connect_accepted_socket(lambda: protocol, conn))
        self._tasks.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            pass  # the client reset before the app saw it: nothing to serve
