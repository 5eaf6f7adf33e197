"""The recording run's crawl (build/crawl.py): which pages it asks an HTTP app for, and which
of them it names as having made code after the seal (image.py warms those up).

A real HTTP server on loopback plays the app; a list plays the instance's console, where the
app's "learned code" line lands while the request that made it is served.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from localhttp import LocalHTTP, Quiet

from summon.build import crawl
from summon.runtime.seal import LEARNED_PREFIX

SITE = {
    "/": ("text/html", '<a href="/about">a</a> <a href="shop/">s</a> <a href="#top">t</a>'
          '<a href="https://example.com/x">out</a> <a href="http://summon-build/full">f</a>'
          '<link href="/static/site.css" rel="stylesheet"><img src="/logo.png">'
          '<a href="mailto:a@b.c">m</a> <a href="/caf\u00e9">c</a>'
          '<form method="post" action="/login"></form><form action="/search"></form>'),
    "/shop/": ("text/html", '<base href="/shop/items/"><a href="one">1</a><a href="../../">up</a>'),
    "/openapi.json": ("application/json", json.dumps({
        "openapi": "3.1.0", "servers": [{"url": "/api"}],
        "paths": {"/pets": {"get": {}, "post": {}}, "/pets/{id}": {"get": {}},
                  "/login": {"post": {}}}})),
    "/docs": ("text/html", "<script>const url = '/openapi.json'</script>"),
}  # fmt: skip
MAKES_CODE = {"/about", "/api/pets"}


def test_links_of_an_html_page_stay_on_the_apps_origin() -> None:
    answer = crawl.Answer(200, {"content-type": "text/html; charset=utf-8"}, SITE["/"][1].encode())
    assert crawl.links("/", answer) == [
        "/about", "/shop/", "/full", "/static/site.css", "/logo.png", "/caf%C3%A9", "/search",
    ]  # fmt: skip
    shop = crawl.Answer(200, {"content-type": "text/html"}, SITE["/shop/"][1].encode())
    assert crawl.links("/shop/", shop) == ["/shop/items/one", "/"]  # against <base href>


def test_a_redirect_and_an_openapi_documents_get_operations_are_followed() -> None:
    moved = crawl.Answer(302, {"location": "http://summon-build/admin/login/?next=/admin/"}, b"")
    assert crawl.links("/admin/", moved) == ["/admin/login/?next=/admin/"]
    doc = crawl.Answer(200, {"content-type": "application/json"}, SITE["/openapi.json"][1].encode())
    assert crawl.links("/openapi.json", doc) == ["/api/pets"]  # no {id}, no POST-only path
    other = crawl.Answer(
        200, {"content-type": "application/json"}, b'{"paths": {"/x": {"get": 1}}}'
    )
    assert crawl.links("/data.json", other) == []  # not an OpenAPI document


def test_the_crawl_asks_for_every_page_once_and_names_those_that_made_code() -> None:
    console: list[str] = []
    asked: list[str] = []

    class Handler(Quiet):
        def do_GET(self) -> None:
            asked.append(self.path)
            assert self.headers["Host"] == "summon-build"
            if self.path in MAKES_CODE:
                console.append(f"summon: {LEARNED_PREFIX}{'ab' * 32} '<string>'\n")
            if self.path == "/old":
                self.send_response(301)
                self.send_header("Location", "/about")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            kind, body = SITE.get(self.path, ("text/plain", "not found"))
            self.reply(body.encode(), kind, 200 if self.path in SITE else 404)

    server = LocalHTTP(Handler)
    try:

        def get(path: str) -> crawl.Answer | None:
            return crawl.ask("127.0.0.1", server.port, path, 5, 5, 1)

        def said() -> str:
            text = "".join(console)
            console.clear()
            return text

        found = crawl.crawl(get, said)
    finally:
        server.close()
    assert found.answered
    assert asked == found.asked
    assert asked[:5] == ["/", crawl.MISSING_PATH, "/openapi.json", "/docs", "/redoc"]
    assert sorted(asked) == sorted(set(asked))  # each once
    assert {"/about", "/shop/", "/shop/items/one", "/full", "/search", "/api/pets"} <= set(asked)
    assert not {"/login", "/pets/{id}", "https://example.com/x"} & set(asked)
    assert found.made_code == ["/about", "/api/pets"]


def test_no_answer_at_slash_asks_for_nothing_more() -> None:
    asked: list[str] = []

    def get(path: str) -> crawl.Answer | None:
        asked.append(path)
        return None

    found = crawl.crawl(get, lambda: "")
    assert (found.answered, asked, found.made_code) == (False, ["/"], [])


def test_a_server_of_another_protocol_is_asked_once() -> None:
    asked: list[str] = []

    def get(path: str) -> crawl.Answer:
        asked.append(path)
        return crawl.parse(b"+OK redis-like\r\n")

    found = crawl.crawl(get, lambda: "")
    assert (found.answered, asked) == (True, ["/"])


def test_the_page_budget_holds() -> None:
    def get(path: str) -> crawl.Answer:
        n = int(path[2:]) if path.startswith("/p") else 0  # every page links to two more
        body = f'<a href="/p{2 * n + 1}">x</a><a href="/p{2 * n + 2}">y</a>'.encode()
        return crawl.Answer(200, {"content-type": "text/html"}, body)

    found = crawl.crawl(get, lambda: "", pages=12)
    assert len(found.asked) == 12


def test_an_event_stream_is_read_for_a_while_not_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page that streams forever (server-sent events, a heartbeat every tenth of a second)
    would have held the recording run until it was killed: its answer is cut short."""
    monkeypatch.setattr(crawl, "ANSWER_LIMIT", 0.5)
    stop = threading.Event()

    class Handler(Quiet):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            while not stop.is_set():
                try:
                    self.wfile.write(b"data: tick\n\n")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)

    server = LocalHTTP(Handler)
    got: list[crawl.Answer | None] = []
    asking = threading.Thread(target=lambda: got.append(crawl.ask(
        "127.0.0.1", server.port, "/events", 5, 5, 1)), daemon=True)  # fmt: skip
    asking.start()
    asking.join(60)
    stop.set()
    server.close()
    assert got and got[0] is not None, "still reading the stream"
    assert got[0].status == 200 and got[0].body.startswith(b"data: tick")
