"""HTTP/1.1 for the service-worker bridge, sans-IO: a request made into bytes, response bytes
parsed back into (status, reason, headers, body).

The service worker hands the page a fetch (method, target, headers, body); the bridge writes
it to the app as the bytes a browser would have sent over TCP (encode_request), and reads the
app's answer with ResponseParser: bytes in (feed, feed_eof), a Response out once complete. No
I/O here, so the same code runs in Pyodide, under CPython in the unit tests, and in the fuzzer.

Every request carries "Connection: close": one request per in-memory connection keeps the
bridge stateless, and an app that honours it closes after its answer. The parser does not
wait for that close when the framing (Content-Length, chunked) says the response is complete.

All transitions of the parser's state machine are in TRANSITIONS below, and only there.

Runs inside Pyodide (copied into the site as summon_browser): stdlib only, nothing imported.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    Headers = list[tuple[str, str]]

MAX_HEADER_BYTES = 64 * 1024  # a status line and its fields; more is refused
MAX_BODY_BYTES = 256 * 1024 * 1024  # what a page can take in one response
TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# Fields that describe one hop, not the message: the bridge sets its own framing and
# connection handling, so the browser's values (were they visible) would be lies to the app.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    )
)
# Statuses whose responses never have a body (RFC 9110 6.4.1), besides any answer to HEAD.
NO_BODY = frozenset((204, 304))
SEND_LENGTH_ALWAYS = frozenset(("POST", "PUT", "PATCH"))


class BadRequest(ValueError):
    """The fetch cannot be written as an HTTP/1.1 request (the message says which part)."""


class BadResponse(ValueError):
    """The app's bytes are not an HTTP/1.1 response (the message says where they break)."""


class Response:
    """A complete response: what the service worker turns into a fetch Response."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """The first value of field `name` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.reason!r}, {len(self.body)} bytes)"


def _is_token(text: bytes) -> bool:
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def _is_field_value(text: bytes) -> bool:
    # field-value = *( VCHAR / obs-text / SP / HTAB ): no CR, LF or NUL (nor other CTLs)
    return all(c >= 0x20 or c == 0x09 for c in text) and 0x7F not in text


def _encode(text: str, encoding: str) -> bytes:
    """text's bytes, or b"\0" (which no check below lets through) if it has other characters."""
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return b"\0"


def encode_request(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes, host: str
) -> bytes:
    """The bytes of `method target` with `headers` and `body`, as one HTTP/1.1 request.

    target is origin-form ("/path?query"); headers the fetch's own, hop-by-hop ones dropped;
    Host, Content-Length (when there is a body, or the method expects one) and
    "Connection: close" are set here. BadRequest names the first part that cannot be sent.
    """
    raw_method = _encode(method, "ascii")
    if not _is_token(raw_method):
        raise BadRequest(f"method {method!r} is not an HTTP token")
    raw_target = _encode(target, "ascii")
    if not raw_target.startswith(b"/") or not all(0x21 <= c <= 0x7E for c in raw_target):
        raise BadRequest(f"target {target!r} is not an origin-form path of visible ASCII")
    raw_host = _encode(host, "ascii")
    if not raw_host or not _is_field_value(raw_host) or b" " in raw_host:
        raise BadRequest(f"host {host!r} is not a valid Host field")
    lines = [b"%s %s HTTP/1.1" % (raw_method, raw_target), b"Host: " + raw_host]
    for name, value in headers:
        if name.lower() in HOP_BY_HOP:
            continue
        raw_name = _encode(name, "ascii")
        raw_value = _encode(value, "latin-1").strip(b" \t")
        if not _is_token(raw_name):
            raise BadRequest(f"header name {name!r} is not an HTTP token")
        if not _is_field_value(raw_value):
            raise BadRequest(f"header {name!r} has a value with control characters")
        lines.append(raw_name + b": " + raw_value)
    if body or method.upper() in SEND_LENGTH_ALWAYS:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# --- the response parser ----------------------------------------------------------------------
#
# What it reads (RFC 9112; obs-fold and bare-LF line ends are refused, as h11 refuses them):
#
#   response       = status-line CRLF *( field-line CRLF ) CRLF [ message-body ]
#   status-line    = HTTP-version SP status-code SP [ reason-phrase ]
#   HTTP-version   = "HTTP/1." DIGIT
#   status-code    = 3DIGIT
#   reason-phrase  = *( HTAB / SP / VCHAR / obs-text )
#   field-line     = field-name ":" OWS field-value OWS
#   field-name     = token
#   message-body   = none      for HEAD, 1xx (skipped, another status line follows), 204, 304
#                  / chunked   if Transfer-Encoding's last coding is "chunked"
#                  / *OCTET    of Content-Length bytes (every Content-Length field equal)
#                  / *OCTET    until the end of the stream, otherwise
#   chunked-body   = *chunk last-chunk trailer-section CRLF
#   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
#   chunk-size     = 1*HEXDIG
#   last-chunk     = 1*"0" [ chunk-ext ] CRLF
#   trailer-section = *( field-line CRLF )        (read and dropped)

