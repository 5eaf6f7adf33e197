"""A static-file HTTP/1.1 server on h11: serves the baked-in folder `static` on port 80.

Three layers, each testable alone:
- Site: which status, headers and body answer a method and a target (no HTTP framing);
- HTTPConnection: one connection's HTTP/1.1, sans-IO: bytes in, bytes out (h11 underneath);
- serve_connection / main: the asyncio part, moving bytes between a socket and the above.
"""

from __future__ import annotations

import asyncio
import os
import time

import h11

from summon.devices import KV_RO, Console, Stack

PORT = 80
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; more is refused with 431
MAX_BODY_BYTES = 64 * 1024  # a request body (a static site reads none); more is refused with 413
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may stay silent before it is closed
READ_SIZE = 64 * 1024
SERVER = b"summon-http"

CONTENT_TYPES = {
    "html": b"text/html; charset=utf-8",
    "htm": b"text/html; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "json": b"application/json",
    "txt": b"text/plain; charset=utf-8",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "jpg": b"image/jpeg",
    "jpeg": b"image/jpeg",
    "gif": b"image/gif",
    "ico": b"image/vnd.microsoft.icon",
    "webp": b"image/webp",
    "woff2": b"font/woff2",
    "wasm": b"application/wasm",
}
DEFAULT_CONTENT_TYPE = b"application/octet-stream"

REASONS = {
    200: b"OK",
    301: b"Moved Permanently",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}

Headers = list[tuple[bytes, bytes]]


def content_type(key: str) -> bytes:
    """The Content-Type of a file, from its name's suffix."""
    _, dot, suffix = key.rpartition("/")[2].rpartition(".")
    return CONTENT_TYPES.get(suffix.lower(), DEFAULT_CONTENT_TYPE) if dot else DEFAULT_CONTENT_TYPE


def percent_decode(raw: bytes) -> bytes:
    """Undo %XX escapes in a URL path; ValueError if an escape is malformed."""
    first, *rest = raw.split(b"%")
    out = [first]
    for part in rest:
        pair = part[:2]
        if len(pair) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
            raise ValueError(f"malformed percent-escape in {raw!r}")
        out.append(bytes((int(pair, 16),)) + part[2:])
    return b"".join(out)


class Site:
    """The files of a KV_RO as a web site: "/" is index.html, "/a/" is a/index.html."""

    def __init__(self, files: KV_RO) -> None:
        self.files = files

    def respond(self, method: bytes, target: bytes) -> tuple[int, Headers, bytes]:
        """(status, headers, body) for a GET or HEAD of `target`; the body even for HEAD."""
        if method not in (b"GET", b"HEAD"):
            return error(405, [(b"Allow", b"GET, HEAD")])
        raw = target.partition(b"?")[0].partition(b"#")[0]
        if not raw.startswith(b"/"):
            return error(400)
        try:
            path = percent_decode(raw).decode("utf-8")
        except ValueError:  # UnicodeDecodeError is one too
            return error(400)
        key = path[1:] + "index.html" if path.endswith("/") else path[1:]
        try:
            body = self.files.get(key)
        except KeyError:  # missing, or an invalid key such as one with ".."
            if not path.endswith("/") and self._is_folder(key):
                return 301, [(b"Location", raw + b"/")], b""
            return error(404)
        return 200, [(b"Content-Type", content_type(key))], body

    def _is_folder(self, key: str) -> bool:
        try:
            return self.files.exists(key + "/index.html")
        except KeyError:
            return False


def error(status: int, headers: Headers | None = None) -> tuple[int, Headers, bytes]:
    """A short plain-text error response."""
    body = b"%d %s\n" % (status, REASONS.get(status, b"Error"))
    return status, [*(headers or []), (b"Content-Type", b"text/plain; charset=utf-8")], body


