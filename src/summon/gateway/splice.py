"""The bytes of a connection the gateway holds or splices (one not handed over by fd).

Holding reads a held client's bytes while its service boots, at most HELD_LIMIT (then TCP
flow control waits for the rest); pump copies one way of a spliced connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from summon.gateway.handoff import HELD_LIMIT

CHUNK = 64 * 1024


class Holding:
    """Reads a held connection into data (at most HELD_LIMIT), on the loop, until stop().

    A reader callback rather than a task: stop() is then exact, with no read in flight
    whose bytes a cancellation could lose.
    """

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.data = bytearray()
        self._loop = asyncio.get_running_loop()
        self._reading = True
        self._loop.add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            chunk = self.conn.recv(HELD_LIMIT - len(self.data))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        self.data += chunk
        if not chunk or len(self.data) >= HELD_LIMIT:
            self.stop()  # at EOF the client waits for the answer; past the limit, it waits

    def stop(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.conn.fileno())


async def pump(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, first: Callable[[], None] | None = None
) -> None:
    try:
        while data := await src.read(CHUNK):
            if first is not None:
                first()
                first = None
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        # RuntimeError: the other side's transport closed under us (failure, shutdown)
        dst.close()
