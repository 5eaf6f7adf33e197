"""The loop that serves one connection, whatever carries its bytes: a socket, or memory.

A transport is a ConnectionIO: read (with a deadline, and an event that may cut the wait
short), write (which waits until the bytes are handed on), and a clock. The server gives one
over the Stack device's streams (server.py), the in-memory exchange one over a bytes buffer
(exchange.py); serve_connection and the bridges do not know which.
"""

from __future__ import annotations

from summon.runtime.http.protocol import (
    Body,
    ClientDisconnected,
    Disconnected,
    EndOfRequest,
    NeedData,
    Rejected,
    Request,
)

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from summon.runtime.http.protocol import Exchange, HTTPConnection


class ConnectionIO:
    """What the connection loop and the bridges need from a transport."""

    def now(self) -> float:
        """Monotonic seconds: the clock of the connection's deadlines."""
        raise NotImplementedError

    async def read(self, deadline: float | None, wake: asyncio.Event | None) -> bytes | None:
        """The next bytes from the client (b"" once it has closed its side); None when
        `deadline` (on the clock of now()) passes or `wake` is set first."""
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        """Hand `data` on, waiting while the client reads slowly; ClientDisconnected if it
        is gone (or stalls beyond the read timeout)."""
        raise NotImplementedError


async def flush(
    conn: HTTPConnection, io: ConnectionIO, log: Callable[[Exchange], None] | None = None
) -> None:
    """Write what the connection has to send; on ClientDisconnected the connection aborts
    (and `log` gets what the client had of the response before it left)."""
    pieces = conn.pieces_to_send()
    if pieces:
        try:
            for data in pieces:
                await io.write(data)
        except ClientDisconnected:
            exchange = conn.abort(io.now())
            if exchange is not None and log is not None:
                log(exchange)
            raise


async def serve_connection(
    conn: HTTPConnection,
    io: ConnectionIO,
    handle: Callable[[Request], Awaitable[None]],
    log: Callable[[Exchange], None],
    stopping: asyncio.Event | None = None,
) -> None:
    """Serve requests on `conn` until it closes; `handle` answers each request.

    `stopping`, once set, ends the wait for a next request (the server is shutting down);
    a request under way is still answered, with `Connection: close`.
    """
    try:
        while not conn.closed:
            event = conn.next_event(io.now())
            kind = type(event)
            if kind is Request:
                await handle(event)  # type: ignore[arg-type]
            elif kind is NeedData:
                wake = stopping if stopping is not None and not conn.stopping else None
                data = await io.read(conn.deadline, wake)
                now = io.now()
                if data is not None:
                    conn.receive_data(data, now)
                elif wake is not None and wake.is_set():
                    conn.shutdown(now)
                else:
                    timeout = conn.check_timeout(now)
                    if type(timeout) is Rejected and timeout.exchange is not None:
                        log(timeout.exchange)
                await flush(conn, io)
            elif kind is Rejected:
                if event.exchange is not None:  # type: ignore[union-attr]
                    log(event.exchange)  # type: ignore[union-attr]
                await flush(conn, io)
            elif kind is Disconnected:
                break
            # Body or EndOfRequest here were left unread by a handler; they are dropped.
    except ClientDisconnected:
        pass  # the client went away mid-write: nothing more to tell it


async def read_body(
    conn: HTTPConnection, io: ConnectionIO, log: Callable[[Exchange], None]
) -> bytes | None:
    """The whole body of the request under way (100 Continue sent first if asked for);
    None if the client left, timed out or sent too much (answered already)."""
    chunks: list[bytes] = []
    while True:
        event = conn.next_event(io.now())
        kind = type(event)
        if kind is Body:
            chunks.append(event.data)  # type: ignore[union-attr]
        elif kind is EndOfRequest:
            return b"".join(chunks)
        elif kind is NeedData:
            conn.send_continue()
            await flush(conn, io)
            data = await io.read(conn.deadline, None)
            now = io.now()
            if data is not None:
                conn.receive_data(data, now)
                continue
            timeout = conn.check_timeout(now)
            if timeout is None:
                continue  # woken a hair early: the deadline has not passed yet
            if type(timeout) is Rejected and timeout.exchange is not None:
                log(timeout.exchange)
            await flush(conn, io)
            return None
        else:
            if kind is Rejected and event.exchange is not None:  # type: ignore[union-attr]
                log(event.exchange)  # type: ignore[union-attr]
            await flush(conn, io)
            return None
