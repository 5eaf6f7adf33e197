"""The build's recording run asks an HTTP app for its pages, not `/` alone (syscalls.py).

What an app makes at a page's first request (a template compiled, a class made, a router
rendered to source) is what the seal refuses once it is closed, unless the build saw it made
(docs/sealing.md, "Code the build saw"). A recording run that asks for `/` only sees `/`'s.
So the build asks for `/`, a path no app serves (a framework's not-found page, Bottle's
template), the documented API's pages of the usual frameworks (`/openapi.json`, `/docs`,
`/redoc`: FastAPI's, APIFlask's...), and then, breadth first, each page those answers link
to: an HTML page's links (`<a href>`, `<link href>`, `<script src>`, `<img src>`,
`<iframe src>`, a GET `<form action>`, a redirect's Location) on the app's own origin, and an
OpenAPI document's GET operations that take no path parameter. GET only, at most MAX_PAGES
pages within BUDGET seconds: what a visitor's browser would ask for. The run's volumes are
empty scratch folders (syscalls.scratch_volumes), so nothing a page does outlives it.

Each page whose request made code after the seal (the run's console says so: seal.py's
LEARNED_PREFIX lines, between the request and its answer) is named in the result: an app the
runtime serves asks for those paths before the seal at every start (image.py adds them to
app.json's warm_up when the manifest names none), so code that differs at every start
(Chameleon's page templates hold object ids) is made before the seal there too.
"""

from __future__ import annotations

import html.parser
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from summon.runtime.seal import LEARNED_PREFIX

__all__ = ["Answer", "Crawl", "ask", "crawl", "links"]

HOST = "summon-build"  # the Host the run's requests name: an absolute link to it is the app's
REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: " + HOST + "\r\nUser-Agent: summon-build\r\n"
    "Accept: text/html,application/json;q=0.9,*/*;q=0.8\r\nConnection: close\r\n\r\n"
)
# A path no app serves, asked for second: what a framework makes for its first error page.
MISSING_PATH = "/.summon-build-not-found"
DOC_PATHS = ("/openapi.json", "/docs", "/redoc")
MAX_PAGES = 40  # requests in all, the first ones included
BUDGET = 20.0  # seconds of asking, after `/` answered
MAX_BODY = 2 * 1024 * 1024  # bytes read of an answer; links past them are not followed
ANSWER_LIMIT = 10.0  # seconds an answer may take in all, once it started (a stream ends there)
PATH = re.compile(r"^/[!-~]{0,1023}\Z")  # what a manifest's warm_up takes (manifest.py)
_LEARNED = "summon: " + LEARNED_PREFIX


@dataclass(frozen=True)
class Answer:
    """What a page answered: its status (0 when the answer was not HTTP), headers (names in
    lower case, the last of each), and body (decoded from chunks when it came in chunks)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Crawl:
    """What asking the app found: whether `/` answered at all, the paths asked for, and the
    paths whose request made code after the seal (in the order asked)."""

    answered: bool = False
    asked: list[str] = field(default_factory=list)
    made_code: list[str] = field(default_factory=list)
    unanswered: str = ""  # the page after `/` that gave no answer, where the crawl stopped


def ask(
    host: str, port: int, path: str, connect: float, first_byte: float, patience: float
) -> Answer | None:
    """GET path from host:port over HTTP/1.1 (the connection closed after it); None when
    nothing at all came back. connect: seconds to connect (a forwarder holds the connection
    until the app listens); first_byte: seconds to the answer's first byte; patience: seconds
    the answer may pause (an app that keeps the connection is read until then), and it is
    read for ANSWER_LIMIT seconds at most from its first byte (an event stream never ends)."""
    try:
        with socket.create_connection((host, port), timeout=connect) as s:
            s.sendall(REQUEST.replace("{path}", path).encode("ascii"))
            s.settimeout(first_byte)
            data = b""
            until = None
            try:
                while len(data) <= MAX_BODY and (chunk := s.recv(65536)):
                    data += chunk
                    until = until or time.monotonic() + ANSWER_LIMIT
                    if time.monotonic() > until:
                        break
                    s.settimeout(patience)
            except TimeoutError:
                pass  # answered and kept the connection (or said nothing): data tells
    except OSError:
        return None
    return parse(data) if data else None


def parse(data: bytes) -> Answer:
    """An HTTP/1.x answer's status, headers and body."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Answer(0, {}, b"")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    return Answer(int(parts[1]), headers, body)


