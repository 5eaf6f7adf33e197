"""One HTTP/1.1 server connection, sans-IO: bytes and the time in; request events and bytes out.

h11 does the HTTP/1.1 framing (request parsing, chunked bodies both ways, keep-alive rules,
100-continue bookkeeping). This object adds what a server needs above it, without doing any
I/O itself, so the asyncio server, the synchronous exchange path and the tests all drive it
the same way:

- limits: a request head larger than Settings.max_header gets 431, a body larger than
  Settings.max_body gets 413 (at once when Content-Length says so, before any 100 Continue,
  and when the chunk sizes declared add up to more: chunked.py);
- timers: each state of state.py has at most one deadline (`deadline`), checked with
  `check_timeout(now)`: idle keep-alive (closed silently), a slow head or a silent body (408);
- malformed requests get 400 (505 for a version other than HTTP/1.x), and the connection
  closes: what follows on the wire cannot be trusted;
- requests refused beyond h11's framing, and response heads checked: rules.py;
- responses: Date and Server added, Transfer-Encoding left to h11, bodies of HEAD, 204 and
  304 responses dropped, `Connection: close` when the server stops or the request body was
  left unread;
- an Exchange record per response, for the access log.

Driving it: feed `receive_data(bytes, now)` (b"" at end of stream), pull `next_event(now)`
until NEED_DATA, answer with start_response / send_body / end_response, and send what
`data_to_send()` returns after every call. Once `closed`, send the last bytes and close the
socket (after a lingering read if `linger` is set: the client may still be sending a body,
and closing with unread bytes would reset the connection under the response).
"""

from __future__ import annotations

import h11

from summon.runtime.http import state as st
from summon.runtime.http.chunked import ChunkSizes
from summon.runtime.http.notice import say_body_limit
from summon.runtime.http.rules import (
    REASONS,
    SERVER,
    ResponseError,
    absolute_authority,
    http_date,
    request_problem,
    response_head,
    unquote,
)

__all__ = [
    "REASONS",
    "SERVER",
    "ClientDisconnected",
    "HTTPConnection",
    "ResponseError",
    "http_date",
    "response_head",
    "unquote",
]

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.runtime.http.settings import Settings

    Headers = list[tuple[bytes, bytes]]


class ClientDisconnected(OSError):
    """The client is gone, so the response cannot be sent (what ASGI 2.4's send() raises)."""


class Request:
    """A request head. Header names are lowercase bytes, values as received."""

    __slots__ = ("headers", "http_version", "method", "target")

    def __init__(
        self, method: bytes, target: bytes, headers: Headers, http_version: bytes = b"1.1"
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version

    @property
    def path(self) -> bytes:
        """The target's path: before any '?', without scheme and host if in absolute form."""
        target = self.target.partition(b"?")[0]
        if not target.startswith(b"/") and b"://" in target:
            # absolute-form (RFC 9112 3.2.2), as proxies send it: the path starts after host
            rest = target.partition(b"://")[2]
            target = b"/" + rest.partition(b"/")[2]
        return target

    @property
    def query(self) -> bytes:
        """What follows the first '?' of the target, still percent-encoded."""
        return self.target.partition(b"?")[2]

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r})"


class Body:
    """Bytes of the request body (chunked framing already removed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Body({self.data!r})"


class EndOfRequest:
    """The request body is complete."""

    def __repr__(self) -> str:
        return "EndOfRequest()"


class Disconnected:
    """The client is gone ("eof"), timed out ("timeout"), or the connection is closed."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Disconnected({self.reason!r})"


class Rejected:
    """The server answered a bad request itself (400, 408, 413, 431, 505); closing follows.

    `exchange` is None when a response was already under way, so none could be sent.
    """

    __slots__ = ("exchange", "status", "why")

    def __init__(self, status: int, why: str, exchange: Exchange | None) -> None:
        self.status = status
        self.why = why
        self.exchange = exchange

    def __repr__(self) -> str:
        return f"Rejected({self.status}, {self.why!r})"