STATUS_LINE = "STATUS_LINE"
HEADERS = "HEADERS"
BODY_LENGTH = "BODY_LENGTH"
BODY_UNTIL_CLOSE = "BODY_UNTIL_CLOSE"
CHUNK_SIZE = "CHUNK_SIZE"
CHUNK_DATA = "CHUNK_DATA"
CHUNK_END = "CHUNK_END"
TRAILERS = "TRAILERS"
DONE = "DONE"

# (state, event) -> next state: every transition the parser makes, and nothing else.
TRANSITIONS = {
    (STATUS_LINE, "status line"): HEADERS,
    (HEADERS, "field"): HEADERS,
    (HEADERS, "end of interim response"): STATUS_LINE,
    (HEADERS, "end of fields, no body"): DONE,
    (HEADERS, "end of fields, length"): BODY_LENGTH,
    (HEADERS, "end of fields, chunked"): CHUNK_SIZE,
    (HEADERS, "end of fields, until close"): BODY_UNTIL_CLOSE,
    (BODY_LENGTH, "data"): BODY_LENGTH,
    (BODY_LENGTH, "last byte"): DONE,
    (BODY_UNTIL_CLOSE, "data"): BODY_UNTIL_CLOSE,
    (BODY_UNTIL_CLOSE, "end of stream"): DONE,
    (CHUNK_SIZE, "chunk size"): CHUNK_DATA,
    (CHUNK_SIZE, "last chunk"): TRAILERS,
    (CHUNK_DATA, "data"): CHUNK_DATA,
    (CHUNK_DATA, "end of chunk data"): CHUNK_END,
    (CHUNK_END, "chunk CRLF"): CHUNK_SIZE,
    (TRAILERS, "trailer field"): TRAILERS,
    (TRAILERS, "end of trailers"): DONE,
}


