"""A service's listening sockets: watched by the gateway, or shared with its warm app.

The gateway listens on each service's address and ports, and while the service is down,
booting or frozen it watches those sockets itself: a connection is what boots or thaws the
instance. While the instance is up, and its app takes connections by fd and reports its
own figures, the gateway shares the listening sockets themselves with it (a copy of each,
over the hand-off channel): the app accepts on them as on its own listeners, and a warm
request passes through no part of the gateway, not even to be handed over. Before an idle
step (freeze, snapshot, stop) the gateway takes them back: the app stops accepting on them
and says so, and the gateway watches them again. Idleness is then read from the app's own
figures (connections taken, connections being served): the gateway sees none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Callable

from summon.gateway.handoff import PAUSE_TIMEOUT, Channel
from summon.runtime.handoff import PAUSE, SHARED_BACKLOG, message

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # connections taken per wake-up of a listener
BACKLOG = SHARED_BACKLOG  # per service port: a burst of cold clients waits here (somaxconn
# caps it); the app, given the listener, listens with the same
# File descriptors kept free of held connections: what a boot (pipes, runc, the hand-off
# channel), the DNS server (MAX_FORWARDS + MAX_TCP_CLIENTS) and the status page open.
RESERVE_FDS = 512
PAUSE_SECONDS = 0.1  # a listener left alone this long when no connection can be taken


class Budget:
    """How many client connections the gateway may hold at once: its file limit less
    RESERVE_FDS, so a flood of held clients cannot leave a boot without the pipes and
    sockets it needs (the boot would fail, and with it every held client). Past it, new
    connections wait in the listeners' backlogs, in the kernel, until held ones go."""

    def __init__(self) -> None:
        self.held = 0  # connections held or spliced by every service (Service._serve)
        self.full = False

    def limit(self) -> int:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 30
        return max(64, soft - RESERVE_FDS)

    def room(self) -> bool:
        full = self.held >= self.limit()
        if full and not self.full:
            log.warning(
                "holding %d connections, the most the file limit allows (ulimit -n %d); "
                "new ones wait in the backlog",
                self.held,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
        self.full = full
        return not full


budget = Budget()


def raise_file_limit(most: int = 1 << 16) -> None:
    """The soft file limit up to the hard one (at most MOST): 1024, the usual soft limit,
    is for programs that use select(); the gateway's loop uses epoll, and every client it
    holds is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = most if hard == resource.RLIM_INFINITY else min(hard, most)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# (the accepted connection, its guest port, its peer as accept() gave it)
OnConnection = Callable[[socket.socket, int, object], None]


def listen(address: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A non-blocking TCP listener on address:port (SO_REUSEADDR, as asyncio's servers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listeners:
    """One service's listening sockets (guest port -> socket) and who accepts on them."""

    # one per service
    __slots__ = ("_bound", "_loop", "_watched", "on_connection", "service", "shared", "sockets")

    def __init__(
        self, sockets: dict[int, socket.socket], on_connection: OnConnection, service: str = ""
    ) -> None:
        self.sockets = sockets
        self.on_connection = on_connection
        self.service = service  # its name, for the log
        # (guest port, address, port) each listens on: what an app that holds one can undo
        self._bound = tuple((p, *s.getsockname()[:2]) for p, s in sockets.items())
        self.shared = False
        self._loop = asyncio.get_running_loop()
        self._watched: tuple[int, ...] = ()  # (a set of one is 216 bytes, times services)

    def watch(self) -> None:
        """The gateway accepts (again): a connection is its to see."""
        for port in list(self.sockets):
            sock = self.sockets[port]
            if port in self._watched or sock.fileno() < 0:
                continue
            if not _listening(sock):
                new = self._listen_anew(port)
                if new is None:
                    continue
                sock = new
            with contextlib.suppress(OSError):  # an app may have listened anew with less
                sock.listen(BACKLOG)
            self._loop.add_reader(sock.fileno(), self._accept, sock, port)
            self._watched += (port,)

    def _listen_anew(self, port: int) -> socket.socket | None:
        """A new listener on the service's address and port, for one that listens no more:
        shared with the app (or kept by it), its `shutdown(SHUT_RD)` stopped it for every
        holder and gave its port back, and listen() again took a random one. The service
        was unreachable (refused) until the gateway restarted, its state "up" or "down" and
        no error. None, said, if the port is taken meanwhile: tried again in a while."""
        old = self.sockets[port]
        address, number = next((a, n) for p, a, n in self._bound if p == port)
        try:
            new = listen(address, number)
        except OSError as e:
            log.warning(
                "service %s: cannot listen on %s:%d again: %s; trying again",
                self.service, address, number, e.strerror,
            )  # fmt: skip
            self._loop.call_later(PAUSE_SECONDS, self._resume)
            return None
        log.warning(
            "service %s: its app shut the listener on %s:%d down (shutdown() of the "
            "listening socket it was given); listening there anew",
            self.service, address, number,
        )  # fmt: skip
        self.sockets[port] = new
        old.close()
        return new

    def unwatch(self) -> None:
        for port in list(self._watched):
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sockets[port].fileno())
            self._watched = tuple(p for p in self._watched if p != port)

    def share(self, channel: Channel) -> bool:
        """The app accepts on every listener from now on; False (nothing shared) if the
        channel would not take them all."""
        sent = [port for port, sock in self.sockets.items() if channel.share(port, sock)]
        if len(sent) != len(self.sockets):
            for port in sent:
                with contextlib.suppress(OSError):
                    channel.sock.send(message(PAUSE, port))
            return False
        self.unwatch()
        self.shared = True
        return True

    async def take_back(self, channel: Channel | None) -> None:
        """The gateway accepts again, once the app has let go of the listeners (or has not
        said so in time, or is gone: then its copies die with it)."""
        if self.shared and channel is not None and not channel.closed:
            if not await channel.pause(tuple(self.sockets), PAUSE_TIMEOUT):
                log.warning("an app did not let go of its shared listeners in time")
        self.lost()

    def lost(self) -> None:
        """The app is gone (or never had them): the gateway watches its listeners."""
        self.shared = False
        self.watch()

    def close(self) -> None:
        self.unwatch()
        for sock in self.sockets.values():
            sock.close()

    def _accept(self, listener: socket.socket, port: int) -> None:
        """A listener is readable: take what connections wait, give each to the service."""
        for _ in range(ACCEPT_BATCH):
            if not budget.room():
                self._pause(port)
                return
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: try again in a while, not at once
                log.warning("accept on port %d: %s", port, e.strerror)
                self._pause(port)
                return
            self.on_connection(conn, port, peer)

    def _pause(self, port: int) -> None:
        """Stop watching PORT for PAUSE_SECONDS: a readable listener whose connections
        cannot be taken now would otherwise wake the loop at once, again and again."""
        if port in self._watched:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sockets[port].fileno())
            self._watched = tuple(p for p in self._watched if p != port)
        self._loop.call_later(PAUSE_SECONDS, self._resume)

    def _resume(self) -> None:
        if not self.shared:  # (while shared the app accepts; close() leaves no fileno)
            self.watch()


def _listening(sock: socket.socket) -> bool:
    """Whether sock is still a listening socket (SO_ACCEPTCONN): what holds a copy of it can
    end that, for every copy."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False