class NeedData:
    """No event until more bytes arrive (or, once the request is in, until the client
    leaves: reading then only serves to notice that)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

if TYPE_CHECKING:
    Event = Request | Body | EndOfRequest | Disconnected | Rejected | NeedData


class Exchange:
    """One response, for the access log: what was asked, the answer, its size and timing."""

    __slots__ = ("ended", "http_version", "method", "sent", "started", "status", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        status: int,
        sent: int,
        started: float,
        ended: float,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.status = status
        self.sent = sent  # body bytes sent
        self.started = started  # when the request's first byte came (monotonic seconds)
        self.ended = ended

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def __repr__(self) -> str:
        return f"Exchange({self.method!r} {self.target!r} -> {self.status}, {self.sent} B)"


class HTTPConnection:
    """The server side of one HTTP/1.1 connection (see the module docstring)."""

    def __init__(self, settings: Settings, now: float = 0.0) -> None:
        self.settings = settings
        self.state = st.IDLE
        self.linger = False  # close only after reading what the client may still send
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_header)
        self._out: list[bytes] = []
        self._since = now  # when the running timer started
        self._request: Request | None = None
        self._started = now
        self._received = 0  # body bytes of this request
        self._chunks: ChunkSizes | None = None  # the sizes a chunked body declares
        self._status = 0
        self._sent = 0
        self._no_body = False  # HEAD, 204, 304: body bytes are dropped
        self._stopping = False
        self._eof = False
        self._held = 0  # bytes fed while a request is answered: the next request, pipelined
        self._early: list[Body | EndOfRequest] = []  # taken from h11 before they were asked

    # --- state ------------------------------------------------------------------------------

    def _go(self, event: str, now: float) -> None:
        self.state = st.transition(self.state, event)
        self._since = now
        if event == st.DATA:  # a request begins: the access log times it from here
            self._started = now

    @property
    def closed(self) -> bool:
        """Nothing more will be read or answered: send data_to_send(), then close."""
        return self.state == st.CLOSED

    @property
    def stopping(self) -> bool:
        """shutdown() was called: this connection closes after the response under way."""
        return self._stopping

    @property
    def client_closed(self) -> bool:
        """The client has closed its side of the connection (or it was reset)."""
        return self._eof

    @property
    def response_started(self) -> bool:
        return self.state in (st.SEND, st.SEND_BODY)

    @property
    def wants_data(self) -> bool:
        """Whether reading the socket may help: false once a pipelined request is buffered
        up to the head limit while the current one is answered (the client must wait)."""
        if self.state == st.CLOSED or self._eof:
            return False
        return self.state not in (st.WAIT, st.SEND) or self._held < self.settings.max_header

    @property
    def deadline(self) -> float | None:
        """When the running timer runs out (same clock as `now`), or None if none runs."""
        state = self.state
        s = self.settings
        if state == st.IDLE:
            return self._since + s.keepalive_timeout
        if state == st.HEAD:
            return self._since + s.head_timeout
        if state == st.BODY or state == st.SEND_BODY:
            return self._since + s.read_timeout
        return None

    # --- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the client; b"" when it has closed its side."""
        if self.state == st.CLOSED or self._eof:
            return
        if not data:
            self._eof = True
            self._h11.receive_data(b"")
            return
        state = self.state
        if state == st.IDLE and not (data := data.lstrip(b"\r\n")):
            return  # only empty lines before a request: ignored (RFC 9112 2.2)
        self._h11.receive_data(data)
        if self._chunks is not None and not self._chunks.done:
            self._chunks.feed(data)
        if state == st.IDLE:
            self._go(st.DATA, now)
        elif state == st.BODY or state == st.SEND_BODY:
            self._since = now  # the read timer measures silence
        elif state == st.WAIT or state == st.SEND:
            self._held += len(data)

    def next_event(self, now: float) -> Event:
        """The next thing the client did, or NEED_DATA."""
        if self.state == st.CLOSED:
            return Disconnected("closed")
        if self._early:
            return self._early.pop(0)
        if self.state in st.READING and self._over_limit():
            return self._reject(413, f"body over {self.settings.max_body} bytes", now)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as e:
            if self._eof:  # the client left mid-request: nobody to answer
                return self._client_left(now)
            status, why = e.error_status_hint, str(e)
            limit = self.settings.max_header
            if status == 431 and b"\n" not in self._h11.trailing_data[0][:limit]:
                # Not the headers: the request line alone is over the limit (RFC 9110 15.5.15).
                status, why = 414, f"request line over {limit} bytes"
            return self._reject(status, why, now)
        kind = type(event)
        if kind is h11.Data:
            data = bytes(event.data)  # type: ignore[union-attr]
            self._received += len(data)
            if self._received > self.settings.max_body:
                return self._reject(413, f"body over {self.settings.max_body} bytes", now)
            return Body(data)
        if kind is h11.Request:
            return self._got_head(event, now)  # type: ignore[arg-type]
        if kind is h11.EndOfMessage:
            self._go(st.GOT_END, now)
            return EndOfRequest()
        if kind is h11.ConnectionClosed:
            return self._client_left(now)
        return NEED_DATA  # NEED_DATA, or PAUSED: the next request waits for this one's end

    def _got_head(self, event: h11.Request, now: float) -> Event:
        request = Request(event.method, event.target, list(event.headers), event.http_version)
        self._request = request  # also for the access log of a refusal
        self._received = 0
        self._chunks = None
        if not event.http_version.startswith(b"1."):
            return self._reject(505, f"HTTP/{event.http_version.decode()} is not served", now)
        size = len(event.method) + len(event.target) + 12  # + " HTTP/1.1\r\n"
        if size > self.settings.max_header:
            return self._reject(414, f"request line over {self.settings.max_header} bytes", now)
        size += sum(len(name) + len(value) + 4 for name, value in request.headers)
        if size > self.settings.max_header:
            # h11's own bound holds only while the head is incomplete.
            return self._reject(431, f"request head over {self.settings.max_header} bytes", now)
        problem = request_problem(event.method, event.target, request.headers, event.http_version)
        if problem is not None:
            return self._reject(*problem, now)
        for name, value in request.headers:
            if name == b"content-length" and int(value) > self.settings.max_body:
                return self._reject(413, f"Content-Length over {self.settings.max_body}", now)
            if name == b"transfer-encoding":  # chunked (rules.py): follow the sizes declared
                # Those that came with the head are counted now, and refused by the next
                # call (_over_limit) as those that come later are: the request first, so
                # that however the bytes are cut the events are the same.
                self._chunks = ChunkSizes()
                self._chunks.feed(self._h11.trailing_data[0])
        authority = absolute_authority(event.target)
        if authority is not None:  # RFC 9112 3.2.2: the target's authority is the host
            kept = [(n, v) for n, v in request.headers if n != b"host"]
            request.headers = [*kept, (b"host", authority)]
        self._go(st.GOT_HEAD, now)
        return request

    def _over_limit(self) -> bool:
        """The body is (or its chunk sizes say it will be) larger than max_body."""
        chunks = self._chunks
        limit = self.settings.max_body
        return self._received > limit or (chunks is not None and chunks.declared > limit)

    def _client_left(self, now: float) -> Disconnected:
        self._eof = True
        if self.state != st.CLOSED:
            self._go(st.EOF, now)
        return Disconnected("eof")

    # --- output ------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to send the client now (empty if none)."""
        return b"".join(self.pieces_to_send())

    def pieces_to_send(self) -> list[bytes]:
        """data_to_send() in pieces, joined unless over 64 KiB (a copy of a large body)."""
        out = [piece for piece in self._out if piece]
        self._out = []
        if len(out) > 1 and sum(map(len, out)) <= 65536:
            return [b"".join(out)]
        return out

    def send_continue(self) -> None:
        """Send "100 Continue" if the client waits for it before sending its body."""
        if self._h11.they_are_waiting_for_100_continue and self.state == st.BODY:
            self._out.append(
                self._h11.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )

    def start_response(
        self, status: int, headers: Headers, now: float, reason: bytes = b""
    ) -> None:
        """Send the response head. ResponseError (nothing sent) if it breaks HTTP."""
        if self.state not in (st.BODY, st.WAIT):
            raise ResponseError(f"a response cannot start now (connection state {self.state})")
        if self.state == st.BODY:
            self._take_arrived_body(now)
        close = self._stopping or self.state == st.BODY
        response = response_head(status, headers, reason, close)
        self._out.append(self._h11.send(response))
        request = self._request
        self._no_body = status in (204, 304) or (request is not None and request.method == b"HEAD")
        self._status = status
        self._sent = 0
        self._go(st.START, now)

    def switch_protocols(self, headers: Headers, now: float) -> tuple[Exchange, bytes]:
        """Answer "101 Switching Protocols" to a request that asked to upgrade, once its
        body is all in (state WAIT). Return the exchange (for the access log) and the bytes
        the client sent after its request: they belong to the new protocol. From here the
        caller reads and writes the transport; end with upgrade_ended()."""
        if self.state != st.WAIT:
            raise ResponseError(f"cannot switch protocols now (connection state {self.state})")
        informational = h11.InformationalResponse(
            status_code=101, headers=headers, reason=b"Switching Protocols"
        )
        try:
            self._out.append(self._h11.send(informational))
        except h11.LocalProtocolError as e:
            raise ResponseError(f"cannot switch protocols: {e}") from None
        self._status, self._sent = 101, 0
        exchange = self._exchange(now)
        self._go(st.SWITCH, now)
        data, _ = self._h11.trailing_data
        return exchange, bytes(data)

    def upgrade_ended(self, now: float) -> None:
        """The protocol switched to has finished with the connection: close it."""
        if self.state == st.UPGRADED:
            self._go(st.END_CLOSE, now)

    def _take_arrived_body(self, now: float) -> None:
        """Take from h11 the rest of the request body that has already arrived, for the
        app to read later. An app may answer without reading the body (a GET, whose empty
        body ends at once, most of all); if the body is all in, the connection can be kept.
        """
        while self.state == st.BODY:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                return  # next_event will report it; the response says close
            if type(event) is h11.Data:
                data = bytes(event.data)
                self._early.append(Body(data))
                self._received += len(data)
                if self._received > self.settings.max_body:
                    return  # next_event refuses the body once these are handed out
            elif type(event) is h11.EndOfMessage:
                self._early.append(EndOfRequest())
                self._go(st.GOT_END, now)
            else:
                return  # NEED_DATA: the rest is still on its way

    def send_body(self, data: bytes) -> None:
        """Send bytes of the response body. ResponseError if more than its Content-Length."""
        if not self.response_started:
            raise ResponseError(f"no response under way (connection state {self.state})")
        if self._no_body or not data:
            return
        try:
            self._out.append(self._h11.send(h11.Data(data=data)))
        except h11.LocalProtocolError as e:
            self._go(st.ABORT, self._since)
            raise ResponseError(f"the response body does not fit its head: {e}") from None
        self._sent += len(data)

    def end_response(self, now: float) -> Exchange:
        """End the response; keep the connection for the next request or close it.

        ResponseError (the connection then closes) if the body fell short of its
        Content-Length: the client would wait forever for the rest.
        """
        if not self.response_started:
            raise ResponseError(f"no response under way (connection state {self.state})")
        exchange = self._exchange(now)
        try:
            self._out.append(self._h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as e:
            self._go(st.ABORT, now)
            raise ResponseError(f"the response body does not fit its head: {e}") from None
        conn = self._h11
        self._early.clear()  # body events the app did not ask for: that request is over
        if self.state == st.SEND_BODY:
            self.linger = True
            self._go(st.END_CLOSE, now)
        elif (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not self._stopping
            # A client that half-closed after pipelining (`printf ... | nc -N`) still
            # reads: the requests it sent before its FIN are answered, then it closes.
            and (not self._eof or conn.trailing_data[0])
        ):
            conn.start_next_cycle()
            conn = self._skip_empty_lines(conn)
            self._request = None
            self._go(st.END_KEEP, now)
            self._held = 0
            if conn.trailing_data[0]:  # a pipelined request waits: its head timer starts now
                self._go(st.DATA, now)
        else:
            self._go(st.END_CLOSE, now)
        return exchange

    def _skip_empty_lines(self, conn: h11.Connection) -> h11.Connection:
        """Empty lines before a request are ignored (RFC 9112 2.2; h11 refuses them, and
        cannot drop buffered bytes: a fresh h11 connection takes what follows)."""
        data, closed = conn.trailing_data
        if data[:1] not in (b"\r", b"\n"):
            return conn
        fresh = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header)
        if rest := bytes(data).lstrip(b"\r\n"):
            fresh.receive_data(rest)
        if closed:
            fresh.receive_data(b"")
        self._h11 = fresh
        return fresh

    def respond(
        self, status: int, headers: Headers, body: bytes, now: float, reason: bytes = b""
    ) -> Exchange:
        """A whole response with a known body: start, body, end."""
        headers = [*headers, (b"content-length", b"%d" % len(body))]
        self.start_response(status, headers, now, reason)
        self.send_body(body)
        return self.end_response(now)

    def abort(self, now: float) -> Exchange | None:
        """The response cannot be completed: close without saying more. The exchange, for
        the access log, if a response had started (its status and the bytes sent)."""
        if self.state == st.CLOSED:
            return None
        exchange = self._exchange(now) if self.response_started else None
        self._go(st.ABORT, now)
        return exchange

    def shutdown(self, now: float) -> None:
        """The server is stopping: close now if idle, else after the response under way."""
        self._stopping = True
        if self.state != st.CLOSED:
            self._go(st.SHUTDOWN, now)

    def check_timeout(self, now: float) -> Rejected | Disconnected | None:
        """Act on the running timer if it has run out; None if it has not."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        state = self.state
        if state == st.HEAD or state == st.BODY:
            return self._reject(408, f"no complete request within the {state} timer", now)
        self._go(st.TIMEOUT, now)
        return Disconnected("timeout")

    # --- refusals -----------------------------------------------------------------------

    def _reject(self, status: int, why: str, now: float) -> Rejected:
        """Answer with an error status and close; only close if a response is under way."""
        exchange = None
        event = st.TIMEOUT if status == 408 else st.REJECT
        if status == 413:
            say_body_limit(self.settings.max_body)
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = b"%d %s\n" % (status, REASONS.get(status, b"Error"))
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
                (b"date", http_date()),
                (b"server", SERVER),
            ]
            reason = REASONS.get(status, b"")
            response = h11.Response(status_code=status, headers=headers, reason=reason)
            self._out.append(self._h11.send(response))
            head = self._request is not None and self._request.method == b"HEAD"
            if not head:  # a HEAD answer carries the length but never the body
                self._out.append(self._h11.send(h11.Data(data=body)))
            self._out.append(self._h11.send(h11.EndOfMessage()))
            self._status, self._sent = status, 0 if head else len(body)
            exchange = self._exchange(now)
        # The client may still be sending: read on a little before closing, else the kernel
        # resets the connection and the client may never see the answer.
        self.linger = not self._eof
        self._go(event, now)
        return Rejected(status, why, exchange)

    def _exchange(self, now: float) -> Exchange:
        request = self._request
        if request is None:  # refused before a request head could be read
            return Exchange(b"-", b"-", b"1.1", self._status, self._sent, self._started, now)
        return Exchange(
            request.method,
            request.target,
            request.http_version,
            self._status,
            self._sent,
            self._started,
            now,
        )
