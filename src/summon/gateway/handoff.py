"""The gateway's end of an instance's hand-off channel: accepted connections, sent by fd.

The gateway keeps its listeners: it must see a connection arrive to thaw or boot the
instance. For an instance whose app serves through the runtime's Stack on host sockets
(RunSpec.stack_serves, on a target with capability HANDOFF), it then sends the accepted
socket itself over a SOCK_SEQPACKET socketpair the instance got at start (SCM_RIGHTS), with
the bytes it read from it while holding it, and closes its own copy: the connection is then
between the client and the app, and no byte of it passes through the gateway. The app
says on the same channel when it serves a port; that is the end of a boot. The messages are
summon.runtime.handoff's (that module is the app's end).

Each connection goes with its client's address (the "A" message) to an app whose image says
its runtime takes it (RunSpec.handoff_version, from the image's label): the app's sandbox may
not ask the kernel. An older image's runtime would close the connection: it gets "C".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from summon.runtime.handoff import (
    ADDRESSED_SINCE,
    CONNECTION,
    HELD_LIMIT,
    LISTENING,
    PAUSE,
    PAUSED,
    SHARE,
    addressed_message,
    connection_message,
    message,
    parse,
)

__all__ = ["CONNECTION", "HELD_LIMIT", "Channel"]
log = logging.getLogger(__name__)
PAUSE_TIMEOUT = 2.0  # seconds for an app to let go of a shared listener

# Room for many connections queued while the app starts (each message is small unless it
# carries held bytes); past it sends wait for the app to read.
SEND_BUFFER = 4 * 1024 * 1024
READ_BATCH = 64  # the app's messages read per turn of the gateway's loop


class ChannelClosed(ConnectionError):
    """The app's end of the channel is gone (the instance ended)."""


class ChannelStuck(ChannelClosed):
    """The app took no connection for the channel's patience: the one at hand is dropped."""


class Channel:
    """One instance's hand-off channel, gateway side. Use from the event loop's thread.

    version: the hand-off version the app's runtime speaks (summon.runtime.handoff.VERSION
    of the image): which messages it may be sent."""

    def __init__(self, sock: socket.socket, version: int = 1) -> None:
        self.sock = sock
        self.version = version
        self.sock.setblocking(False)
        self.serving: set[int] = set()  # ports the app said it serves
        self.paused: set[int] = set()  # ports whose shared listener the app let go of
        self.closed = False
        self.patience = 10.0  # seconds send() waits for a full channel (start() sets it)
        self.service = ""  # the service's name, for the log
        self.stuck = 0  # connections dropped after the patience
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    @classmethod
    def pair(cls, version: int = 1) -> tuple[Channel, socket.socket]:
        """A new channel to an app whose runtime speaks version, and the app's end of it (to
        pass as RunSpec.handoff, then close)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return cls(ours, version), theirs

    def start(self, patience: float = 10.0, service: str = "") -> None:
        """Listen for the app's messages on the running loop; send() waits at most patience
        seconds for a full channel (and names service when it gives up)."""
        self.patience, self.service = patience, service
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        # At most READ_BATCH messages, then back to the loop (which calls again while more
        # wait): an app that sends without end from several threads kept this loop reading
        # and the gateway's other instances waiting.
        for _ in range(READ_BATCH):
            try:
                message = self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:
                self.close()
                return
            with contextlib.suppress(ValueError):
                kind, port, _ = parse(message)
                if kind == LISTENING:
                    self.serving.add(port)
                    self._wake()
                elif kind == PAUSED:
                    self.paused.add(port)
                    self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def serves(self, ports: tuple[int, ...], timeout: float) -> bool:
        """Wait until the app serves every port (True), the channel closes or time runs out."""

        async def wait() -> None:
            while not self.closed and not set(ports) <= self.serving:
                assert self._changed is not None
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return False
        return set(ports) <= self.serving

    def share(self, port: int, listener: socket.socket) -> bool:
        """Give the app (a copy of) the listening socket of port to accept on itself; False
        if the channel cannot take it now (closed, or full)."""
        if self.closed:
            return False
        self.paused.discard(port)
        try:
            socket.send_fds(self.sock, [message(SHARE, port)], [listener.fileno()])
        except OSError:
            return False
        return True

    async def pause(self, ports: tuple[int, ...], timeout: float) -> bool:
        """Ask the app to stop accepting on the shared listeners of ports; True once it
        says it has, False if it did not in time (or the channel closed)."""
        for port in ports:
            self.paused.discard(port)
            if not self.closed:
                with contextlib.suppress(OSError):
                    self.sock.send(message(PAUSE, port))

        async def wait() -> None:
            while not self.closed and not set(ports) <= self.paused:
                assert self._changed is not None
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return False
        return set(ports) <= self.paused

    def connection_message(self, port: int, held: bytes, peer: object = None) -> bytes:
        """The message that hands over a connection from peer (what accept() gave, or None)
        to port: "A", with the address, if the app takes it and the address is IP; else "C"
        (the app then finds no client address, or asks the kernel)."""
        if peer is not None and self.version >= ADDRESSED_SINCE:
            with contextlib.suppress(ValueError):
                return addressed_message(port, held, peer)
        return connection_message(port, held)

    def try_send(
        self, conn: socket.socket, port: int, held: bytes = b"", peer: object = None
    ) -> bool:
        """Hand conn (from peer, what accept() gave) over now if the channel takes it without
        waiting; the caller closes its own copy after. ChannelClosed once the app's end is
        gone."""
        if self.closed:
            raise ChannelClosed("the instance's hand-off channel is closed")
        message = self.connection_message(port, held, peer)
        try:
            socket.send_fds(self.sock, [message], [conn.fileno()])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self.close()
            raise ChannelClosed(f"the instance's hand-off channel is closed: {e}") from None
        return True

    async def send(
        self, conn: socket.socket, port: int, held: bytes = b"", peer: object = None
    ) -> None:
        """Hand conn over, waiting while the channel is full (an app still starting), at most
        self.patience: then ChannelStuck. An app that took no more connections (hung, or one
        that stopped reading its end) had the gateway hold each later client, and its file,
        without end: one service's clients then filled the gateway's budget for all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        while not self.try_send(conn, port, held, peer):
            writable: asyncio.Future[None] = loop.create_future()

            def ready(done: asyncio.Future[None] = writable) -> None:
                if not done.done():
                    done.set_result(None)

            loop.add_writer(self.sock.fileno(), ready)
            try:
                async with asyncio.timeout_at(deadline):
                    await writable
            except TimeoutError:
                self.stuck += 1
                if self.stuck == 1:
                    log.warning(
                        "service %s: its app took no connection for %gs (its hand-off "
                        "channel stayed full): closing the ones that wait for it",
                        self.service,
                        self.patience,
                    )
                raise ChannelStuck(f"the app took no connection for {self.patience:g}s") from None
            finally:
                loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self._wake()
