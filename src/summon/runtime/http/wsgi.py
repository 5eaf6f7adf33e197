"""The WSGI bridge (PEP 3333): a whole request becomes an environ, the app's answer a response.

`build_environ` makes the environ of a request whose body has been read whole (so
wsgi.input is an in-memory stream and CONTENT_LENGTH is always right, chunked or not).
`run_wsgi` calls the app and hands its response to a sink (ResponseSink: start, body, end,
abort), which the threaded server and the synchronous exchange path each implement. Both are
blocking and use no threads themselves, so they run unchanged where there are none.

What run_wsgi guarantees, after PEP 3333:
- the status and headers are sent with the first non-empty body chunk, or at the end; until
  then start_response may be called again with exc_info (to replace them by an error page);
  with exc_info once they are sent, the exception is re-raised into the app;
- write() (the legacy imperative API) sends at once, head first;
- body chunks must be bytes (a str chunk is an app error);
- the iterable's close() is called whatever happens, also when the client is gone;
- an exception before anything was sent becomes a 500 and is printed with its traceback;
  after, the response is cut short (the connection closes) and it is printed too.
"""

from __future__ import annotations

import sys
from io import BytesIO

from summon.runtime.http.log import report_app_error
from summon.runtime.http.protocol import (
    ClientDisconnected,
    ResponseError,
    response_head,
    unquote,
)
from summon.runtime.http.rules import check_length, declared_length

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType
    from typing import Any

    from summon.runtime.http.protocol import Exchange, Headers, HTTPConnection, Request

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
    WSGIApp = Callable[..., Iterable[bytes]]

ERROR_BODY = b"500 Internal Server Error\n"


class ResponseSink:
    """Where a bridge sends a response; each call may block until the bytes are handed on.

    body() raises ClientDisconnected (an OSError) once the client is gone. start() raises
    ResponseError, with nothing sent, for a head that is not valid HTTP.
    """

    def start(self, status: int, reason: bytes, headers: Headers) -> None:
        raise NotImplementedError

    def body(self, data: bytes) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Give up on a response under way: the connection closes, the client sees it cut."""
        raise NotImplementedError


class ConnectionSink(ResponseSink):
    """A ResponseSink over an HTTPConnection on this thread: the bytes to send pile up in
    `out`. The head is checked at start() and goes out with the first body bytes (or the
    end); `log` gets the Exchange of each response, for the access log."""

    def __init__(
        self, conn: HTTPConnection, clock: Callable[[], float], log: Callable[[Exchange], None]
    ) -> None:
        self.conn = conn
        self.clock = clock
        self.log = log
        self.head: tuple[int, bytes, Headers] | None = None
        self.out: list[bytes] = []

    def start(self, status: int, reason: bytes, headers: Headers) -> None:
        response_head(status, headers, reason)  # ResponseError now, with nothing sent
        self.head = (status, reason, headers)

    def step(self, data: bytes, last: bool) -> bytes:
        """Send the head if due, then `data`, then the end if `last`; the bytes to write."""
        conn, now = self.conn, self.clock()
        if self.head is not None:
            status, reason, headers = self.head
            self.head = None
            conn.start_response(status, headers, now, reason)
        conn.send_body(data)
        if last:
            self.log(conn.end_response(now))
        return conn.data_to_send()

    def stop(self) -> None:
        """Abort the response under way (logging what was sent of it)."""
        exchange = self.conn.abort(self.clock())
        if exchange is not None:
            self.log(exchange)

    def body(self, data: bytes) -> None:
        self.out.append(self.step(data, False))

    def end(self) -> None:
        self.out.append(self.step(b"", True))

    def abort(self) -> None:
        self.stop()


def build_environ(
    request: Request,
    body: bytes,
    *,
    client: tuple[str, int] | None,
    server: tuple[str, int],
    multithread: bool,
) -> dict[str, Any]:
    """The PEP 3333 environ of `request` with its whole `body`.

    Strings are "bytes as latin-1" as PEP 3333 says, PATH_INFO percent-decoded. Headers
    become HTTP_* (repeats joined with ",", Cookie with "; "); a header whose name holds
    "_" is dropped, as it would read the same as one with "-" (a way to smuggle e.g.
    X-Forwarded-For past a proxy that checks only the "-" spelling).
    """
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(request.path).decode("latin-1"),
        "QUERY_STRING": request.query.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("latin-1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # The stream ends where the body does (a server extension Werkzeug and others read).
        "wsgi.input_terminated": True,
    }
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    framed = False
    for name, value in request.headers:
        if name == b"content-length" or name == b"transfer-encoding":
            framed = True
            continue
        if b"_" in name:
            continue
        text = value.decode("latin-1")
        if name == b"content-type":
            environ["CONTENT_TYPE"] = text
            continue
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if key in environ:
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        environ[key] = text
    if framed or body:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class _Response:
    """start_response and write for one call of the app."""

    def __init__(self, sink: ResponseSink, head_request: bool = False) -> None:
        self.sink = sink
        self.head_request = head_request  # HEAD: the body is the GET's, left out
        self.head: tuple[int, bytes, Headers] | None = None  # given, not yet sent
        self.head_sent = False
        self.done = False  # the response has ended: nothing more can be said

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.head is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        self.head = _parse_head(status, headers)
        return self.write

    def write(self, data: bytes) -> None:
        if self.head is None:
            raise RuntimeError("write() called before start_response")
        if not isinstance(data, bytes):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        self.send_head()
        if data:
            self.sink.body(data)

    def send_head(self, length: int | None = None) -> None:
        if self.head_sent:
            return
        if self.head is None:
            raise RuntimeError("the app returned without calling start_response")
        status, reason, headers = self.head
        if length is not None:
            # The whole body is known: its Content-Length must be it (else a clean 500).
            check_length(status, headers, length, self.head_request)
            if declared_length(headers) is None:
                headers = [*headers, (b"content-length", b"%d" % length)]
        self.sink.start(status, reason, headers)
        self.head_sent = True


def _parse_head(status: object, headers: object) -> tuple[int, bytes, Headers]:
    """PEP 3333's status string and header list, checked, as bytes for the wire."""
    if not isinstance(status, str):
        raise TypeError(f"start_response: status must be a str such as '200 OK', not {status!r}")
    code, _, reason = status.partition(" ")
    if not (len(code) == 3 and code.isascii() and code.isdigit()):
        raise ValueError(f"start_response: status {status!r} does not start with 3 digits")
    if not isinstance(headers, list):
        raise TypeError(f"start_response: headers must be a list, not {type(headers).__name__}")
    out: Headers = []
    for item in headers:
        if not (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ):
            raise TypeError(f"start_response: header {item!r} is not a (str, str) tuple")
        try:
            # Whitespace around a value is not part of it (RFC 9110 5.5): Django sends each
            # cookie as " name=value; Path=/", which h11 would refuse.
            out.append((item[0].encode("latin-1"), item[1].strip(" \t").encode("latin-1")))
        except UnicodeEncodeError:
            raise ValueError(f"start_response: header {item!r} is not latin-1") from None
    return int(code), reason.encode("latin-1", "replace"), out


