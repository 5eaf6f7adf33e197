"""The request/response bridge without a browser: the page's Python half under CPython.

examples/http runs unchanged on the in-memory Stack: requests go in as the service worker
would send them (BrowserApp.exchange) and as raw HTTP/1.1 bytes on a connection of the
stack; answers that are the bridge's own (400, 502, 503, 504) carry X-Summon-Bridge, so an
app's 405 is told from one of summon's.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest

from summon.runtime.config import from_dict
from summon.targets.browser.inpage.boot import AppFailed, BrowserApp, framable, http_port

ROOT = Path(__file__).resolve().parents[4]
HTTP_EXAMPLE = ROOT / "examples" / "http"


@pytest.fixture(autouse=True)
def restore_interpreter_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """BrowserApp sets sys.path, sys.argv and imports the app, as the page's Python would."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if not name.startswith(("summon", "h11", "_pytest", "asyncio", "encodings")):
            del sys.modules[name]


def image_root(tmp: Path, module: str, source: str | None = None, **app: object) -> Path:
    """A root laid out as an image's (app.json, /app, /data/static) for the entry module:main."""
    root = tmp / "root"
    (root / "etc" / "summon").mkdir(parents=True)
    (root / "app").mkdir()
    if source is None:
        shutil.copyfile(HTTP_EXAMPLE / "app.py", root / "app" / f"{module}.py")
    else:
        (root / "app" / f"{module}.py").write_text(source)
    shutil.copytree(HTTP_EXAMPLE / "static", root / "data" / "static")
    doc = {
        "name": "t",
        "entry": {"kind": "function", "module": module, "function": "main"},
        "path": ["/app"],
        "data": {"static": "/data/static"},
        "network": "socket",
        "ports": ["80/tcp"],
        "env": {},
        "args": [],
        **app,
    }
    (root / "etc" / "summon" / "app.json").write_text(json.dumps(doc))
    return root


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_examples_http_answers_through_the_bridge(tmp_path: Path) -> None:
    root = image_root(tmp_path, "http_app")

    async def main() -> list[tuple[int, str | None, str | None, bytes]]:
        app = BrowserApp(str(root))
        await app.start()
        assert app.port == 80 and app.running
        out = []
        for method, target, body in [
            ("GET", "/", b""),
            ("GET", "/style.css?v=1", b""),
            ("HEAD", "/robots.txt", b""),
            ("POST", "/", b"name=x"),
            ("GET", "/missing", b""),
            ("GET", "/a b", b""),
        ]:
            r = await app.exchange(method, target, [("Accept", "*/*")], body, "site:8080")
            out.append((r.status, r.header("content-type"), r.header("x-summon-bridge"), r.body))
        return out

    got = run(main())
    index = (HTTP_EXAMPLE / "static" / "index.html").read_bytes()
    style = (HTTP_EXAMPLE / "static" / "style.css").read_bytes()
    assert got == [
        (200, "text/html; charset=utf-8", None, index),
        (200, "text/css; charset=utf-8", None, style),
        (200, "text/plain; charset=utf-8", None, b""),
        (405, "text/plain; charset=utf-8", None, b"405 Method Not Allowed\n"),  # the app's
        (404, "text/plain; charset=utf-8", None, b"404 Not Found\n"),
        (400, "text/plain; charset=utf-8", "1", got[5][3]),  # the bridge's: not sendable
    ]
    assert b"is not an origin-form path" in got[5][3]


def test_raw_http_bytes_on_a_connection_of_the_stack(tmp_path: Path) -> None:
    """Pipelined requests on one kept-alive connection, read back by h11 as a client."""
    root = image_root(tmp_path, "http_raw")

    async def main() -> bytes:
        app = BrowserApp(str(root))
        await app.start()
        reader, writer = app.stack.connect(80)
        writer.write(
            b"GET /robots.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"DELETE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 5)  # the app closes after the last
        writer.close()
        return data

    data = run(main())
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    statuses = []
    for method in (b"GET", b"HEAD", b"DELETE"):
        headers = [("Host", "t")] + ([("Connection", "close")] if method == b"DELETE" else [])
        client.send(h11.Request(method=method, target="/", headers=headers))
        client.send(h11.EndOfMessage())
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Response):
                statuses.append(event.status_code)
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
    assert statuses == [200, 200, 405]


def test_the_console_goes_to_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = image_root(tmp_path, "http_console")

    async def main() -> None:
        app = BrowserApp(str(root))
        await app.start()
        await app.exchange("GET", "/", [], b"", "h")

    run(main())
    out = capfd.readouterr().out
    assert "info: serving 3 files on port 80" in out
    assert "info: GET / 200" in out


SILENT = """
import asyncio
from summon.devices import Stack

async def main(stack: Stack) -> None:
    async def hold(reader, writer):
        try:
            await asyncio.sleep(3600)
        finally:
            writer.close()
    server = await stack.start_server(hold, 80)
    await server.serve_forever()
"""

