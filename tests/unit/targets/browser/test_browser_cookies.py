"""The tab's cookie jar (inpage/cookies.py): the browser's part of cookies, which a service
worker cannot do, done by the bridge; and an app's session kept through it, across a reload."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import pytest

from summon.targets.browser.inpage.boot import BrowserApp
from summon.targets.browser.inpage.cookies import (
    MAX_COOKIE_BYTES,
    MAX_COOKIES,
    CookieJar,
    default_path,
    path_matches,
)

# Reuses the bridge tests' image layout and their interpreter-state fixture.
bridge = importlib.import_module("tests.unit.targets.browser.test_browser_bridge")
restore_interpreter_state = bridge.restore_interpreter_state


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_set_by_a_response_goes_with_the_next_request_and_not_to_the_page() -> None:
    jar = CookieJar()
    headers = [("Content-Type", "text/html"), ("Set-Cookie", "session=abc123; Path=/; HttpOnly")]
    assert jar.take("/login", headers) == [("Content-Type", "text/html")]
    assert jar.header("/") == "session=abc123"
    assert jar.add_to("/account", [("Accept", "*/*")]) == [
        ("Accept", "*/*"),
        ("Cookie", "session=abc123"),
    ]


def test_a_cookie_of_the_same_name_and_path_replaces_the_old_one() -> None:
    jar = CookieJar()
    jar.store("/", "a=1")
    jar.store("/", "a=2")
    assert jar.header("/") == "a=2"
    assert len(jar) == 1


def test_paths_as_rfc_6265_matches_them_longest_first() -> None:
    assert default_path("/shop/cart/items?x=1") == "/shop/cart"
    assert default_path("/login") == "/"
    assert default_path("*") == "/"
    assert path_matches("/shop/cart", "/shop")
    assert not path_matches("/shopping", "/shop")
    assert path_matches("/shop/", "/shop/")
    clock = Clock()
    jar = CookieJar(clock)
    jar.store("/", "site=1; Path=/")
    clock.now += 1
    jar.store("/shop/cart", "cart=2")  # default path: /shop
    assert jar.header("/shop/cart?page=2") == "cart=2; site=1"
    assert jar.header("/shopping") == "site=1"
    assert jar.header("http://127.0.0.1:8080/shop/x") == "cart=2; site=1"  # absolute form


def test_max_age_and_expires_delete_and_expire_cookies() -> None:
    clock = Clock()
    jar = CookieJar(clock)
    jar.store("/", "short=1; Max-Age=10")
    jar.store("/", "gone=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    jar.store("/", "long=1; Expires=Fri, 31 Dec 9999 23:59:59 GMT")
    jar.store("/", "both=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=100")  # Max-Age wins
    assert jar.header("/") == "short=1; long=1; both=1"
    clock.now += 11
    assert jar.header("/") == "long=1; both=1"
    jar.store("/", "long=; Max-Age=0")  # how apps log out: delete by a past expiry
    assert jar.header("/") == "both=1"


@pytest.mark.parametrize(
    "field",
    [
        "novalue",  # no '='
        "=value",  # no name
        "a=b\x01c",  # a control character
        "x=" + "v" * MAX_COOKIE_BYTES,  # too big
    ],
)
def test_a_set_cookie_a_browser_would_ignore_is_ignored(field: str) -> None:
    jar = CookieJar()
    jar.store("/", field)
    assert len(jar) == 0 and jar.header("/") == ""


def test_the_jar_is_bounded_the_oldest_cookie_goes() -> None:
    clock = Clock()
    jar = CookieJar(clock)
    for i in range(MAX_COOKIES + 5):
        clock.now += 1
        jar.store("/", f"c{i}=1")
    assert len(jar) == MAX_COOKIES
    assert "c0=" not in jar.header("/") and f"c{MAX_COOKIES + 4}=1" in jar.header("/")


def test_the_jar_saved_and_loaded_keeps_live_cookies_and_skips_damage() -> None:
    clock = Clock()
    jar = CookieJar(clock)
    jar.store("/", "session=s1; Path=/")
    jar.store("/", "brief=1; Max-Age=5")
    assert jar.changed
    rows = jar.rows()
    assert not jar.changed
    clock.now += 10
    again = CookieJar(clock)
    again.load([*rows, "junk", [1, 2, 3, 4, 5], ["x", "y", "relative", None, 0.0]])
    assert again.header("/") == "session=s1"
    again.load({"not": "rows"})  # a damaged save: nothing, and no error
    assert again.header("/") == "session=s1"


SESSION_APP = """
from http.cookies import SimpleCookie

def app(environ, start_response):
    jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    if environ["PATH_INFO"] == "/login":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Set-Cookie", "user=ada; Path=/; HttpOnly")])
        return [b"logged in\\n"]
    if environ["PATH_INFO"] == "/logout":
        start_response("200 OK", [("Set-Cookie", "user=; Path=/; Max-Age=0")])
        return [b"bye\\n"]
    user = jar["user"].value if "user" in jar else "nobody"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"hello {user}\\n".encode()]
"""


def test_a_wsgi_apps_session_cookie_is_kept_by_the_tab_and_across_a_reload(
    tmp_path: Path,
) -> None:
    """The Flask/Django pattern: a login sets a cookie, later pages read it; before the jar, a
    tab's app never got its cookie back. The worker saves rows() and loads them at the next
    page start: the session survives a reload; a logout deletes it."""
    entry = {"kind": "wsgi", "module": "session_app", "attr": "app"}
    root = bridge.image_root(tmp_path, "session_app", SESSION_APP, entry=entry)

    async def visit(app: BrowserApp, target: str) -> tuple[bytes, list[str]]:
        r = await app.exchange("GET", target, [], b"", "127.0.0.1:8080")
        return r.body, [n for n, _ in r.headers if n.lower() == "set-cookie"]

    async def first_page() -> tuple[list[object], list[tuple[bytes, list[str]]]]:
        app = BrowserApp(str(root))
        await app.start()
        seen = [await visit(app, "/"), await visit(app, "/login"), await visit(app, "/")]
        saved = app.saved_cookies()
        assert saved is not None and app.saved_cookies() is None  # saved once per change
        return saved, seen

    saved, seen = asyncio.run(first_page())
    assert seen == [(b"hello nobody\n", []), (b"logged in\n", []), (b"hello ada\n", [])]
    sys.modules.pop("session_app", None)  # a reload starts a new interpreter

    async def after_reload() -> list[bytes]:
        app = BrowserApp(str(root))
        app.load_cookies(saved)
        await app.start()
        return [(await visit(app, t))[0] for t in ("/", "/logout", "/")]

    assert asyncio.run(after_reload()) == [b"hello ada\n", b"bye\n", b"hello nobody\n"]
