"""Warm-up requests: what a served app sees and what the runtime says before the seal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from summon.runtime.http import warmup
from summon.runtime.http.server import WorkerPool
from summon.runtime.http.warmup import warm_up


def run(app: Callable[..., Any], interface: str, paths: list[str]) -> list[str]:
    """The warm-up as the server makes it: WSGI calls on its worker pool."""
    said: list[str] = []
    asyncio.run(warm_up(app, interface, paths, None, said.append, WorkerPool(2).run))
    return said


class LazyRouter:
    """A WSGI app that compiles its router at its first request, as Falcon does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.compiled: Callable[[str], str] | None = None

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"] + (
            "?" + environ["QUERY_STRING"] if environ["QUERY_STRING"] else ""
        )
        self.seen.append((environ["REQUEST_METHOD"], path, environ["HTTP_USER_AGENT"]))
        if self.compiled is None:
            scope: dict[str, Any] = {}
            exec("def find(path):\n    return 'found ' + path\n", scope)
            self.compiled = scope["find"]
        if environ["PATH_INFO"] == "/missing":
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no"]
        start("200 OK", [("Content-Type", "text/plain")])
        return [self.compiled(path).encode()]


def test_a_wsgi_app_is_asked_for_each_path_and_builds_what_it_builds_lazily() -> None:
    app = LazyRouter()
    said = run(app, "wsgi", ["/", "/items?page=1", "/missing"])
    assert app.seen == [
        ("GET", "/", "summon-warm-up"),
        ("GET", "/items?page=1", "summon-warm-up"),
        ("GET", "/missing", "summon-warm-up"),
    ]
    assert app.compiled is not None  # built before the seal would close
    assert said == [
        "warm-up: GET / -> 200, before the seal",
        "warm-up: GET /items?page=1 -> 200, before the seal",
        "warm-up: GET /missing -> 404, before the seal",
    ]


def test_an_asgi_app_gets_the_request_and_the_lifespan_state() -> None:
    seen: list[tuple[str, str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope["method"], scope["path"], scope.get("state")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    said: list[str] = []
    asyncio.run(warm_up(app, "asgi", ["/"], {"db": "ready"}, said.append))
    assert seen == [("GET", "/", {"db": "ready"})]
    assert said == ["warm-up: GET / -> 204, before the seal"]


def test_an_app_that_fails_is_said_and_the_server_goes_on() -> None:
    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("not ready")

    said = run(app, "wsgi", ["/"])
    assert said == ["warm-up: GET / -> 500, before the seal"]  # the server's own error page


def test_an_app_that_hangs_is_given_up_on(monkeypatch: Any) -> None:
    monkeypatch.setattr(warmup, "WARM_UP_TIMEOUT", 0.2)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(2)
        start("200 OK", [])
        return [b""]

    started = time.monotonic()
    said = run(app, "wsgi", ["/slow"])
    assert time.monotonic() - started < 1.5
    assert said == ["warm-up: GET /slow gave no answer within 0.2 s; sealing anyway"]


def test_status_of_reads_the_status_line() -> None:
    assert warmup.status_of(b"HTTP/1.1 301 Moved\r\n\r\n") == "301"
    assert warmup.status_of(b"") == "no answer"
    assert warmup.status_of(b"garbage") == "no answer"
