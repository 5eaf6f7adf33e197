"""The tab's cookie jar: what a browser would keep of the app's Set-Cookie, kept by the bridge.

A service worker's Response cannot carry Set-Cookie (a forbidden response header: the browser
drops it silently) and the requests it sees carry no Cookie header, so without this an app in
a tab never gets a cookie back: no Flask session, no Django login or CSRF token. The bridge
does the browser's part instead, for the one origin the app has (RFC 6265, section 5):

- each response's Set-Cookie fields are taken out and stored (name, value, path, expiry);
  Max-Age wins over Expires, a past expiry deletes, a cookie without either lasts as long as
  the jar (the worker saves the jar, so a reload keeps a session as a browser does);
- each request gets the cookies whose path matches its target, longest path first, after
  any Cookie field the request has of its own.

Domain, Secure, HttpOnly and SameSite need nothing: every request is the app's own, same-site,
in a secure context, and the jar is never visible to the page's scripts (HttpOnly holds for
every cookie). Bounded as browsers bound a site: MAX_COOKIES, MAX_COOKIE_BYTES each.

Runs inside Pyodide and under CPython in the unit tests: stdlib only.
"""

from __future__ import annotations

import time

MAX_COOKIES = 180  # per site, as Chromium keeps
MAX_COOKIE_BYTES = 4096  # name and value together

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Cookie:
    """One stored cookie; expires: seconds since the epoch, None for a session cookie."""

    __slots__ = ("created", "expires", "name", "path", "value")

    def __init__(
        self, name: str, value: str, path: str, expires: float | None, created: float
    ) -> None:
        self.name = name
        self.value = value
        self.path = path
        self.expires = expires
        self.created = created


