"""The ASGI bridge (ASGI 3, HTTP spec 2.4, lifespan 2.0): scopes, receive and send, lifespan.

`HTTPCycle` is one request's call of the app: its receive() hands out the request body as
it arrives (pulled from the socket only when the app asks: that is the back-pressure), then
blocks until the client leaves or the response is complete, and returns http.disconnect;
its send() turns http.response.* messages into bytes through the connection and waits until
they are handed to the transport. send() on a closed connection raises ClientDisconnected,
an OSError, as spec 2.4 asks.

The response head is held back until the first body message, so an app that fails in
between still gets a clean 500. A response without Content-Length is sent chunked, unless it
is a single body message, whose length is then known.

`Lifespan` runs the lifespan scope: startup before serving, shutdown after. An app that
raises on the lifespan scope, or returns at once, does not support it (ASGI says: carry on
without it); one that sends lifespan.startup.failed stops the server.
"""

from __future__ import annotations

import asyncio

from summon.runtime.http.connection import flush
from summon.runtime.http.log import report_app_error
from summon.runtime.http.notice import say
from summon.runtime.http.protocol import (
    Body,
    ClientDisconnected,
    EndOfRequest,
    NeedData,
    Rejected,
    ResponseError,
    unquote,
)
from summon.runtime.http.rules import check_length, declared_length

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from summon.runtime.http.connection import ConnectionIO
    from summon.runtime.http.protocol import Event, Exchange, Headers, HTTPConnection, Request

    Message = dict[str, Any]
    ASGIApp = Callable[
        [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
        Awaitable[None],
    ]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_VERSION = {"version": "3.0", "spec_version": "2.0"}
ERROR_BODY = b"500 Internal Server Error\n"
_DISCONNECT: Message = {"type": "http.disconnect"}


def build_scope(
    request: Request,
    *,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ASGI http scope of `request`; `state` is the lifespan state, copied shallowly."""
    raw_path = request.path
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": dict(ASGI_VERSION),
        "http_version": request.http_version.decode("latin-1"),
        "method": request.method.decode("latin-1"),
        "scheme": "http",
        # Percent escapes, then UTF-8; bytes that are not UTF-8 read as U+FFFD, as uvicorn
        # and urllib.parse.unquote leave them.
        "path": unquote(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path,
        "query_string": request.query,
        "root_path": "",
        "headers": request.headers,
        "client": client,
        "server": server,
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


class HTTPCycle:
    """One request's call of an ASGI app, over a connection and its transport."""

    def __init__(
        self,
        conn: HTTPConnection,
        io: ConnectionIO,
        scope: dict[str, Any],
        log: Callable[[Exchange], None],
    ) -> None:
        self.conn = conn
        self.io = io
        self.scope = scope
        self.log = log
        self.what = f"{scope['method']} {scope['path']}"
        self._head: tuple[int, Headers] | None = None  # given by the app, not yet sent
        self._started = False  # the head went out
        self._complete = False  # the last body message went out
        self._gone = False  # the client left or the connection closed
        self._body_done = False
        self._response_done = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stashed: Event | None = None

    async def run(self, app: ASGIApp) -> None:
        """Call the app; make sure the request gets an answer (500) or the connection closes."""
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            await self._fail()  # our own send() error, let through: the client has left
        except Exception as e:
            if not (self._gone and self._started):
                report_app_error(f"the app failed on {self.what}:", e)
            # else: what the app made of our ClientDisconnected (Starlette's own exception,
            # streaming to a client that left): no traceback for a client leaving
            await self._fail()
        else:
            if not self._complete and not self._gone:
                say(f"the app returned without completing its response to {self.what}")
                await self._fail()
        finally:
            self._response_done.set()

    async def _fail(self) -> None:
        conn = self.conn
        if self._complete:
            return  # the app raised after its response went out whole (Starlette does)
        if self._started or self._gone or conn.closed:
            exchange = conn.abort(self.io.now())
            if exchange is not None:
                self.log(exchange)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        self._finish(conn.respond(500, headers, ERROR_BODY, self.io.now()))
        await self._flush()

    # --- receive --------------------------------------------------------------------------

    async def receive(self) -> Message:
        async with self._lock:  # two tasks reading one body would each get half of it
            return await self._receive()

    async def _receive(self) -> Message:
        conn, io = self.conn, self.io
        while True:
            if self._gone:
                return _DISCONNECT
            if self._body_done:
                if self._response_done.is_set() or conn.client_closed:
                    # The client left (or closed its side): a long poll or an event stream
                    # waiting in receive() learns it now. A send still tries.
                    return _DISCONNECT
                if not conn.wants_data:  # nothing to learn from the socket for now
                    await self._response_done.wait()
                    continue
            event = self._stashed or conn.next_event(io.now())
            self._stashed = None
            if type(event) is Body:
                chunks = [event.data]
                # Hand out what has already arrived at once; peek for the end of the body.
                while True:
                    event = conn.next_event(io.now())
                    if type(event) is Body:
                        chunks.append(event.data)
                        continue
                    if type(event) is EndOfRequest:
                        self._body_done = True
                        return _request(b"".join(chunks), False)
                    if type(event) is not NeedData:
                        self._stashed = event
                    return _request(b"".join(chunks), True)
            if type(event) is EndOfRequest:
                self._body_done = True
                return _request(b"", False)
            if type(event) is NeedData:
                if not self._body_done:
                    conn.send_continue()  # the app wants the body: now the client may send it
                    await self._flush()
                    data = await io.read(conn.deadline, None)
                else:
                    data = await io.read(None, self._response_done)
                if data is None:
                    timeout = conn.check_timeout(io.now())
                    if timeout is not None:
                        self._left(timeout)
                        await self._flush()
                    continue
                conn.receive_data(data, io.now())
                continue
            # Disconnected or Rejected (413 for a body grown too large, 400, 408)
            self._left(event)
            await self._flush()

    def _left(self, event: Event) -> None:
        self._gone = True
        if isinstance(event, Rejected) and event.exchange is not None:
            self._complete = True  # the server's own answer replaced the app's
            self.log(event.exchange)

    # --- send -----------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            if self._head is not None or self._started:
                raise RuntimeError("ASGI: http.response.start sent twice")
            if self._gone:
                raise ClientDisconnected(f"the client of {self.what} has gone")
            status = message.get("status")
            if isinstance(status, int) and not isinstance(status, bool):
                status = int(status)  # http.HTTPStatus.OK (Ariadne's) is the number 200
            self._head = (status, app_headers(message.get("headers", ())))  # type: ignore[assignment]
            return
        if kind == "http.response.body":
            await self._send_body(message)
            return
        raise RuntimeError(f"ASGI: unexpected message type {kind!r} in an http scope")

    async def _send_body(self, message: Message) -> None:
        if self._complete:
            return  # "any further messages on the channel will be ignored"
        if self._gone:
            raise ClientDisconnected(f"the client of {self.what} has gone")
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"ASGI: http.response.body's body is a {type(body).__name__}")
        conn, now = self.conn, self.io.now()
        if not self._started:
            if self._head is None:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            status, headers = self._head
            if not more:  # the whole body: its Content-Length must be it (else a clean 500)
                check_length(status, headers, len(body), self.scope["method"] == "HEAD")
                if declared_length(headers) is None:
                    headers = [*headers, (b"content-length", b"%d" % len(body))]
            conn.start_response(status, headers, now)  # ResponseError: nothing sent
            self._started = True
        try:
            conn.send_body(bytes(body))
            if not more:
                self._finish(conn.end_response(now))
        except ResponseError:
            self._gone = True
            raise
        await self._flush()

    def _finish(self, exchange: Exchange) -> None:
        self._complete = True
        self._response_done.set()
        self.log(exchange)

    async def _flush(self) -> None:
        try:
            await flush(self.conn, self.io, self.log)
        except ClientDisconnected:
            self._gone = True
            self._response_done.set()
            raise


def _request(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def app_headers(headers: object) -> Headers:
    """An app's response headers as a list of (bytes, bytes); TypeError naming a bad one."""
    out: Headers = []
    for item in headers:  # type: ignore[attr-defined]
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"ASGI: response header {item!r} is not a [name, value] pair") from None
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError(f"ASGI: response header {item!r} is not a pair of byte strings")
        out.append((name, value))
    return out


class LifespanFailed(Exception):
    """The app sent lifespan.startup.failed (or .shutdown.failed); the message is its own."""


class Lifespan:
    """The ASGI lifespan scope of an app: startup() before serving, shutdown() after."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}  # the lifespan state each request's scope copies
        self.supported = True
        self._task: asyncio.Task[None] | None = None
        self._startup: asyncio.Future[str | None] | None = None  # None: ok; str: failed
        self._shutdown: asyncio.Future[str | None] | None = None
        self._shutdown_asked = asyncio.Event()
        self._asked_startup = False

    async def startup(self) -> None:
        """Run the app's startup; LifespanFailed if it says it failed.

        An app that raises or returns instead of answering does not support the lifespan
        scope: serving goes on without it (one line on stderr if it raised).
        """
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._main())
        failed = await self._startup
        if failed is not None:
            raise LifespanFailed(failed)

    async def shutdown(self, timeout: float) -> None:
        """Run the app's shutdown, for at most `timeout` seconds; LifespanFailed if it fails."""
        task = self._task
        if task is None or not self.supported or self._shutdown is None:
            return
        self._shutdown_asked.set()
        try:
            done, _ = await asyncio.wait({self._shutdown}, timeout=timeout)
            if not done:
                say(f"the app's lifespan shutdown did not finish within {timeout:g} s")
                return
            failed = self._shutdown.result()
            if failed is not None:
                raise LifespanFailed(failed)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_VERSION), "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as e:
            startup, shutdown = self._startup, self._shutdown
            assert startup is not None and shutdown is not None
            if not startup.done():
                self.supported = False
                why = (str(e).splitlines() or [""])[0][:200]
                say(f"the app does not take ASGI lifespan events ({type(e).__name__}: {why}); "
                    "serving without them")  # fmt: skip
            elif startup.result() is not None:
                pass  # it said startup failed, then raised (as Starlette does): said already
            elif self._shutdown_asked.is_set():
                if not shutdown.done():
                    report_app_error("the app failed in its lifespan shutdown:", e)
                    shutdown.set_result(f"{type(e).__name__}: {e}")
            else:
                report_app_error("the app's lifespan task failed while serving:", e)
        finally:
            if self._startup is not None and not self._startup.done():
                self.supported = False  # it returned without a word: no lifespan support
                self._startup.set_result(None)
            if self._shutdown is not None and not self._shutdown.done():
                self._shutdown.set_result(None)

    async def _receive(self) -> Message:
        if not self._asked_startup:
            self._asked_startup = True
            return {"type": "lifespan.startup"}
        await self._shutdown_asked.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        startup, shutdown = self._startup, self._shutdown
        assert startup is not None and shutdown is not None
        if kind == "lifespan.startup.complete" and not startup.done():
            startup.set_result(None)
        elif kind == "lifespan.startup.failed" and not startup.done():
            startup.set_result(str(message.get("message", "")) or "no message")
        elif kind == "lifespan.shutdown.complete" and not shutdown.done():
            shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not shutdown.done():
            shutdown.set_result(str(message.get("message", "")) or "no message")
        else:
            raise RuntimeError(f"ASGI: unexpected lifespan message {kind!r}")
