"""The http example: the site, the sans-IO connection (paired with an h11 client), the server."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summon.runtime.posix_devices import FolderKV, StdoutConsole
from summon.runtime.socket_stack import SocketStack

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "http"
STATIC = EXAMPLE / "static"
INDEX = (STATIC / "index.html").read_bytes()


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_http_app", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = _load()


def connection(root: Path = STATIC) -> Any:  # an app.HTTPConnection
    return app.HTTPConnection(app.Site(FolderKV(str(root))))


def responses(data: bytes, methods: list[bytes]) -> list[tuple[h11.Response, bytes]]:
    """Parse the server's bytes as the answers to requests with these methods, in order."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    out = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
        client.send(h11.EndOfMessage())
        response, body = None, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        assert response is not None
        out.append((response, body))
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
    assert client.next_event() in (h11.NEED_DATA, h11.PAUSED)  # nothing left over
    return out


def header(response: h11.Response, name: bytes) -> bytes | None:
    values = [v for k, v in response.headers if k == name.lower()]
    assert len(values) <= 1, f"{name!r} appears {len(values)} times"
    return values[0] if values else None


def get(target: str, method: str = "GET", extra: str = "") -> str:
    return f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"


def test_get_index() -> None:
    conn = connection()
    [(response, body)] = responses(conn.receive(get("/").encode()), [b"GET"])
    assert response.status_code == 200
    assert header(response, b"Content-Type") == b"text/html; charset=utf-8"
    assert header(response, b"Content-Length") == str(len(INDEX)).encode()
    assert header(response, b"Server") == b"summon-http"
    assert header(response, b"Date") is not None
    assert body == INDEX
    assert not conn.closed


@pytest.mark.parametrize(
    ("target", "content_type", "file"),
    [
        ("/style.css", b"text/css; charset=utf-8", "style.css"),
        ("/robots.txt", b"text/plain; charset=utf-8", "robots.txt"),
        ("/index.html?utm=x#top", b"text/html; charset=utf-8", "index.html"),
        ("/?a=b", b"text/html; charset=utf-8", "index.html"),
        ("/style%2Ecss", b"text/css; charset=utf-8", "style.css"),
    ],
)
def test_content_types(target: str, content_type: bytes, file: str) -> None:
    [(response, body)] = responses(connection().receive(get(target).encode()), [b"GET"])
    assert (response.status_code, header(response, b"Content-Type")) == (200, content_type)
    assert body == (STATIC / file).read_bytes()


def test_head_sends_the_headers_of_get_without_the_body() -> None:
    conn = connection()
    out = conn.receive(get("/", "HEAD").encode())
    [(response, body)] = responses(out, [b"HEAD"])
    assert response.status_code == 200
    assert header(response, b"Content-Length") == str(len(INDEX)).encode()
    assert body == b"" and out.endswith(b"\r\n\r\n")
    assert not conn.closed


@pytest.mark.parametrize(
    "target", ["/missing", "/../etc/passwd", "/%2e%2e/etc/passwd", "/a/..%2Fb", "//x", "/%00"]
)
def test_not_found_keeps_the_connection(target: str) -> None:
    conn = connection()
    [(response, body)] = responses(conn.receive(get(target).encode()), [b"GET"])
    assert (response.status_code, body) == (404, b"404 Not Found\n")
    assert header(response, b"Content-Type") == b"text/plain; charset=utf-8"
    assert not conn.closed


@pytest.mark.parametrize("target", ["/%zz", "/%4", "/%ff%fe", "*", "http://t/"])
def test_bad_targets(target: str) -> None:
    [(response, _)] = responses(connection().receive(get(target).encode()), [b"GET"])
    assert response.status_code == 400


def test_other_methods_are_not_allowed() -> None:
    conn = connection()
    out = conn.receive(get("/", "POST", "Content-Length: 5\r\n").encode() + b"hello")
    [(response, _)] = responses(out, [b"POST"])
    assert (response.status_code, header(response, b"Allow")) == (405, b"GET, HEAD")
    assert not conn.closed


def test_declared_body_too_large() -> None:
    conn = connection()
    out = conn.receive(get("/", "POST", "Content-Length: 100000\r\n").encode())
    [(response, body)] = responses(out, [b"POST"])
    assert (response.status_code, body) == (413, b"413 Content Too Large\n")
    assert header(response, b"Connection") == b"close"
    assert conn.closed
    assert conn.receive(b"x" * 1000) == b""


