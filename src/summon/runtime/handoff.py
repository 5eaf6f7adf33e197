"""Connections the gateway accepted, handed to the app by file descriptor (SCM_RIGHTS).

The gateway keeps its own listeners (it must see a connection arrive to thaw or boot an
instance), and gives each connection it accepted to a socket-mode instance over a
SOCK_SEQPACKET socketpair the instance inherits at start (SUMMON_HANDOFF_FD). The app's
Stack then runs its callback on that connection as if its own server had accepted it: the
socket is the client's kernel socket, and no byte passes through the gateway after that.

While the instance is up, the gateway may share its listening socket itself: the app then
accepts on it as on its own, and a warm request does not pass through the gateway at all;
before it freezes or stops the instance, the gateway takes it back.

Messages, one per packet (big-endian numbers):

    gateway -> app:  "C" PORT(2) HELD...   one fd attached: the client's connection to guest
                                           port PORT; HELD are the bytes the gateway already
                                           read from it while holding it (the app reads them
                                           first)
                     "A" PORT(2) PEER HELD...
                                           as "C", with the client's address as the gateway's
                                           accept() gave it: the app's getpeername() for this
                                           connection (version 2)
                     "S" PORT(2)           one fd attached: the gateway's listening socket
                                           for PORT, to accept on until paused
                     "P" PORT(2)           stop accepting on the shared listener of PORT
    app -> gateway:  "L" PORT(2)           the app serves PORT now (its first start_server
                                           on it): the gateway's sign that the boot is done
                     "p" PORT(2)           the app no longer accepts on PORT's shared
                                           listener (the answer to "P")

    PEER = 4 ADDRESS(4) PORT(2)                          IPv4: (host, port)
         | 6 ADDRESS(16) PORT(2) FLOWINFO(4) SCOPE(4)    IPv6: (host, port, flowinfo, scope)

(PORT in PEER is the client's.) A message the runtime cannot parse, or one cut short, closes
the connection it came with; the channel and the app go on.

The image says which version of these its runtime speaks, in its config label
dev.summon.handoff (VERSION, written at build); an image without it speaks 1, all of the
above but "A". A runtime of version 1 closes a message of a kind it does not know, and the
connection with it: a gateway sends "A" only to an image that speaks 2.

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
    from typing import Any

    from summon.devices import ClientConnected

    # What socket.accept() gives for an IPv4 and for an IPv6 peer.
    Peer = tuple[str, int] | tuple[str, int, int, int]

# The hand-off version this runtime speaks (the image config's label dev.summon.handoff):
# 2 takes "A", a connection with its client's address.
VERSION = 2
ADDRESSED_SINCE = 2  # the first version that takes "A"
CONNECTION = b"C"
ADDRESSED = b"A"
LISTENING = b"L"
SHARE = b"S"
PAUSE = b"P"
PAUSED = b"p"
KINDS = (CONNECTION, ADDRESSED, LISTENING, SHARE, PAUSE, PAUSED)
SHARED_BACKLOG = 4096  # the gateway's own for a listener (gateway/sharing.py BACKLOG)
HEADER = 3  # kind and port
HELD_LIMIT = 64 * 1024  # what the gateway holds of a connection at most (and sends along)
IPV4, IPV6 = 4, 6  # PEER's first byte
PEER_SIZES = {IPV4: 1 + 4 + 2, IPV6: 1 + 16 + 2 + 4 + 4}
PEER_LIMIT = max(PEER_SIZES.values())
# The largest message: an "A" with an IPv6 peer and all a gateway holds. A longer one comes
# cut (SOCK_SEQPACKET drops the rest of a packet past the buffer) and is refused.
MESSAGE_LIMIT = HEADER + PEER_LIMIT + HELD_LIMIT
WAITING_LIMIT = 1024  # connections queued for a port nobody serves yet; more are closed
STREAM_LIMIT = 64 * 1024  # asyncio's StreamReader default, as start_server uses

handed = 0  # connections handed over so far (summon.runtime.stats reports it)


def connection_message(port: int, held: bytes) -> bytes:
    """The "C" message for a connection to guest `port` with `held` bytes already read."""
    if len(held) > HELD_LIMIT:
        raise ValueError(f"{len(held)} held bytes: at most {HELD_LIMIT} go with a connection")
    return CONNECTION + port.to_bytes(2, "big") + held


def addressed_message(port: int, held: bytes, peer: object) -> bytes:
    """The "A" message for a connection to guest `port` from `peer` (what accept() gave for
    it: an IPv4 or IPv6 address); ValueError for a peer of another kind."""
    if len(held) > HELD_LIMIT:
        raise ValueError(f"{len(held)} held bytes: at most {HELD_LIMIT} go with a connection")
    return ADDRESSED + port.to_bytes(2, "big") + peer_bytes(peer) + held


def peer_bytes(peer: object) -> bytes:
    """PEER (see above) of an IPv4 (host, port) or IPv6 (host, port, flowinfo, scope)
    address; ValueError for anything else (an AF_UNIX peer: the gateway listens on IP only)."""
    try:
        if isinstance(peer, tuple) and len(peer) == 2:
            host, port = peer
            raw = bytes((IPV4,)) + socket.inet_pton(socket.AF_INET, host)
            return raw + int.to_bytes(port, 2, "big")
        if isinstance(peer, tuple) and len(peer) == 4:
            host, port, flowinfo, scope = peer
            # CPython writes the scope into the host too ("fe80::1%eth0"); it goes as a number.
            raw = bytes((IPV6,)) + socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            numbers = (int.to_bytes(port, 2, "big"), int.to_bytes(flowinfo, 4, "big"))
            return raw + b"".join(numbers) + int.to_bytes(scope, 4, "big")
    except (TypeError, AttributeError, OSError, OverflowError, ValueError):
        pass
    raise ValueError(f"not an IP peer address: {peer!r}")


def parse_peer(body: bytes) -> tuple[Peer, bytes]:
    """(peer, held bytes) of an "A" message's body (what follows HEADER); ValueError for what
    is not one. No syscall: the app's sandbox may allow none that would tell the peer."""
    family = body[0] if body else -1
    size = PEER_SIZES.get(family, 0)
    if not size:
        raise ValueError(f"a peer address of family {family}")
    if len(body) < size:
        raise ValueError(f"a family {family} peer address cut at {len(body)} of {size} bytes")
    held = body[size:]
    if len(held) > HELD_LIMIT:
        raise ValueError(f"{len(held)} held bytes: at most {HELD_LIMIT} go with a connection")
    if family == IPV4:
        host, port = socket.inet_ntop(socket.AF_INET, body[1:5]), int.from_bytes(body[5:7], "big")
    else:
        host, port = (
            socket.inet_ntop(socket.AF_INET6, body[1:17]),
            int.from_bytes(body[17:19], "big"),
        )
    if port == 0:
        raise ValueError(f"a peer at {host} port 0")
    if family == IPV4:
        return (host, port), held
    flowinfo, scope = int.from_bytes(body[19:23], "big"), int.from_bytes(body[23:27], "big")
    # CPython names the scope in the host ("fe80::1%eth0", from getnameinfo); by its number
    # here: the name would take a socket of its own to find (if_indextoname).
    return (f"{host}%{scope}" if scope else host, port, flowinfo, scope), held


