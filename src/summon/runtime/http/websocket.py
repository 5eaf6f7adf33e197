"""WebSocket for ASGI apps (RFC 6455; the ASGI websocket scope, spec 2.4), on wsproto.

A request asking to upgrade (rules.wants_websocket) reaches an ASGI app as a `websocket`
scope instead of an `http` one. wsproto, which the builder vendors into ASGI images beside
h11, does the framing (unmasking, fragments, control frames, UTF-8 checks of text, close
codes); this module does the rest, and is imported at the first upgrade only:

- the handshake: HTTP/1.1, `Sec-WebSocket-Version: 13` (else 426 naming 13), a
  `Sec-WebSocket-Key` of 16 bytes in base64 and no body (else 400), before the app is
  called. The app's first receive() is websocket.connect; websocket.accept sends "101
  Switching Protocols" (with the subprotocol it chose and its headers; no extensions, so no
  compression); websocket.close before it, 403; the denial-response extension
  (websocket.http.response.*) sends the app's own HTTP answer instead; an app that fails or
  returns before any of these, 500.
- after the 101, one task reads the socket: a ping is answered with a pong at once; a
  message (its fragments joined) waits for receive(), at most QUEUE_MESSAGES of them or
  Settings.max_body bytes, after which the reader stops reading and TCP holds the client
  back; a message over
  Settings.max_body closes the connection with 1009 (at the frame header that announces it:
  frames.py), a protocol error with wsproto's code
  (1002, 1007). The client's close, or its disappearance (1006), becomes
  websocket.disconnect, returned by every receive() from then on.
- send() once either side has closed raises ClientDisconnected, an OSError, as spec 2.4 asks.
  An app that returns without closing closes with 1000; one that fails, with 1011.
- a WebSocket silent for Settings.ws_ping seconds gets a ping; one whose client does not
  answer within as long again (gone without a FIN: a cable, a NAT) is closed with 1011, and
  the app gets websocket.disconnect 1006.
- the server's stop closes every WebSocket with 1001 (going away); the app then gets
  websocket.disconnect, within the grace.

The access log has one line per WebSocket: its handshake's 101 (or the refusal).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from summon.runtime.http.asgi import ERROR_BODY, app_headers
from summon.runtime.http.connection import flush
from summon.runtime.http.frames import FrameSizes
from summon.runtime.http.log import report_app_error
from summon.runtime.http.notice import say
from summon.runtime.http.protocol import (
    Body,
    ClientDisconnected,
    EndOfRequest,
    NeedData,
    ResponseError,
)
from summon.runtime.http.rules import SERVER, http_date

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from summon.runtime.http.asgi import ASGIApp, Message
    from summon.runtime.http.connection import ConnectionIO
    from summon.runtime.http.protocol import Exchange, Headers, HTTPConnection, Request

QUEUE_MESSAGES = 16  # messages received and not yet taken by the app: then the reader waits
# ... or once they hold max_body bytes (characters for text): 16 messages of 1 MiB each, from
# six clients that sent and never read what an echo app sent back, filled a 128M sandbox.
CLOSE_WAIT = 5.0  # seconds the client has to answer our close frame
VERSION = b"13"
# Response headers the handshake decides, whatever the app's websocket.accept says.
_HANDSHAKE_OWNED = frozenset(
    (
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
        b"transfer-encoding",
    )
)
_OPEN = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)


def handshake_problem(request: Request) -> tuple[int, str, Headers] | None:
    """(status, why, extra headers) if the upgrade request cannot open a WebSocket."""
    if request.http_version != b"1.1":
        return 400, "a WebSocket needs HTTP/1.1", []
    versions = [v.strip() for n, v in request.headers if n == b"sec-websocket-version"]
    if versions != [VERSION]:
        # RFC 6455 4.4: say which version this server speaks.
        return 426, "Sec-WebSocket-Version is not 13", [(b"sec-websocket-version", VERSION)]
    keys = [v.strip() for n, v in request.headers if n == b"sec-websocket-key"]
    if len(keys) != 1 or len(_b64(keys[0])) != 16:
        return 400, "Sec-WebSocket-Key is not 16 bytes in base64", []
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return 400, "a WebSocket upgrade request has no body", []
    return None


def _b64(value: bytes) -> bytes:
    try:
        return base64.b64decode(value, validate=True)  # wsproto imports base64 anyway
    except (binascii.Error, ValueError):
        return b""


def websocket_scope(http_scope: dict[str, Any]) -> dict[str, Any]:
    """The websocket scope of an upgrade request, from the http scope build_scope made."""
    scope = dict(http_scope)
    del scope["method"]
    offered: list[str] = []
    for name, value in scope["headers"]:
        if name == b"sec-websocket-protocol":
            offered += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    scope.update(
        type="websocket",
        scheme="ws",
        subprotocols=offered,
        extensions={"websocket.http.response": {}},
    )
    return scope


async def serve_websocket(
    app: ASGIApp,
    conn: HTTPConnection,
    io: ConnectionIO,
    request: Request,
    scope: dict[str, Any],
    log: Callable[[Exchange], None],
    stopping: asyncio.Event | None,
) -> None:
    """Answer an upgrade request: refuse a bad handshake, else run the app's websocket
    scope to its end. The connection is closed (or kept, after a refusal) on return."""
    problem = handshake_problem(request)
    if problem is None and not await _request_ended(conn, io, log):
        return  # the client left, or its request was refused: answered already
    if problem is not None:
        status, why, extra = problem
        body = f"{status} {why}\n".encode()
        log(conn.respond(status, [*extra, (b"content-type", b"text/plain")], body, io.now()))
        await flush(conn, io, log)
        return
    await WebSocketCycle(conn, io, websocket_scope(scope), log, stopping).run(app)


async def _request_ended(conn: HTTPConnection, io: ConnectionIO, log: Callable[..., None]) -> bool:
    """Read up to the (empty) end of the upgrade request; False if the connection failed."""
    while True:
        event = conn.next_event(io.now())
        if type(event) is EndOfRequest:
            return True
        if type(event) is Body:
            continue  # empty chunks of a body handshake_problem allowed (Content-Length: 0)
        if type(event) is not NeedData:
            await flush(conn, io, log)
            return False
        data = await io.read(conn.deadline, None)
        if data is None:
            conn.check_timeout(io.now())
            continue
        conn.receive_data(data, io.now())


class WebSocketCycle:
    """One WebSocket's call of an ASGI app, from the handshake to the close."""

    def __init__(
        self,
        conn: HTTPConnection,
        io: ConnectionIO,
        scope: dict[str, Any],
        log: Callable[[Exchange], None],
        stopping: asyncio.Event | None,
    ) -> None:
        self.conn = conn
        self.io = io
        self.scope = scope
        self.log = log
        self.stopping = stopping
        self.what = f"WebSocket {scope['path']}"
        self.max_message = conn.settings.max_body
        self._connected = False  # websocket.connect was handed out
        self._accepted = False  # 101 sent
        self._answered = False  # an HTTP answer went out instead (403, 500, the app's own)
        self._denial: tuple[int, Headers] | None = None
        self._denial_body: list[bytes] = []
        self._ws = Connection(ConnectionType.SERVER)
        self._messages: deque[Message] = deque()
        self._queued = 0  # bytes (characters) of self._messages
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._ended: Message | None = None  # websocket.disconnect, once it is over
        self._close_sent = False
        self._app_done = False
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    async def run(self, app: ASGIApp) -> None:
        failed = False
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # our own send() error, let through: the client has left
        except Exception as e:
            failed = True
            if self._ended is None or not self._accepted:
                report_app_error(f"the app failed on {self.what}:", e)
        # Messages the app left unread never will be: the reader reads on to the close.
        self._app_done = True
        self._messages.clear()
        self._queued = 0
        self._room.set()
        try:
            if self._accepted:
                if not self._close_sent and self._ended is None:
                    await self._close(1011 if failed else 1000, "")
                await self._finish_reading()
            elif not self._answered:
                if not failed:
                    say(f"the app returned without accepting or closing {self.what}")
                headers = [(b"content-type", b"text/plain; charset=utf-8")]
                await self._answer(500, headers, ERROR_BODY)
        finally:
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
            self.conn.upgrade_ended(self.io.now())

    # --- receive --------------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        while not self._messages and self._ended is None:
            if self._answered:  # refused: nothing will ever arrive
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
            self._arrived.clear()
            await self._arrived.wait()
        if self._messages:
            message = self._messages.popleft()
            self._queued -= _size(message)
            self._room.set()
            return message
        return self._ended  # type: ignore[return-value]

    def _deliver(self, message: Message) -> None:
        self._messages.append(message)
        self._queued += _size(message)
        self._arrived.set()

    def _end(self, code: int, reason: str) -> None:
        if self._ended is None:
            self._ended = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._arrived.set()
            self._room.set()

    # --- send -----------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "websocket.send":
            if not self._accepted:
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                await self._write(BytesMessage(data=bytes(data)))
            elif isinstance(text, str):
                await self._write(TextMessage(data=text))
            else:
                raise TypeError("ASGI: websocket.send needs bytes or text")
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            if self._accepted:
                await self._close(int(message.get("code") or 1000), message.get("reason") or "")
            elif not self._answered:
                await self._answer(403, [(b"content-type", b"text/plain")], b"403 Forbidden\n")
        elif kind == "websocket.http.response.start":
            if self._accepted or self._answered or self._denial is not None:
                raise RuntimeError("ASGI: websocket.http.response.start after the handshake")
            self._denial = (int(message["status"]), app_headers(message.get("headers", ())))
        elif kind == "websocket.http.response.body":
            if self._denial is None:
                raise RuntimeError("ASGI: websocket.http.response.body before its start")
            self._denial_body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                status, headers = self._denial
                await self._answer(status, headers, b"".join(self._denial_body))
        else:
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} in a websocket scope")

    async def _accept(self, message: Message) -> None:
        if self._accepted or self._answered:
            raise RuntimeError("ASGI: websocket.accept after the handshake was answered")
        key = next(v.strip() for n, v in self.scope["headers"] if n == b"sec-websocket-key")
        headers: Headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(key)),
        ]
        if (chosen := message.get("subprotocol")) is not None:
            headers.append((b"sec-websocket-protocol", str(chosen).encode("latin-1")))
        given = [(n.lower(), v) for n, v in app_headers(message.get("headers", ()))]
        headers += [(n, v) for n, v in given if n not in _HANDSHAKE_OWNED]
        names = {n for n, _ in headers}
        for name, value in ((b"date", http_date()), (b"server", SERVER)):
            if name not in names:
                headers.append((name, value))
        exchange, after = self.conn.switch_protocols(headers, self.io.now())  # ResponseError
        self._accepted = True
        self.log(exchange)
        await flush(self.conn, self.io)
        self._reader = asyncio.get_running_loop().create_task(self._read(after))

    async def _answer(self, status: int, headers: Headers, body: bytes) -> None:
        """An HTTP response instead of the WebSocket."""
        self._answered = True
        self._arrived.set()
        try:
            self.log(self.conn.respond(status, headers, body, self.io.now()))
        except ResponseError as e:
            say(f"the app's answer to {self.what} breaks HTTP ({e}); sending 500")
            self.log(self.conn.respond(500, [], ERROR_BODY, self.io.now()))
        await flush(self.conn, self.io, self.log)

    async def _write(self, event: Any) -> None:
        async with self._write_lock:
            if self._ended is not None or self._ws.state not in _OPEN:
                raise ClientDisconnected(f"the {self.what} is closed")
            try:
                data = self._ws.send(event)
            except LocalProtocolError as e:
                raise ClientDisconnected(f"the {self.what} is closed: {e}") from None
            try:
                await self.io.write(data)
            except ClientDisconnected:
                self._end(1006, "")
                raise

    async def _close(self, code: int, reason: str) -> None:
        """Send our close frame (once); the reader waits for the client's."""
        if self._close_sent or self._ws.state not in _OPEN:
            return
        self._close_sent = True
        try:
            await self._write_control(CloseConnection(code=code, reason=reason))
        except ClientDisconnected:
            self._end(1006, "")

    async def _finish_reading(self) -> None:
        reader = self._reader
        if reader is None or reader.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(reader), CLOSE_WAIT + 1.0)
        except TimeoutError:
            reader.cancel()

    # --- the reader -----------------------------------------------------------------------

    async def _read(self, data: bytes | None) -> None:
        try:
            await self._read_frames(data)
        except ClientDisconnected:
            self._end(1006, "")
        finally:
            self._end(1006, "")  # whatever ended the reading, receive() must not wait on

    async def _read_frames(self, data: bytes | None) -> None:
        ws, io = self._ws, self.io
        parts = bytearray()  # a fragmented message so far (text as UTF-8), see _received
        text: bool | None = None  # the kind of that message, once its first fragment came
        size = 0
        announced = FrameSizes()  # the message size the frame headers announce
        closing_since: float | None = None
        ping = self.conn.settings.ws_ping
        heard = io.now()  # when the client last sent anything
        pinged: float | None = None  # when our keepalive ping went out, while unanswered
        while True:
            if data and announced.feed(data) > self.max_message:
                # Refused at the frame header: no need to hear the rest (nor its close).
                self._end(1009, "message too big")
                await self._close(1009, f"messages are at most {self.max_message} bytes")
                return
            if data is None or data:
                ws.receive_data(data)  # None: the client is gone (1006)
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    size += len(event.data)
                    if size > self.max_message:
                        self._end(1009, "message too big")
                        await self._close(1009, f"messages are at most {self.max_message} bytes")
                        parts, text, size = bytearray(), None, 0
                        continue
                    if text is None:
                        text = isinstance(event, TextMessage)
                    if not event.message_finished:
                        parts += _encoded(event.data)
                        continue
                    if not self._close_sent and not self._app_done:
                        self._deliver(_received(parts, event.data, text))
                    parts, text, size = bytearray(), None, 0
                elif isinstance(event, Ping):
                    if ws.state is ConnectionState.OPEN and not self._close_sent:
                        await self._write_control(event.response())
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._write_control(event.response())  # echo: now closed
                    elif ws.state is ConnectionState.OPEN:  # a protocol error (wsproto's code)
                        await self._close(event.code, event.reason or "")
                    self._end(event.code, event.reason or "")
                    return
            if ws.state is ConnectionState.CLOSED:
                return
            while self._full():
                await self._wait_for_room()  # the app reads slower than the client sends
            if self._close_sent and closing_since is None:
                closing_since = io.now()
            if closing_since is not None:
                deadline = closing_since + CLOSE_WAIT
            else:
                deadline = (heard if pinged is None else pinged) + ping
            stopping = self.stopping
            wake = stopping if stopping is not None and not self._close_sent else None
            data = await io.read(deadline, wake)
            if data is None:
                data = b""  # nothing to feed: the timers' turn
                if wake is not None and wake.is_set():
                    self._end(1001, "the server is stopping")
                    await self._close(1001, "the server is stopping")
                elif io.now() < deadline:
                    continue  # woken a hair early
                elif closing_since is not None:
                    return  # no answer to our close: give up on it
                elif pinged is None:  # silent for `ping` seconds: is the client still there?
                    pinged = io.now()
                    await self._write_control(Ping(payload=b"summon"))
                else:  # no answer to the ping either: gone without a FIN (a cable, a NAT)
                    self._end(1006, "")
                    await self._close(1011, "keepalive ping timeout")
                    return
                continue
            heard, pinged = io.now(), None
            if not data:
                data = None

    def _full(self) -> bool:
        """Whether the reader must wait for the app to take messages first."""
        return (
            (len(self._messages) >= QUEUE_MESSAGES or self._queued >= self.max_message)
            and self._ended is None
            and not self._app_done
            and not (self.stopping is not None and self.stopping.is_set())
        )

    async def _wait_for_room(self) -> None:
        """Until the app takes a message, or returns, or the server stops (then the reader
        reads on, to say 1001 and hear the client's close)."""
        self._room.clear()
        if self.stopping is None:
            await self._room.wait()
            return
        waits = {
            asyncio.ensure_future(self._room.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    async def _write_control(self, event: Any) -> None:
        async with self._write_lock:
            try:
                await self.io.write(self._ws.send(event))
            except LocalProtocolError:
                pass


def _size(message: Message) -> int:
    data = message.get("text")
    return len(data if data is not None else message.get("bytes", b""))


def _encoded(data: str | bytes | bytearray) -> bytes | bytearray:
    return data.encode() if isinstance(data, str) else data


def _received(parts: bytearray, last: str | bytes | bytearray, text: bool) -> Message:
    """The message whose earlier fragments are `parts` and whose last is `last`.

    Fragments are gathered in one bytearray, not a list of wsproto's pieces: a client may
    send a message as a million one-byte (or empty) fragments, and a list would hold a
    Python object of some 40 to 50 bytes for each (two such messages of 1 MiB filled a
    128M sandbox). wsproto decodes text incrementally, so each text piece is whole
    characters and encodes back exactly."""
    if not parts:  # one frame, the usual case: as wsproto gave it
        key = "text" if text else "bytes"
        return {"type": "websocket.receive", key: last if text else bytes(_encoded(last))}
    parts += _encoded(last)
    if text:
        return {"type": "websocket.receive", "text": parts.decode()}
    return {"type": "websocket.receive", "bytes": bytes(parts)}