def _unchunk(body: bytes) -> bytes:
    """A chunked body's data, as much of it as came."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if not sep or size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


# The attribute of each element that names a URL a browser follows or loads.
ATTRIBUTES = {"a": "href", "link": "href", "area": "href", "script": "src", "img": "src",
              "iframe": "src", "form": "action"}  # fmt: skip


class _Links(html.parser.HTMLParser):
    """The URLs an HTML page asks a browser to follow or load, in page order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.base = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "base" and values.get("href"):
            self.base = values["href"] or ""
        name = ATTRIBUTES.get(tag)
        if name is None:
            return
        if tag == "form" and (values.get("method") or "get").lower() != "get":
            return
        value = values.get(name)
        if value:
            self.found.append(value)


def links(path: str, answer: Answer) -> list[str]:
    """The paths on the app's own origin that an answer to path leads to: a redirect's
    Location, an HTML page's links, an OpenAPI document's GET operations with no path
    parameter; each at most once, in order."""
    found: list[str] = []
    location = answer.headers.get("location")
    if 300 <= answer.status < 400 and location:
        found.append(location)
    kind = answer.headers.get("content-type", "").split(";")[0].strip().lower()
    base = path
    if answer.status == 200 and kind in ("text/html", "application/xhtml+xml"):
        page = _Links()
        try:
            page.feed(answer.body.decode("utf-8", "replace"))
            page.close()
        except (AssertionError, ValueError):  # html.parser on malformed markup
            pass
        found += page.found
        base = urllib.parse.urljoin(path, page.base) if page.base else path
    elif answer.status == 200 and (kind == "application/json" or kind.endswith("+json")):
        found += _openapi_paths(answer.body)
    out: list[str] = []
    for link in found:
        own = _own(base, link)
        if own is not None and own not in out:
            out.append(own)
    return out


def _openapi_paths(body: bytes) -> list[str]:
    """An OpenAPI (or Swagger 2) document's paths with a GET operation and no `{param}`,
    under its first server's path (or basePath)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return []
    if not isinstance(doc, dict) or not ("openapi" in doc or "swagger" in doc):
        return []
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return []
    base = doc.get("basePath")
    prefix = base if isinstance(base, str) else ""
    servers = doc.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = servers[0].get("url")
        if isinstance(url, str) and "{" not in url:
            prefix = urllib.parse.urlsplit(url).path
    out = []
    for name, item in paths.items():
        if isinstance(name, str) and "{" not in name and isinstance(item, dict) and "get" in item:
            out.append(prefix.rstrip("/") + name)
    return out


def _own(base: str, link: str) -> str | None:
    """link resolved against the page at base, as an origin-form path on the app's own
    origin (no fragment; non-ASCII quoted), or None when it leads elsewhere."""
    link = link.strip()
    if not link or link.startswith("#"):
        return None
    url = urllib.parse.urlsplit(urllib.parse.urljoin(base, link))
    if url.scheme not in ("", "http", "https") or url.netloc not in ("", HOST):
        return None
    target = urllib.parse.quote(url.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if url.query:
        target += "?" + urllib.parse.quote(url.query, safe="/%:@!$&'()*+,;=-._~?")
    return target if PATH.match(target) else None


def crawl(
    get: Callable[[str], Answer | None],
    console: Callable[[], str],
    *,
    budget: float = BUDGET,
    pages: int = MAX_PAGES,
    seeds: Iterable[str] = (MISSING_PATH, *DOC_PATHS),
    skip: Collection[str] = (),
) -> Crawl:
    """Ask get for `/`, then seeds, then what the answers link to, breadth first; console
    gives what the run printed since it was last called. Stops at `pages` requests or after
    `budget` seconds, and at once when `/` gave no answer or one not in HTTP (a server of
    another protocol, which saw junk), or a page gives none (the app is gone or hangs).
    The paths in skip are not asked for (a page that ended the app in an earlier run)."""
    found = Crawl()
    queue = ["/"]
    deadline: float | None = None
    while queue and len(found.asked) < pages:
        if deadline is not None and time.monotonic() > deadline:
            break
        path = queue.pop(0)
        console()  # what came before this request is not its doing
        answer = get(path)
        found.asked.append(path)
        if any(line.startswith(_LEARNED) for line in console().splitlines()):
            found.made_code.append(path)  # an answer or not: the code was made
        if answer is None:
            found.unanswered = path if found.answered else ""
            break
        if deadline is None:
            found.answered = True
            if answer.status == 0:
                break  # `/` was not answered in HTTP: the app speaks something else
            deadline = time.monotonic() + budget
            queue += [p for p in seeds if p not in queue and p not in skip]
        if answer.status == 0:
            continue  # not HTTP: nothing to follow
        for link in links(path, answer):
            if link not in found.asked and link not in queue and link not in skip:
                queue.append(link)
    return found