class CookieJar:
    """The cookies of one app, as a browser keeps a site's."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._cookies: dict[tuple[str, str], Cookie] = {}  # (path, name) -> cookie
        self.changed = False  # since the jar was last saved (dumps)

    def __len__(self) -> int:
        return len(self._cookies)

    # --- responses ----------------------------------------------------------------------------

    def take(self, target: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """headers without their Set-Cookie fields, each stored (a request to target)."""
        kept = []
        for name, value in headers:
            if name.lower() == "set-cookie":
                self.store(target, value)
            else:
                kept.append((name, value))
        return kept

    def store(self, target: str, field: str) -> None:
        """One Set-Cookie field's value, received for a request to target; one that does not
        parse is ignored, as a browser ignores it."""
        pair, _, attributes = field.partition(";")
        name, eq, value = pair.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not eq or not name or len(name) + len(value) > MAX_COOKIE_BYTES:
            return
        if not (_valid(name) and _valid(value)):
            return
        now = self._now()
        path = ""
        expires: float | None = None
        max_age: float | None = None
        for attribute in attributes.split(";"):
            key, _, arg = attribute.partition("=")
            key, arg = key.strip(" \t").lower(), arg.strip(" \t")
            if key == "path":
                path = arg
            elif key == "max-age":
                digits = arg[1:] if arg.startswith("-") else arg
                if digits.isdigit():
                    delta = int(arg)
                    max_age = now + delta if delta > 0 else 0.0
            elif key == "expires":
                expires = _http_date(arg) if arg else expires
        if not path.startswith("/") or not _valid(path):
            path = default_path(target)
        when = max_age if max_age is not None else expires
        key_ = (path, name)
        old = self._cookies.pop(key_, None)
        self.changed = True
        if when is not None and when <= now:
            return  # an expiry in the past deletes the cookie
        created = old.created if old is not None else now
        self._cookies[key_] = Cookie(name, value, path, when, created)
        if len(self._cookies) > MAX_COOKIES:  # the oldest goes, as browsers evict
            oldest = min(self._cookies, key=lambda k: self._cookies[k].created)
            del self._cookies[oldest]

    # --- requests -----------------------------------------------------------------------------

    def header(self, target: str) -> str:
        """The Cookie field's value for a request to target ("" when no cookie matches)."""
        path = target.partition("?")[0].partition("#")[0] or "/"
        if not path.startswith("/"):  # absolute-form or "*": the path of the URL, if any
            rest = path.partition("://")[2]
            path = "/" + rest.partition("/")[2] if rest else "/"
        now = self._now()
        for key in [
            k for k, c in self._cookies.items() if c.expires is not None and c.expires <= now
        ]:
            del self._cookies[key]
            self.changed = True
        matching = [c for c in self._cookies.values() if path_matches(path, c.path)]
        matching.sort(key=lambda c: (-len(c.path), c.created))
        return "; ".join(f"{c.name}={c.value}" for c in matching)

    def add_to(self, target: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """headers with the jar's cookies for target, after the request's own Cookie field."""
        jar = self.header(target)
        if not jar:
            return headers
        own = [v for n, v in headers if n.lower() == "cookie"]
        rest = [(n, v) for n, v in headers if n.lower() != "cookie"]
        return [*rest, ("Cookie", "; ".join([*own, jar]))]

    # --- saving -------------------------------------------------------------------------------

    def rows(self) -> list[list[object]]:
        """The jar as [name, value, path, expires, created] rows, for the worker to keep
        across reloads (as JSON, in the Cache API); clears `changed`."""
        self.changed = False
        return [[c.name, c.value, c.path, c.expires, c.created] for c in self._cookies.values()]

    def load(self, rows: object) -> None:
        """Add what rows() gave; anything malformed (an old or damaged save) is skipped."""
        if not isinstance(rows, list):
            return
        now = self._now()
        for row in rows[-MAX_COOKIES:]:
            if not (isinstance(row, list) and len(row) == 5):
                continue
            name, value, path, expires, created = row
            if not (isinstance(name, str) and isinstance(value, str) and isinstance(path, str)):
                continue
            if not isinstance(created, int | float) or not isinstance(expires, int | float | None):
                continue
            if _valid(name) and _valid(value) and path.startswith("/") and _valid(path):
                if expires is None or expires > now:
                    self._cookies[(path, name)] = Cookie(name, value, path, expires, created)


def default_path(target: str) -> str:
    """RFC 6265 5.1.4: the request path up to its last '/', or "/"."""
    path = target.partition("?")[0]
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4's path-match."""
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def _valid(text: str) -> bool:
    """No control characters (a browser refuses a cookie with them)."""
    return not any(ord(c) < 0x20 or c == "\x7f" for c in text)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _http_date(text: str) -> float | None:
    """An Expires attribute's date, read as RFC 6265 5.1.1 reads one (any of the forms
    servers send: RFC 1123, RFC 850, asctime), as seconds since the epoch; None if it is no
    date. Without the email or calendar modules: a tab's stdlib holds only what the app used."""
    hms: tuple[int, int, int] | None = None
    day = month = year = None
    token = ""
    for c in text + " ":
        if c.isalnum() or c == ":":
            token += c
            continue
        if not token:
            continue
        parts = token.split(":")
        if hms is None and len(parts) == 3 and all(p[:2].isdigit() for p in parts):
            hms = (int(parts[0][:2]), int(parts[1][:2]), int(parts[2][:2]))
        elif day is None and token.isdigit() and len(token) <= 2:
            day = int(token)
        elif month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS.index(token[:3].lower()) + 1
        elif year is None and token.isdigit() and len(token) in (2, 4):
            year = int(token)
        token = ""
    if hms is None or day is None or month is None or year is None:
        return None
    if year < 100:
        year += 1900 if year >= 70 else 2000
    if not (1 <= day <= 31 and year >= 1601 and hms[0] <= 23 and hms[1] <= 59 and hms[2] <= 59):
        return None
    return float(_days_from_civil(year, month, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the given date of the proleptic Gregorian calendar."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