def http_date(now: float | None = None) -> bytes:
    """RFC 9110 IMF-fixdate, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()


class HTTPConnection:
    """The server side of one HTTP/1.1 connection, sans-IO: feed bytes, send what it returns.

    Requests are answered in order (pipelining works); the connection is kept alive unless
    the client or an error says otherwise. `closed` turns true when the socket should close,
    after the returned bytes are sent.
    """

    def __init__(self, site: Site, log: Console | None = None) -> None:
        self.site = site
        self.log = log
        self.closed = False
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._request: h11.Request | None = None
        self._body_size = 0

    @property
    def idle(self) -> bool:
        """No request is under way: closing now interrupts nobody."""
        return self._h11.their_state is h11.IDLE and self._h11.our_state is h11.IDLE

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the client (b"" at end of stream); return the bytes to send it."""
        if self.closed:
            return b""
        out: list[bytes] = []
        conn = self._h11
        try:
            conn.receive_data(data)
            while not self.closed:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Request):
                    self._request, self._body_size = event, 0
                    if not event.http_version.startswith(b"1."):
                        out.append(self._refuse(505))
                    elif _header_size(event) > MAX_HEADER_BYTES:
                        # h11's own bound holds only while the header block is incomplete.
                        out.append(self._refuse(431))
                    elif _declared_length(event) > MAX_BODY_BYTES:
                        out.append(self._refuse(413))
                elif isinstance(event, h11.Data):
                    self._body_size += len(event.data)
                    if self._body_size > MAX_BODY_BYTES:
                        out.append(self._refuse(413))
                elif isinstance(event, h11.EndOfMessage):
                    out.append(self._answer())
                    self._request = None
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                    else:
                        self.closed = True
                else:  # ConnectionClosed, or PAUSED after a close or a protocol switch
                    self.closed = True
        except h11.RemoteProtocolError as e:
            out.append(self._refuse(e.error_status_hint))
        return b"".join(out)

    def _answer(self) -> bytes:
        request = self._request
        assert request is not None  # EndOfMessage only ever follows a Request
        status, headers, body = self.site.respond(request.method, request.target)
        return self._send(status, headers, body, head=request.method == b"HEAD")

    def _refuse(self, status: int) -> bytes:
        """An error response, then close: what follows on the wire cannot be trusted."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.closed = True  # a response is already under way; nothing can be said
            return b""
        status, headers, body = error(status)
        out = self._send(status, [*headers, (b"Connection", b"close")], body, head=False)
        self.closed = True
        return out

    def _send(self, status: int, headers: Headers, body: bytes, head: bool) -> bytes:
        headers = [
            *headers,
            (b"Content-Length", b"%d" % len(body)),
            (b"Date", http_date()),
            (b"Server", SERVER),
        ]
        response = h11.Response(
            status_code=status, headers=headers, reason=REASONS.get(status, b"")
        )
        parts = [self._h11.send(response) or b""]
        if body and not head:
            parts.append(self._h11.send(h11.Data(data=body)) or b"")
        parts.append(self._h11.send(h11.EndOfMessage()) or b"")
        if self.log is not None:
            r = self._request
            what = f"{r.method.decode()} {r.target.decode('latin-1')}" if r else "(unparsed)"
            self.log.info(f"{what} {status} {len(body)}")
        return b"".join(parts)


def _header_size(request: h11.Request) -> int:
    size = len(request.method) + len(request.target) + 12  # " HTTP/1.1\r\n"
    return size + sum(len(name) + len(value) + 4 for name, value in request.headers)


def _declared_length(request: h11.Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is digits
    return 0


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, site: Site, log: Console
) -> None:
    """Serve one client until it leaves, errs, idles too long, or the task is cancelled."""
    conn = HTTPConnection(site, log)
    try:
        while not conn.closed:
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
            except TimeoutError:
                break
            out = conn.receive(data)
            if out:
                writer.write(out)
                await writer.drain()
    except ConnectionError:
        pass  # the client went away; nothing to tell it
    finally:
        writer.close()


async def main(stack: Stack, static: KV_RO, log: Console) -> None:
    """Serve `static` on port 80 until stopped; then close every connection and return."""
    site = Site(static)
    connections: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await serve_connection(reader, writer, site, log)
        finally:
            connections.discard(task)

    server = await stack.start_server(on_connection, PORT)
    log.info(f"serving {len(static.list())} files on port {server.port}")
    try:
        await server.serve_forever()
    finally:
        server.close()
        await server.wait_closed()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        log.info("stopped")


def probe() -> None:
    """Serve requests in memory, as the build's trace runs it: every module serving uses loads.

    Also a smoke test: it raises if the site does not answer as it should.
    """
    from summon.runtime.posix_devices import FolderKV, StdoutConsole

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
    if not os.path.isdir(folder):  # inside the image, where the runtime warms the app up
        folder = "/data/static"
    site = Site(FolderKV(folder))
    conn = HTTPConnection(site, StdoutConsole("error"))
    out = conn.receive(
        b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n"
        b"HEAD /style.css HTTP/1.1\r\nHost: probe\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nHost: probe\r\n\r\n"
    )
    if not (out.startswith(b"HTTP/1.1 200 ") and b" 404 " in out):
        raise RuntimeError(f"probe: unexpected answer {out[:200]!r}")
    bad = HTTPConnection(site).receive(b"NOT HTTP\r\n\r\n")
    if not bad.startswith(b"HTTP/1.1 400 "):
        raise RuntimeError(f"probe: unexpected answer to a malformed request {bad[:200]!r}")
