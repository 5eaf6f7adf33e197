"""What the HTTP server says on the console: access log lines, and the app's errors.

Access lines go to the Console device (stdout, one line each), in the Common Log Format with
the duration added:

    127.0.0.1 - - [06/Nov/2024:08:49:37 +0000] "GET /items?id=3 HTTP/1.1" 200 1234 0.8ms

An exception from the app goes to stderr as one "summon: ..." line naming the request, then
its traceback, written at once so that threads do not interleave them.
"""

from __future__ import annotations

import os
import sys
import time

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.runtime.http.protocol import Exchange

# The server's own frames, by the file name its code objects carry (a .pyc says where it
# was compiled: in an image the image's path, whatever __file__ says on the unix target).
_HERE = os.path.dirname(sys._getframe().f_code.co_filename) + os.sep
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def printable(raw: bytes) -> str:
    """`raw` for a log line: control bytes, quotes and non-ASCII as \\xNN, so that a request
    target can neither break the line nor send escape sequences to a terminal."""
    text = raw.decode("latin-1")
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)


TARGET_LOGGED = 1024  # bytes of a request target the access log shows
METHOD_LOGGED = 32  # and of a method (the longest registered one has 17)


def _cut(raw: bytes, most: int) -> bytes:
    return raw if len(raw) <= most else raw[:most] + b"...(%d bytes)" % len(raw)


def access_line(client: str, exchange: Exchange, wall: float | None = None) -> str:
    """The access log line for one exchange with `client` ("address" or "-")."""
    t = time.gmtime(time.time() if wall is None else wall)
    stamp = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    # A refused 20 KB URI or method is not logged whole each time: an amplifier.
    target, method = _cut(exchange.target, TARGET_LOGGED), _cut(exchange.method, METHOD_LOGGED)
    request = (
        f"{printable(method)} {printable(target)} HTTP/{printable(exchange.http_version)}"
        if exchange.method != b"-"
        else "-"
    )
    ms = exchange.duration * 1000
    return f'{client} - - [{stamp}] "{request}" {exchange.status} {exchange.sent} {ms:.1f}ms'


def report_app_error(what: str, exc: BaseException) -> None:
    """Print "summon: <what>" and the traceback of `exc` on stderr, in one write."""
    import traceback  # only on this error path; asyncio has it loaded anyway

    # From the app's first frame on: the server's own frames above it say nothing.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if hint := _hint(exc):
        text += f"summon: {hint}\n"
    try:
        sys.stdout.flush()
        sys.stderr.write(f"summon: {what}\n{text}")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # a broken stderr must not take the server down


def _hint(exc: BaseException) -> str | None:
    """What the runtime knows of exc: a module the image lacks, a fork or exec it denies."""
    try:
        from summon.runtime import hints  # only on this error path

        return hints.missing_module_hint(exc) or hints.sandbox_hint(exc) or hints.volume_hint(exc)
    except Exception:  # a hint must never cost the server its request
        return None