GARBAGE = """
from summon.devices import Stack

async def main(stack: Stack) -> None:
    def answer(reader, writer):
        writer.write(b"SSH-2.0-not-http\\r\\n")
        writer.close()
    server = await stack.start_server(answer, 80)
    await server.serve_forever()
"""

STOPS = """
import asyncio
from summon.devices import Stack

async def main(stack: Stack) -> int:
    await stack.start_server(lambda r, w: w.close(), 80)
    await asyncio.sleep(0.01)
    return 3
"""


def test_an_app_that_never_answers_is_a_504_of_the_bridge(tmp_path: Path) -> None:
    root = image_root(tmp_path, "silent_app", SILENT)

    async def main() -> tuple[int, str | None]:
        app = BrowserApp(str(root), answer_timeout=0.2)
        await app.start()
        r = await app.exchange("GET", "/", [], b"", "h")
        return r.status, r.header("x-summon-bridge")

    assert run(main()) == (504, "1")


def test_an_answer_that_is_not_http_is_a_502_naming_why(tmp_path: Path) -> None:
    root = image_root(tmp_path, "garbage_app", GARBAGE)

    async def main() -> tuple[int, bytes]:
        app = BrowserApp(str(root))
        await app.start()
        r = await app.exchange("GET", "/", [], b"", "h")
        return r.status, r.body

    status, body = run(main())  # type: ignore[misc]
    assert status == 502
    assert b"not an HTTP/1.x status line" in body


def test_an_app_that_stopped_is_a_503_and_says_why_on_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = image_root(tmp_path, "stops_app", STOPS)

    async def main() -> int:
        app = BrowserApp(str(root))
        await app.start()
        await asyncio.sleep(0.05)
        return (await app.exchange("GET", "/", [], b"", "h")).status

    assert run(main()) == 503
    assert (
        "the app returned (exit status 3); it no longer answers requests" in capfd.readouterr().err
    )


@pytest.mark.parametrize(
    ("source", "app", "message"),
    [
        ("import not_a_module\n", {}, "ModuleNotFoundError: No module named 'not_a_module'"),
        ("def other(): pass\n", {}, "has no callable 'main'"),
        ("def main(x: int): pass\n", {}, "which is not a device"),
        ("def main():\n    return 0\n", {}, "returned (exit status 0) without listening"),
        (
            "async def main():\n    raise ValueError('boom')\n",
            {},
            "ValueError: boom",
        ),
        ("", {"entry": {"kind": "script", "path": "/app/x.py"}}, "is a script"),
    ],
)
def test_an_app_that_cannot_start_says_why(
    tmp_path: Path, source: str, app: dict[str, object], message: str
) -> None:
    root = image_root(tmp_path, "broken_app", source, **app)
    with pytest.raises(AppFailed) as failed:
        run(BrowserApp(str(root)).start())
    assert message in str(failed.value)


def test_requests_go_to_the_manifests_first_tcp_port() -> None:
    def cfg(ports: list[str]) -> object:
        return from_dict(
            {
                "name": "t",
                "entry": {"kind": "function", "module": "m", "function": "f"},
                "ports": ports,
            }
        )

    assert http_port(cfg(["53/udp", "8080/tcp", "80"])) == 8080  # type: ignore[arg-type]
    assert http_port(cfg(["443"])) == 443  # type: ignore[arg-type]
    assert http_port(cfg([])) is None  # type: ignore[arg-type]