def test_chunked_body_too_large() -> None:
    conn = connection()
    out = conn.receive(get("/", "POST", "Transfer-Encoding: chunked\r\n").encode())
    assert out == b""
    chunk = b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
    assert conn.receive(chunk) == b""  # 32 KiB: still within bounds
    out = conn.receive(chunk * 2)
    [(response, _)] = responses(out, [b"POST"])
    assert response.status_code == 413 and conn.closed


@pytest.mark.parametrize("chunk", [100, 100_000], ids=["in pieces", "whole"])
def test_headers_too_large(chunk: int) -> None:
    conn = connection()
    data = get("/", extra="X-Big: " + "a" * 20000 + "\r\n").encode()
    out = b"".join(conn.receive(data[i : i + chunk]) for i in range(0, len(data), chunk))
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert conn.closed


def test_unsupported_http_version() -> None:
    conn = connection()
    out = conn.receive(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert conn.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_close(request_bytes: bytes) -> None:
    conn = connection()
    out = conn.receive(request_bytes)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nconnection: close\r\n" in out.lower()
    assert conn.closed


def test_keep_alive_and_pipelining() -> None:
    conn = connection()
    out = conn.receive((get("/") + get("/style.css", "HEAD") + get("/missing")).encode())
    answers = responses(out, [b"GET", b"HEAD", b"GET"])
    assert [r.status_code for r, _ in answers] == [200, 200, 404]
    assert not conn.closed and conn.idle
    [(response, _)] = responses(conn.receive(get("/robots.txt").encode()), [b"GET"])
    assert response.status_code == 200


@pytest.mark.parametrize(
    "request_text", [get("/", extra="Connection: close\r\n"), "GET / HTTP/1.0\r\n\r\n"]
)
def test_connection_close_and_http_1_0(request_text: str) -> None:
    conn = connection()
    out = conn.receive(request_text.encode())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert conn.closed


def test_end_of_stream_closes() -> None:
    conn = connection()
    conn.receive(get("/").encode())
    assert conn.receive(b"") == b"" and conn.closed


def test_byte_at_a_time_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "http_date", lambda: b"Thu, 01 Jan 1970 00:00:00 GMT")
    data = (get("/") + get("/style.css", "HEAD") + get("/nope")).encode()
    whole = connection().receive(data)
    conn = connection()
    assert b"".join(conn.receive(data[i : i + 1]) for i in range(len(data))) == whole


def test_folders_redirect_to_their_index(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_bytes(b"docs")
    (tmp_path / "empty").mkdir()
    conn = connection(tmp_path)
    out = conn.receive((get("/docs?x") + get("/docs/") + get("/empty")).encode())
    answers = responses(out, [b"GET", b"GET", b"GET"])
    assert answers[0][0].status_code == 301
    assert header(answers[0][0], b"Location") == b"/docs/"
    assert answers[1][1] == b"docs"
    assert answers[2][0].status_code == 404


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_or_a_close(data: bytes) -> None:
    conn = connection()
    out = conn.receive(data) + conn.receive(b"")
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
    assert conn.closed


def test_probe() -> None:
    app.probe()


def test_server_over_loopback_and_clean_shutdown() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_stream = io.StringIO()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", {(80, "tcp"): port})
        kv = FolderKV(str(STATIC))
        server = asyncio.create_task(app.main(stack, kv, StdoutConsole("info", log_stream)))
        for _ in range(100):
            if "serving" in log_stream.getvalue():
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((get("/") + get("/robots.txt")).encode())
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2 or not data.endswith(b"Disallow:\n"):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk
            data += chunk
        server.cancel()  # what the runtime does on SIGTERM
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(server, 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and our connection closed
        writer.close()
        await writer.wait_closed()

    asyncio.run(scenario())
    assert log_stream.getvalue().splitlines() == [
        "info: serving 3 files on port 80",
        f"info: GET / 200 {len(INDEX)}",
        f"info: GET /robots.txt 200 {(STATIC / 'robots.txt').stat().st_size}",
        "info: stopped",
    ]