def listening_message(port: int) -> bytes:
    return LISTENING + port.to_bytes(2, "big")


def message(kind: bytes, port: int) -> bytes:
    """A message of kind (one of KINDS but CONNECTION and ADDRESSED) about port."""
    return kind + port.to_bytes(2, "big")


def parse(message: bytes) -> tuple[bytes, int, bytes]:
    """(kind, port, the rest) of one message: the rest is the held bytes of a "C", PEER and
    the held bytes of an "A" (parse_peer), empty for the others; ValueError for what is not
    a message."""
    if len(message) < HEADER or message[:1] not in KINDS:
        raise ValueError(f"not a hand-off message: {message[:8]!r}")
    port = int.from_bytes(message[1:3], "big")
    if not 0 < port < 65536:
        raise ValueError(f"hand-off message for port {port}")
    if message[:1] not in (CONNECTION, ADDRESSED) and len(message) != HEADER:
        raise ValueError(f"a {message[:1].decode()!r} message of {len(message)} bytes")
    return message[:1], port, message[3:]


class HandedConnection(socket.socket):
    """A connection handed over with its client's address ("A"): getpeername() answers with
    that address, not with a syscall.

    asyncio asks a connection it did not accept itself for its far end (getpeername, as it
    makes the transport: peername, REMOTE_ADDR, scope["client"] come from there). A sandbox's
    profile is recorded from runs handed their listeners, whose accept tells the peer: it
    does not allow getpeername, and every handed connection printed a refused line and came
    to the app with no client address.
    """

    peer: Peer | None = None  # None: the kernel's answer (a copy made by dup(), say)

    def getpeername(self) -> Any:
        return super().getpeername() if self.peer is None else self.peer


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
        # port -> the gateway's shared listener, kept from its "S" to its "P": a server
        # accepts on a copy of it, so a server the app closes and starts again on the port
        # (or one started after the "S") accepts on it again, as on a host listener
        self.listeners: dict[int, socket.socket] = {}
        # port -> the server on a copy of that listener (a task until it serves)
        self.shared: dict[int, asyncio.Task[asyncio.Server | None]] = {}
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
        if port in self.listeners:
            self._serve_shared(port)
        try:
            self.sock.send(listening_message(port))
        except OSError:
            pass  # a full or closed socketpair: the gateway learns from the connections

    def unserve(self, port: int) -> None:
        """A closed server: its port's connections are closed from now on, and the shared
        listener, if any, is no longer accepted on until a server is started on the port
        again (the listener stays the app's until the gateway takes it back)."""
        self.servers.pop(port, None)
        self._stop_serving(port)

    def close(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for queue in self.waiting.values():
            for conn, _held in queue:
                conn.close()
        self.waiting.clear()
        for port in list(self.listeners):
            self._pause(port, answer=False)

    def _readable(self) -> None:
        while True:
            try:
                message, fds, flags, _addr = socket.recv_fds(
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
            if flags & socket.MSG_TRUNC:
                # Past MESSAGE_LIMIT: held bytes are lost, so the connection is not served.
                message = b""
            self._take(message, fds)

    def _take(self, message: bytes, fds: list[int]) -> None:
        peer: Peer | None = None
        try:
            kind, port, held = parse(message)
            if kind == ADDRESSED:
                peer, held = parse_peer(held)
                kind = CONNECTION
        except ValueError:
            kind, port, held = b"", 0, b""
        conn: socket.socket | None = None
        if fds and peer is not None:
            conn = HandedConnection(fileno=fds[0])
            conn.peer = peer
        elif fds:
            conn = socket.socket(fileno=fds[0])
        if kind == PAUSE:
            self._pause(port)
        if conn is None:
            return
        if kind == SHARE:
            self._share(port, conn)
            return
        if kind != CONNECTION:
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

    def _share(self, port: int, listener: socket.socket) -> None:
        """The gateway's listener for port: accepted on with the port's own callback, now if
        the app serves the port, else once it does. One listener per port: the last wins."""
        old = self.listeners.pop(port, None)
        if old is not None:
            self._stop_serving(port)
            old.close()
        self.listeners[port] = listener
        if port in self.servers:
            self._serve_shared(port)

    def _serve_shared(self, port: int) -> None:
        """Accept on a copy of port's shared listener (asyncio closes a server's socket with
        the server), once the server on an earlier copy, if any, is closed."""
        loop = self._loop
        callback = self.servers.get(port)
        listener = self.listeners.get(port)
        if loop is None or callback is None or listener is None or port in self.shared:
            return
        copy = listener.dup()

        async def serve() -> asyncio.Server | None:
            copy.setblocking(False)
            # asyncio listens again on a socket it is given (backlog 100 by default), which
            # would shrink the gateway's backlog for a thaw's burst: keep the gateway's.
            return await asyncio.start_server(callback, sock=copy, backlog=SHARED_BACKLOG)

        self.shared[port] = loop.create_task(serve())

    def _stop_serving(self, port: int) -> asyncio.Task[None] | None:
        """Close the server on port's shared listener, if any (its copy only: the gateway
        still holds the listener, and so does self.listeners until a "P")."""
        task = self.shared.pop(port, None)
        loop = self._loop
        if task is None or loop is None:
            return None

        async def stop() -> None:
            try:
                server = await task
            except Exception:
                server = None
            if server is not None:
                server.close()

        stopped = loop.create_task(stop())
        self._tasks.add(stopped)
        stopped.add_done_callback(self._tasks.discard)
        return stopped

    def _pause(self, port: int, answer: bool = True) -> None:
        """Stop accepting on port's shared listener and let go of it; then say so, if
        answer."""
        listener = self.listeners.pop(port, None)
        stopped = self._stop_serving(port)
        if listener is not None:
            listener.close()  # (a server's copy is closed with the server)
        loop = self._loop
        if not answer or loop is None:
            return

        async def pause() -> None:
            if stopped is not None:
                await stopped
            try:
                self.sock.send(message(PAUSED, port))
            except OSError:
                pass

        paused = loop.create_task(pause())
        self._tasks.add(paused)
        paused.add_done_callback(self._tasks.discard)

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
