"""Requests in, responses out, as bytes: the server without a socket.

For a target with no sockets and no threads (the browser target, in Pyodide) and for tests:
the bytes of one or more HTTP/1.1 requests (pipelined) go in, the bytes of the responses
come out, through the same connection object, limits and bridges as the served path.

- respond_wsgi(app, data) -> bytes: synchronous; no threads, no asyncio.
- exchange_asgi(app, data) -> bytes: a coroutine for the running event loop (Pyodide's
  WebLoop included); give `state` from a Lifespan (asgi.py) started once beforehand.
- respond_asgi(app, data, loop=None) -> bytes: exchange_asgi run to completion on `loop`,
  or on a fresh event loop.

The request bytes are all there is: a request cut short is treated as a client that left
(no response), as on a socket. `log`, if given, takes one access line per response.
"""

from __future__ import annotations

import time

from summon.runtime.http.connection import ConnectionIO
from summon.runtime.http.log import access_line
from summon.runtime.http.protocol import (
    Body,
    EndOfRequest,
    HTTPConnection,
    NeedData,
    Rejected,
    Request,
)
from summon.runtime.http.settings import Settings
from summon.runtime.http.wsgi import ConnectionSink, build_environ, run_wsgi

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any

    from summon.runtime.http.asgi import ASGIApp
    from summon.runtime.http.protocol import Exchange
    from summon.runtime.http.wsgi import WSGIApp

CLIENT = ("127.0.0.1", 0)
SERVER = ("localhost", 80)


def _logger(log: Callable[[str], None] | None, client: str) -> Callable[[Exchange], None]:
    if log is None:
        return lambda exchange: None
    return lambda exchange: log(access_line(client, exchange))


def respond_wsgi(
    app: WSGIApp,
    data: bytes,
    *,
    client: tuple[str, int] = CLIENT,
    server: tuple[str, int] = SERVER,
    settings: Settings | None = None,
    log: Callable[[str], None] | None = None,
) -> bytes:
    """The response bytes of the WSGI `app` to the request bytes `data` (see module doc)."""
    conn = HTTPConnection(settings or Settings(), time.monotonic())
    log_exchange = _logger(log, client[0])
    sink = ConnectionSink(conn, time.monotonic, log_exchange)
    conn.receive_data(data, time.monotonic())
    while not conn.closed:
        event = conn.next_event(time.monotonic())
        kind = type(event)
        if kind is NeedData:
            conn.receive_data(b"", time.monotonic())  # all there is: the client "leaves"
        elif kind is Request:
            body = _read_body(conn, sink.out, log_exchange)
            if body is not None:
                request: Request = event  # type: ignore[assignment]
                environ = build_environ(
                    request, body, client=client, server=server, multithread=False
                )
                what = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
                run_wsgi(app, environ, sink, what)
        elif kind is Rejected:
            if event.exchange is not None:  # type: ignore[union-attr]
                log_exchange(event.exchange)  # type: ignore[union-attr]
        else:
            break  # Disconnected
        sink.out.append(conn.data_to_send())
    sink.out.append(conn.data_to_send())
    return b"".join(sink.out)


def _read_body(
    conn: HTTPConnection, out: list[bytes], log: Callable[[Exchange], None]
) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        event = conn.next_event(time.monotonic())
        kind = type(event)
        if kind is Body:
            chunks.append(event.data)  # type: ignore[union-attr]
        elif kind is EndOfRequest:
            return b"".join(chunks)
        elif kind is NeedData:
            conn.receive_data(b"", time.monotonic())  # the body was cut short
        else:
            if kind is Rejected and event.exchange is not None:  # type: ignore[union-attr]
                log(event.exchange)  # type: ignore[union-attr]
            out.append(conn.data_to_send())
            return None


class MemoryIO(ConnectionIO):
    """A ConnectionIO whose client sent everything at once and reads what is written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def now(self) -> float:
        return time.monotonic()

    async def read(self, deadline: float | None, wake: asyncio.Event | None) -> bytes | None:
        if wake is not None:
            # Waiting for the end of a response (an app listening for a disconnect): the
            # client of an exchange never leaves before its answer.
            await wake.wait()
            return None
        return b""  # nothing more will come

    async def write(self, data: bytes) -> None:
        self.out.append(data)


async def exchange_asgi(
    app: ASGIApp,
    data: bytes,
    *,
    client: tuple[str, int] = CLIENT,
    server: tuple[str, int] = SERVER,
    settings: Settings | None = None,
    state: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> bytes:
    """The response bytes of the ASGI `app` to the request bytes `data` (see module doc)."""
    from summon.runtime.http.asgi import HTTPCycle, build_scope
    from summon.runtime.http.connection import serve_connection

    io = MemoryIO()
    conn = HTTPConnection(settings or Settings(), io.now())
    log_exchange = _logger(log, client[0])
    conn.receive_data(data, io.now())

    async def handle(request: Request) -> None:
        scope = build_scope(request, client=client, server=server, state=state)
        await HTTPCycle(conn, io, scope, log_exchange).run(app)

    await serve_connection(conn, io, handle, log_exchange)
    return b"".join(io.out)


def respond_asgi(
    app: ASGIApp,
    data: bytes,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    client: tuple[str, int] = CLIENT,
    server: tuple[str, int] = SERVER,
    settings: Settings | None = None,
    state: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> bytes:
    """exchange_asgi run to completion on `loop` (not running), or on a fresh event loop."""
    import asyncio

    exchange = exchange_asgi(
        app, data, client=client, server=server, settings=settings, state=state, log=log
    )
    if loop is None:
        return asyncio.run(exchange)
    return loop.run_until_complete(exchange)