def run_wsgi(app: WSGIApp, environ: dict[str, Any], sink: ResponseSink, what: str) -> None:
    """Call the WSGI `app` with `environ` and send its response into `sink`.

    Never raises for what the app does: its exceptions become a 500 (or a cut response) and
    a traceback on stderr naming `what` (e.g. "GET /path"). A client gone mid-response
    (ClientDisconnected) ends it quietly.
    """
    response = _Response(sink, environ.get("REQUEST_METHOD") == "HEAD")
    iterable: Iterable[bytes] | None = None
    try:
        try:
            iterable = app(environ, response.start_response)
            length = None
            if isinstance(iterable, (list, tuple)) and len(iterable) <= 1:
                # One chunk or none: its length is known, so no chunked framing is needed.
                first = iterable[0] if iterable else b""
                if isinstance(first, bytes):
                    length = len(first)
            for chunk in iterable:
                if not isinstance(chunk, bytes):
                    raise TypeError(
                        f"the app's response body holds a {type(chunk).__name__}, not bytes"
                    )
                if chunk:
                    response.send_head(length)
                    sink.body(chunk)
            response.send_head(0)  # nothing was sent: the body is empty
            sink.end()
            response.done = True
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
    except ClientDisconnected:
        if not response.done:
            sink.abort()
    except BaseException as e:
        if not isinstance(e, Exception):
            raise  # KeyboardInterrupt, SystemExit: not the request's business
        _fail(response, sink, e, what)


def _fail(response: _Response, sink: ResponseSink, exc: Exception, what: str) -> None:
    report_app_error(f"the app failed on {what}:", exc)
    if response.done:  # close() failed after a complete response: the client has it all
        return
    if response.head_sent:
        sink.abort()
        return
    try:
        sink.start(500, b"Internal Server Error", _error_headers())
        sink.body(ERROR_BODY)
        sink.end()
    except (ClientDisconnected, ResponseError):
        sink.abort()


def _error_headers() -> Headers:
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(ERROR_BODY)),
    ]