APPS = ROOT / "tests" / "integration" / "apps"


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_wsgi_and_asgi_entries_are_served_by_the_runtimes_exchange(
    tmp_path: Path, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """No threads, as in a tab: the WSGI app is called synchronously, the ASGI app on the loop
    (its lifespan startup first)."""
    source = (APPS / f"{kind}_app" / "app.py").read_text()
    entry = {"kind": kind, "module": f"{kind}_served", "attr": "app"}
    root = image_root(tmp_path, f"{kind}_served", source, entry=entry, ports=["8000/tcp"])

    async def main() -> list[tuple[int, bytes, str | None]]:
        app = BrowserApp(str(root))
        await app.start()
        assert app.port == 8000
        out = []
        for method, target, body in [
            ("GET", "/", b""),
            ("POST", "/echo", b'{"a": 1}'),
            ("GET", "/nowhere", b""),
            ("GET", "/error", b""),
        ]:
            headers = [("Content-Type", "application/json")] if body else []
            r = await app.exchange(method, target, headers, body, "127.0.0.1:8080")
            out.append((r.status, r.body, r.header("x-summon-bridge")))
        return out

    got = run(main())
    greeting = b"hello from wsgi" if kind == "wsgi" else b"hello from asgi"
    assert got[0] == (200, greeting + b", 127.0.0.1\n", None)
    assert got[1] == (200, b'{"echo": {"a": 1}}', None)
    assert got[2] == (404, b"not found\n", None)
    assert got[3][0] == 500 and got[3][2] is None  # the runtime's answer for an app error
    out, err = capfd.readouterr()
    assert '"POST /echo HTTP/1.1" 200' in out  # the runtime's access log, on the Console
    assert "the error route fails on purpose" in err


STORE_APP = """
import asyncio
from summon.devices import KV_RW, Stack

async def main(stack: Stack, notes: KV_RW) -> None:
    notes.set("started", b"1", message="started")

    async def handle(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        notes.set("seen", str(len(notes.history())).encode(), message="seen")
        body = b"; ".join(c.message.encode() for c in notes.history())
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n"
                     % len(body) + body)
        await writer.drain()
        writer.close()

    server = await stack.start_server(handle, 80)
    await server.serve_forever()
"""


def test_a_kv_rw_store_on_a_volume_in_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a tab the volume is an IDBFS mount at its image path (worker.js); the store in it
    is summon.kv's folder store, as on every target."""
    monkeypatch.delenv("SUMMON_VOLUMES", raising=False)
    root = image_root(tmp_path, "store_app", STORE_APP, volumes=["/state"],
                      stores={"notes": "/state/notes"})  # fmt: skip
    (root / "state").mkdir()

    async def main() -> bytes:
        app = BrowserApp(str(root))
        await app.start()
        r = await app.exchange("GET", "/", [], b"", "site:8080")
        return r.body

    assert run(main()) == b"seen; started"
    # On the volume (the page's IDBFS): a Git repository, its commits in the journal so far.
    notes = root / "state" / "notes"
    assert (notes / "HEAD").is_file() and (notes / "summon-kv" / "journal.0").is_file()


@pytest.mark.parametrize("held", [True, False])
def test_a_tab_holding_its_volumes_is_not_warned_that_the_store_has_no_flock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    """Pyodide has no fcntl, so summon.kv warns that it cannot lock the store: on the page's
    error panel at every start of examples/todo, though the worker's Web Lock already makes
    the tab the volume's one opener. Without that lock (no navigator.locks) it still warns."""
    monkeypatch.delenv("SUMMON_VOLUMES", raising=False)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as in Pyodide
    root = image_root(tmp_path, "store_app", STORE_APP, volumes=["/state"],
                      stores={"notes": "/state/notes"})  # fmt: skip
    (root / "state").mkdir()

    async def main() -> int:
        app = BrowserApp(str(root), volumes_held=held)
        await app.start()
        return (await app.exchange("GET", "/", [], b"", "site:8080")).status

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run(main()) == 200
    said = [str(w.message) for w in caught if "no exclusive lock" in str(w.message)]
    warning = f"{root}/state/notes: no exclusive lock (this platform has no fcntl)"
    assert [m.split(";")[0] for m in said] == ([] if held else [warning])


FRAMED_APP = """
def app(environ, start_response):
    start_response("200 OK", [
        ("Content-Type", "text/html"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ])
    return [b"<title>home</title>"]
"""


def test_an_app_refusing_to_be_framed_still_shows_in_the_page_shells_frame(
    tmp_path: Path,
) -> None:
    """Django's default middleware says X-Frame-Options: DENY: its pages were a blank frame in
    the tab (the shell frames the app at the same origin). Other origins stay refused."""
    entry = {"kind": "wsgi", "module": "framed", "attr": "app"}
    root = image_root(tmp_path, "framed", FRAMED_APP, entry=entry, ports=["8000/tcp"])

    async def main() -> list[tuple[str, str]]:
        app = BrowserApp(str(root))
        await app.start()
        return (await app.exchange("GET", "/", [], b"", "site:8080")).headers

    headers = {k.lower(): v for k, v in run(main())}  # type: ignore[attr-defined]
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["content-security-policy"] == "default-src 'self';frame-ancestors 'self'"


@pytest.mark.parametrize(
    ("name", "value", "framable_as"),
    [
        ("X-Frame-Options", "deny", "SAMEORIGIN"),
        ("X-Frame-Options", "SAMEORIGIN", "SAMEORIGIN"),
        ("Content-Security-Policy", "frame-ancestors 'none'", "frame-ancestors 'self'"),
        ("content-security-policy", "frame-ancestors https://a.example",
         "frame-ancestors 'self' https://a.example"),
        ("Content-Security-Policy", "frame-ancestors 'self'", "frame-ancestors 'self'"),
        ("Content-Security-Policy-Report-Only", "img-src *; frame-ancestors 'NONE'",
         "img-src *;frame-ancestors 'self'"),
        ("Content-Security-Policy", "script-src 'none'", "script-src 'none'"),
        ("X-Other", "DENY", "DENY"),
    ],
)  # fmt: skip
def test_framing_refusals_are_narrowed_to_other_origins(
    name: str, value: str, framable_as: str
) -> None:
    assert framable([(name, value)]) == [(name, framable_as)]
