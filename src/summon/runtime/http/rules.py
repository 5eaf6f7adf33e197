"""What the server checks of requests and responses beyond h11's framing (RFC 9110, 9112).

Requests (request_problem): a head h11 accepts may still be one a server must refuse or treat
with care:
- Content-Length and Transfer-Encoding together (RFC 9112 6.1): the shape of request
  smuggling, where a proxy in front frames by one and this server by the other. Refused,
  and the connection closes;
- CONNECT: this server makes no tunnels (h11 would take any 2xx answer for one);
- a request target that is none of the four forms (RFC 9112 3.2): origin-form starts with
  "/", "*" is only for OPTIONS, absolute-form names a scheme; no fragment;
- a Host that is no uri-host[:port] (RFC 9112 3.2: 400).

Responses (response_head): the status from 200 to 599 (1xx are the server's own); a reason
phrase of visible characters only (a CR LF in it would split the response); the hop-by-hop
headers PEP 3333 forbids an app dropped (`Connection: close` from the app is honoured);
Content-Length never on a 204 and never added to a 304 (RFC 9110 8.6); Date and Server added.
"""

from __future__ import annotations

import time

import h11

TYPE_CHECKING = False
if TYPE_CHECKING:
    Headers = list[tuple[bytes, bytes]]

SERVER = b"summon"
REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    408: b"Request Timeout",
    409: b"Conflict",
    410: b"Gone",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    416: b"Range Not Satisfiable",
    422: b"Unprocessable Content",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
# Response headers the server decides, whatever the app says: h11 frames the body itself,
# and hop-by-hop headers are the server's (PEP 3333 forbids them to apps; ASGI servers
# ignore them).
_SERVER_OWNED = frozenset(
    (b"transfer-encoding", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade")
)
# uri-host [":" port] (RFC 3986): reg-name, IPv4 and IP-literal characters, and ":".
_HOST_BYTES = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:%[]"
)
# A reason phrase: HTAB, SP, VCHAR, obs-text (RFC 9112 4).
_REASON_BYTES = frozenset((9, *range(32, 127), *range(128, 256)))


class ResponseError(ValueError):
    """The app's response breaks HTTP: a malformed header, a body longer or shorter than its
    Content-Length, or a response at the wrong time. Nothing of it was sent."""


def request_problem(
    method: bytes, target: bytes, headers: Headers, http_version: bytes = b"1.1"
) -> tuple[int, str] | None:
    """(status, why) for a request head the server refuses; None if it serves it."""
    length = chunked = False
    hosts: list[bytes] = []
    for name, value in headers:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"host":
            hosts.append(value)
    if length and chunked:
        return 400, "both Content-Length and Transfer-Encoding (RFC 9112 6.1)"
    if chunked and http_version == b"1.0":
        # Likely forwarded by an HTTP/1.0 hop that did not decode it: the framing is faulty.
        return 400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)"
    if method == b"CONNECT":
        return 501, "CONNECT: this server makes no tunnels"
    if b"#" in target:
        return 400, "a fragment in the request target"
    if target == b"*":
        if method != b"OPTIONS":
            return 400, "the request target * is for OPTIONS only"
    elif not target.startswith(b"/") and absolute_authority(target) is None:
        return 400, "the request target is neither a path nor an absolute URI"
    for host in hosts:
        if not all(c in _HOST_BYTES for c in host):
            return 400, "the Host header is not a host[:port]"
    return None


def wants_websocket(method: bytes, headers: Headers) -> bool:
    """Whether a request asks to be upgraded to a WebSocket (RFC 6455 4.1): a GET whose
    Upgrade names websocket and whose Connection names upgrade (tokens, any case)."""
    if method != b"GET":
        return False
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or b"websocket" in _tokens(value)
        elif name == b"connection":
            connection = connection or b"upgrade" in _tokens(value)
    return upgrade and connection


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def absolute_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form target (http://host:port/path), else None."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    authority = rest.partition(b"/")[0].partition(b"?")[0]
    if not authority or b"@" in authority or not all(c in _HOST_BYTES for c in authority):
        return None
    return authority


def response_head(
    status: int, headers: Headers, reason: bytes = b"", close: bool = False
) -> h11.Response:
    """The h11 response head the server sends for an app's status and headers.

    Adds Date and Server unless given, drops what the server owns (above), adds
    `Connection: close` if `close` or the app asked for it. ResponseError if the result is
    not valid HTTP; this touches no connection, so a bridge can check a head before it is its
    turn to send it.
    """
    if type(status) is not int or not 200 <= status <= 599:
        raise ResponseError(f"response status {status!r} is not a number from 200 to 599")
    if not all(c in _REASON_BYTES for c in reason):
        raise ResponseError(f"the reason phrase {reason!r} holds control characters")
    have_date = have_server = False
    clean: Headers = []
    for name, value in headers:
        lower = name.lower() if isinstance(name, bytes) else name
        if lower in _SERVER_OWNED:
            continue
        if lower == b"connection":
            close = close or b"close" in value.lower()
            continue
        if lower == b"content-length" and (status == 204 or (status == 304 and value == b"0")):
            continue  # a 204 has none; a 304's may only repeat the 200's (not ours to make)
        have_date = have_date or lower == b"date"
        have_server = have_server or lower == b"server"
        clean.append((name, value))
    if not have_date:
        clean.append((b"date", http_date()))
    if not have_server:
        clean.append((b"server", SERVER))
    if close:
        clean.append((b"connection", b"close"))
    try:
        return h11.Response(
            status_code=status, headers=clean, reason=reason or REASONS.get(status, b"")
        )
    except (h11.LocalProtocolError, TypeError, AttributeError) as e:
        # h11 checks names and values against RFC 9110; a non-bytes item fails in its code.
        raise ResponseError(f"the response head is not valid HTTP: {e}") from None


def declared_length(headers: Headers) -> int | None:
    """The Content-Length an app declared, or None (none, or not a number)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses the head itself
    return None


def check_length(status: int, headers: Headers, length: int, head_request: bool) -> None:
    """ResponseError if a response whose whole body is known (`length` bytes) declares
    another Content-Length: the client would read into the next response or wait for
    bytes that never come. HEAD answers, 204 and 304 declare the length of what they omit."""
    declared = declared_length(headers)
    if declared is None or declared == length or head_request or status in (204, 304):
        return
    raise ResponseError(f"Content-Length {declared} for a body of {length} bytes")


_last_date: tuple[int, bytes] = (-1, b"")


def http_date(now: float | None = None) -> bytes:
    """RFC 9110 IMF-fixdate, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    global _last_date
    second = int(time.time() if now is None else now)
    if second == _last_date[0]:  # one formatting per second, not per response
        return _last_date[1]
    t = time.gmtime(second)
    # strftime's %a and %b follow the locale; HTTP wants the English names.
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[t.tm_wday]
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[
        t.tm_mon - 1
    ]
    date = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        day.encode(),
        t.tm_mday,
        month.encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )
    _last_date = (second, date)
    return date


_HEX = b"0123456789abcdefABCDEF"


def unquote(raw: bytes) -> bytes:
    """Undo %XX escapes; a malformed escape stays as it is (as urllib.parse.unquote does).

    Not urllib.parse: it imports re and more, ~4 ms at every start of the image.
    """
    if b"%" not in raw:
        return raw
    first, *rest = raw.split(b"%")
    out = [first]
    for part in rest:
        pair = part[:2]
        if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            out.append(bytes((int(pair, 16),)) + part[2:])
        else:
            out.append(b"%" + part)
    return b"".join(out)
