"""The HTTP server's limits and timeouts, with their defaults and SUMMON_HTTP_* variables.

Every value has a default fit for a small service; the environment (the manifest's `env`, or
`-e` at run time) overrides it. A malformed value is a ValueError whose message names the
variable and the value seen, which the runtime prints as one line.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# (variable, attribute, kind, default, meaning): the table docs/http.md describes.
VARIABLES = (
    ("SUMMON_HTTP_MAX_HEADER", "max_header", "size", 16 * 1024,
     "request line plus headers; larger is refused with 431"),
    ("SUMMON_HTTP_MAX_BODY", "max_body", "size", 1024 * 1024,
     "request body; larger is refused with 413"),
    ("SUMMON_HTTP_KEEPALIVE_TIMEOUT", "keepalive_timeout", "seconds", 5.0,
     "an idle connection (new or kept alive) is closed after this"),
    ("SUMMON_HTTP_HEAD_TIMEOUT", "head_timeout", "seconds", 10.0,
     "a request head must arrive within this from its first byte, else 408"),
    ("SUMMON_HTTP_READ_TIMEOUT", "read_timeout", "seconds", 30.0,
     "longest silence while a body arrives (else 408), or while a response waits to be sent"),
    ("SUMMON_HTTP_MIN_SEND_RATE", "min_send_rate", "size", 16 * 1024,
     "bytes a second a client must take a response at once it has fallen behind, else it is "
     "dropped (a slow reader would hold a WSGI thread); 0 turns the check off"),
    ("SUMMON_HTTP_THREADS", "threads", "count", 8,
     "WSGI apps: requests served at once (one thread each)"),
    ("SUMMON_HTTP_GRACE", "grace", "seconds", 8.0,
     "on SIGTERM: how long requests under way (then the ASGI lifespan shutdown) may take"),
    ("SUMMON_HTTP_WS_PING", "ws_ping", "seconds", 20.0,
     "a WebSocket silent this long gets a ping; one that does not answer within as long "
     "again is closed (its client is gone)"),
    ("SUMMON_HTTP_ACCESS_LOG", "access_log", "switch", True,
     "one line per request on the console: 1 (default) or 0"),
)  # fmt: skip


class Settings:
    """Limits and timeouts of the HTTP server (sizes in bytes, times in seconds)."""

    def __init__(
        self,
        *,
        max_header: int = 16 * 1024,
        max_body: int = 1024 * 1024,
        keepalive_timeout: float = 5.0,
        head_timeout: float = 10.0,
        read_timeout: float = 30.0,
        min_send_rate: int = 16 * 1024,
        threads: int = 8,
        grace: float = 8.0,
        ws_ping: float = 20.0,
        access_log: bool = True,
    ) -> None:
        self.max_header = max_header
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.read_timeout = read_timeout
        self.min_send_rate = min_send_rate
        self.threads = threads
        self.grace = grace
        self.ws_ping = ws_ping
        self.access_log = access_log

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The settings SUMMON_HTTP_* in `environ` give; ValueError naming a malformed one."""
        values: dict[str, object] = {}
        for name, attr, kind, _default, _meaning in VARIABLES:
            text = environ.get(name, "").strip()
            if text:
                values[attr] = _parse(name, kind, text)
        return cls(**values)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        fields = ", ".join(f"{attr}={getattr(self, attr)!r}" for _n, attr, *_ in VARIABLES)
        return f"Settings({fields})"


def _parse(name: str, kind: str, text: str) -> int | float | bool:
    if kind == "switch":
        if text in ("1", "0"):
            return text == "1"
        raise ValueError(f"{name}: {text!r} is not 1 or 0")
    if kind == "seconds":
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds < 86400 * 365:  # also refuses nan and inf
            raise ValueError(f"{name}: {text!r} is not a number of seconds above 0, such as 30")
        return seconds
    if kind == "count":
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1024:
            raise ValueError(f"{name}: {text!r} is not a whole number from 1 to 1024")
        return int(text)
    # size: digits, then an optional unit k, M or G (KiB, MiB, GiB; "KB", "MiB" read alike)
    digits = text.rstrip("kKmMgGiIbB ")
    unit = text[len(digits) :].strip().lower().rstrip("b").rstrip("i")
    if not (digits.isascii() and digits.isdigit()) or unit not in _SIZE_UNITS:
        raise ValueError(f"{name}: {text!r} is not a size such as 65536, 64k or 1M")
    size = int(digits) * _SIZE_UNITS[unit]
    if size < 1:
        raise ValueError(f"{name}: {text!r} must be at least 1 byte")
    return size
