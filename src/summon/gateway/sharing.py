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
import socket
from collections.abc import Callable

from summon.gateway.handoff import PAUSE_TIMEOUT, Channel
from summon.runtime.handoff import PAUSE, message

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # connections taken per wake-up of a listener
BACKLOG = 1024  # per service port: a burst of cold clients waits here, not refused

OnConnection = Callable[[socket.socket, int], None]


def listen(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listeners:
    """One service's listening sockets (guest port -> socket) and who accepts on them."""

    def __init__(self, sockets: dict[int, socket.socket], on_connection: OnConnection) -> None:
        self.sockets = sockets
        self.on_connection = on_connection
        self.shared = False
        self._loop = asyncio.get_running_loop()
        self._watched: set[int] = set()

    def watch(self) -> None:
        """The gateway accepts (again): a connection is its to see."""
        for port, sock in self.sockets.items():
            if port not in self._watched and sock.fileno() >= 0:
                self._loop.add_reader(sock.fileno(), self._accept, sock, port)
                self._watched.add(port)

    def unwatch(self) -> None:
        for port in list(self._watched):
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sockets[port].fileno())
            self._watched.discard(port)

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
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: the next wake-up tries again
                log.warning("accept on port %d: %s", port, e.strerror)
                return
            self.on_connection(conn, port)