class ResponseParser:
    """Reads one HTTP/1.1 response: feed() bytes, feed_eof() at end of stream, then .response.

    `head` says the request was HEAD (no body follows whatever the fields say). Raises
    BadResponse for anything else than a well-formed response, and for a stream that ends
    before the response does.
    """

    def __init__(self, head: bool = False) -> None:
        self.state = STATUS_LINE
        self._head = head
        self._buffer = bytearray()
        self._status = 0
        self._reason = ""
        self._headers: Headers = []
        self._body = bytearray()
        self._remaining = 0  # of BODY_LENGTH or of the current chunk's data
        self._header_bytes = 0

    @property
    def complete(self) -> bool:
        return self.state == DONE

    @property
    def response(self) -> Response:
        if self.state != DONE:
            raise BadResponse(f"the response is not complete (parser in state {self.state})")
        return Response(self._status, self._reason, self._headers, bytes(self._body))

    def _go(self, event: str) -> None:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:  # a bug in this file, never the app's bytes
            raise AssertionError(f"no transition from {self.state} on {event!r}")
        self.state = next_state

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the app's answer (bytes after a complete response are
        ignored: the bridge closes the connection)."""
        if self.state == DONE:
            return
        self._buffer += data
        while self.state != DONE and self._step():
            pass

    def feed_eof(self) -> None:
        """The app closed its end: a close-delimited body ends here, anything else breaks."""
        if self.state == BODY_UNTIL_CLOSE:
            self._go("end of stream")
        elif self.state != DONE:
            what = (
                "before sending anything"
                if self.state == STATUS_LINE and not (self._buffer or self._status)
                else f"in the middle of the response (state {self.state})"
            )
            raise BadResponse(f"the app closed the connection {what}")

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if self.state in (STATUS_LINE, HEADERS, TRAILERS):
                if self._header_bytes + len(self._buffer) > MAX_HEADER_BYTES:
                    raise BadResponse(f"the response's head is over {MAX_HEADER_BYTES} bytes")
            elif len(self._buffer) > 1024:
                raise BadResponse("a chunk-size line is over 1024 bytes")
            if b"\n" in self._buffer:
                raise BadResponse("a line ends with a bare LF (CRLF expected)")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if b"\n" in line:
            raise BadResponse("a line ends with a bare LF (CRLF expected)")
        if self.state in (STATUS_LINE, HEADERS, TRAILERS):
            self._header_bytes += end + 2
            if self._header_bytes > MAX_HEADER_BYTES:
                raise BadResponse(f"the response's head is over {MAX_HEADER_BYTES} bytes")
        return line

    def _step(self) -> bool:
        """Make one transition if the buffered bytes allow it; False when more are needed."""
        state = self.state
        if state in (BODY_LENGTH, CHUNK_DATA):
            return self._take_data()
        if state == BODY_UNTIL_CLOSE:
            if not self._buffer:
                return False
            self._append_body(bytes(self._buffer))
            self._buffer.clear()
            self._go("data")
            return False
        line = self._line()
        if line is None:
            return False
        if state == STATUS_LINE:
            self._status_line(line)
        elif state == HEADERS:
            if line:
                self._headers.append(_field(line))
                self._go("field")
            else:
                self._end_of_fields()
        elif state == CHUNK_SIZE:
            size = _chunk_size(line)
            if size == 0:
                self._go("last chunk")
            else:
                self._remaining = size
                self._go("chunk size")
        elif state == CHUNK_END:
            if line:
                raise BadResponse(f"chunk data is longer than its size says: {line[:40]!r}")
            self._go("chunk CRLF")
        elif state == TRAILERS:
            if line:
                _field(line)
                self._go("trailer field")
            else:
                self._go("end of trailers")
        return True

    def _take_data(self) -> bool:
        if not self._buffer:
            return False
        n = min(self._remaining, len(self._buffer))
        self._append_body(bytes(self._buffer[:n]))
        del self._buffer[:n]
        self._remaining -= n
        if self._remaining:
            self._go("data")
            return False
        self._go("last byte" if self.state == BODY_LENGTH else "end of chunk data")
        return True

    def _append_body(self, data: bytes) -> None:
        if len(self._body) + len(data) > MAX_BODY_BYTES:
            raise BadResponse(f"the response body is over {MAX_BODY_BYTES} bytes")
        self._body += data

    def _status_line(self, line: bytes) -> None:
        version, sp, rest = line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if (
            not sp
            or len(version) != 8
            or not version.startswith(b"HTTP/1.")
            or not version[7:].isdigit()
        ):
            raise BadResponse(f"not an HTTP/1.x status line: {line[:60]!r}")
        if len(code) != 3 or not code.isdigit() or not code.isascii():
            raise BadResponse(f"status code {code[:10]!r} is not three digits")
        if not _is_field_value(reason):
            raise BadResponse("the reason phrase has control characters")
        self._status = int(code)
        if self._status < 100:
            raise BadResponse(f"status code {self._status} is below 100")
        if self._status == 101:
            raise BadResponse("the app switched protocols (101), which a fetch cannot carry")
        self._reason = reason.decode("latin-1")
        self._headers = []
        self._go("status line")

    def _end_of_fields(self) -> None:
        status = self._status
        if status < 200:
            self._header_bytes = 0
            self._go("end of interim response")
            return
        if self._head or status in NO_BODY:
            self._go("end of fields, no body")
            return
        codings = [
            c.strip().lower()
            for name, value in self._headers
            if name.lower() == "transfer-encoding"
            for c in value.split(",")
        ]
        if codings:
            if codings[-1] == "chunked":
                if len(codings) > 1:
                    raise BadResponse(f"transfer codings {codings} are not supported")
                self._go("end of fields, chunked")
            else:
                self._go("end of fields, until close")
            return
        lengths = {v.strip() for k, v in self._headers if k.lower() == "content-length"}
        if not lengths:
            self._go("end of fields, until close")
            return
        if len(lengths) > 1:
            raise BadResponse(f"conflicting Content-Length fields: {sorted(lengths)}")
        text = lengths.pop()
        if not text.isdigit() or not text.isascii() or len(text) > 12:
            raise BadResponse(f"Content-Length {text[:20]!r} is not a number")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise BadResponse(f"the response body is over {MAX_BODY_BYTES} bytes")
        if length == 0:
            self._go("end of fields, no body")
        else:
            self._remaining = length
            self._go("end of fields, length")


def _field(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon:
        raise BadResponse(f"a header line has no colon: {line[:60]!r}")
    if not _is_token(name):
        raise BadResponse(f"header name {name[:40]!r} is not a token")
    value = value.strip(b" \t")
    if not _is_field_value(value):
        raise BadResponse(f"header {name.decode('ascii')!r} has control characters")
    return name.decode("ascii"), value.decode("latin-1")


def _chunk_size(line: bytes) -> int:
    digits = line.partition(b";")[0].strip(b" \t")
    if not digits or len(digits) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
        raise BadResponse(f"chunk size {digits[:20]!r} is not hexadecimal")
    size = int(digits, 16)
    if size > MAX_BODY_BYTES:
        raise BadResponse(f"a chunk of {size} bytes is over {MAX_BODY_BYTES}")
    return size
