"""The status server: the page, the JSON and the Prometheus text, over a real h11 exchange."""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.client
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from summon.gateway.status import StatusServer, escape, metrics_text, page

SERVICE: dict[str, Any] = {
    "name": "web", "address": "127.1.2.3", "ports": [80], "image": "http:gw",
    "target": "sandbox", "state": "up", "error": "", "boots": 2, "failures": 1,
    "cold_requests": 3, "warm_requests": 4, "open_connections": 0,
    "last_boot_seconds": 0.31, "memory_bytes": 9_000_000,
    "bom": {"python": "3.11.2", "modules": 163, "packages": ["h11 0.16.0", "idna 3.7"]},
    "thaws": 5, "last_thaw_seconds": 0.0004, "booted_at": 1000.0,
    "boot_history": [
        {"at": 990.0, "seconds": 0.31, "how": "boot"},
        {"at": 995.0, "seconds": 0.0004, "how": "thaw"},
    ],
    "runtime": {"seq": 4, "gc0": 152, "gc1": 13, "gc2": 1, "blocks": 52810, "rss": 11534336,
                "uptime": 42.5, "accepted": 17, "active": 2, "requests": 31},
}  # fmt: skip


def test_metrics_text() -> None:
    down = {**SERVICE, "name": "db", "state": "down", "memory_bytes": None, "runtime": {}}
    text = metrics_text([SERVICE, down])
    assert "# TYPE summon_gateway_boots_total counter" in text
    assert 'summon_gateway_boots_total{service="web"} 2\n' in text
    assert 'summon_gateway_up{service="web"} 1\n' in text
    assert 'summon_gateway_up{service="db"} 0\n' in text
    assert 'summon_gateway_last_boot_seconds{service="web"} 0.31\n' in text
    assert 'summon_gateway_memory_bytes{service="db"}' not in text  # no instance: no sample
    assert 'summon_gateway_state{service="db",state="down"} 1\n' in text
    assert 'summon_gateway_thaws_total{service="web"} 5\n' in text
    # The app's own figures, from inside the instance.
    assert 'summon_app_gc_collections_total{service="web",generation="0"} 152\n' in text
    assert 'summon_app_gc_collections_total{service="web",generation="2"} 1\n' in text
    assert 'summon_app_allocated_blocks{service="web"} 52810\n' in text
    assert 'summon_app_resident_bytes{service="web"} 11534336\n' in text
    assert 'summon_app_connections_open{service="web"} 2\n' in text
    assert 'summon_app_requests_total{service="web"} 31\n' in text
    assert 'summon_app_requests_total{service="db"}' not in text


def test_page_shows_the_jitsu_figures() -> None:
    text = page([SERVICE], now=1042.0)
    assert "booted in 0.31 s, 42 s ago; thawed in 0.4 ms" in text
    assert "GC 152/13/1 (gen 0/1/2)" in text and "52,810 blocks" in text
    assert "RSS 11.5 MB" in text and "2 open / 17 connections" in text
    assert "31 requests" in text
    assert "<li>h11 0.16.0</li><li>idna 3.7</li>" in text  # every vendored package
    assert text.count("<rect ") == 2 and "<title>thaw 0.4 ms</title>" in text
    assert "<script" not in text


def test_a_start_that_restored_a_snapshot_is_said_so() -> None:
    # A gateway qemu service restored from its snapshot read "booted in", its bar a boot's.
    history = [
        {"at": 990.0, "seconds": 0.31, "how": "boot"},
        {"at": 995.0, "seconds": 0.0004, "how": "thaw"},
        {"at": 1000.0, "seconds": 0.22, "how": "restore"},
        {"at": 1001.0, "seconds": 0.0004, "how": "thaw"},
    ]
    text = page([{**SERVICE, "last_boot_seconds": 0.22, "boot_history": history}], now=1042.0)
    assert "restored in 0.22 s, 42 s ago" in text and "booted in" not in text
    assert "<title>restore 220.0 ms</title>" in text and "fill='#8e44ad'" in text
    assert "booted in 0.31 s" in page([SERVICE], now=1042.0)


def test_what_the_page_shows_is_escaped_as_html_escape_does() -> None:
    for text in ("a&b<c>\"d'e", "&amp;", "", "plain", "<<&&>>", "caf\u00e9 \u2603"):
        assert escape(text) == html.escape(text)
    hostile = {**SERVICE, "error": "<script>alert('x')</script>", "image": 'a"b:1'}
    text = page([hostile], now=1042.0)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text and "<script" not in text
    assert "a&quot;b:1" in text


async def _snapshot() -> list[dict[str, Any]]:
    return [SERVICE]


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[int]:
    """A StatusServer over SERVICE on a free local port, which it yields."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = StatusServer(_snapshot)
    await server.start("127.0.0.1", port)
    try:
        yield port
    finally:
        await server.close()


def test_served_over_http() -> None:
    def get(port: int, path: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        out = (r.status, r.getheader("content-type") or "", r.read())
        # A second request on the same connection: keep-alive works.
        conn.request("GET", path)
        assert conn.getresponse().read() == out[2]
        conn.close()
        return out

    async def main() -> None:
        async with _serving() as port:
            status, ctype, body = await asyncio.to_thread(get, port, "/")
            assert status == 200 and ctype.startswith("text/html")
            assert b"booted in 0.31 s" in body and b"Python 3.11.2" in body
            assert b"163 modules" in body and b"h11 0.16.0" in body
            status, _, body = await asyncio.to_thread(get, port, "/status.json")
            assert json.loads(body)["services"][0]["name"] == "web"
            status, ctype, body = await asyncio.to_thread(get, port, "/metrics")
            assert ctype.startswith("text/plain; version=0.0.4")
            status, _, _ = await asyncio.to_thread(get, port, "/nope")
            assert status == 404

    asyncio.run(asyncio.wait_for(main(), 20))


def test_an_http_1_0_client_is_answered_and_closed_at_once() -> None:
    """HTTP/1.0, or Connection: close: the server closes after the answer rather than wait
    (up to its read timeout) for a client that reads until the connection ends."""

    def fetch(port: int, request: bytes) -> tuple[bytes, float]:
        with socket.create_connection(("127.0.0.1", port), timeout=8) as client:
            client.sendall(request)  # and the client keeps its side open
            t0 = time.monotonic()
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
            return answer, time.monotonic() - t0

    async def main() -> None:
        async with _serving() as port:
            for request in (
                b"GET /status.json HTTP/1.0\r\n\r\n",
                b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ):
                answer, seconds = await asyncio.to_thread(fetch, port, request)
                assert answer.startswith(b"HTTP/1.1 200 ") and b'"web"' in answer
                assert seconds < 2, f"closed after {seconds:.1f} s"

    asyncio.run(asyncio.wait_for(main(), 30))


def _exchange(port: int, request: bytes) -> bytes:
    """Send request, then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=8) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_bad_requests_and_other_methods_are_answered_then_closed() -> None:
    """Not HTTP got the connection closed without a word; POST got the page; HEAD sent the
    headers and then closed the connection (h11 refused the body), dropping the next
    request on it."""

    async def main() -> None:
        async with _serving() as port:
            for request, status in (
                (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", b"400"),  # TLS hello
                (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
                (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", b"431"),
            ):
                answer = await asyncio.to_thread(_exchange, port, request)
                assert answer.startswith(b"HTTP/1.1 " + status + b" ")
                assert b"connection: close" in answer.lower()
            for method in (b"POST", b"DELETE", b"OPTIONS"):
                request = method + b" / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                answer = await asyncio.to_thread(_exchange, port, request)
                assert answer.startswith(b"HTTP/1.1 405 ") and b"allow: GET, HEAD" in answer
                assert b"<html" not in answer
            # h11 parses any HTTP/d.d: HTTP/2.0 got the page.
            answer = await asyncio.to_thread(_exchange, port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 505 ") and b"<html" not in answer
            # An absolute-form target (as a proxy sends it) got 404: it is the same page.
            answer = await asyncio.to_thread(
                _exchange,
                port,
                b"GET http://x/status.json?a=b HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET HTTP://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            json_answer, page_answer = answer.split(b"HTTP/1.1 ")[1:]
            assert json_answer.startswith(b"200 ") and b'"web"' in json_answer
            assert page_answer.startswith(b"200 ") and b"<html" in page_answer
            # HEAD: the GET's headers, no body, and the connection serves the next request.
            answer = await asyncio.to_thread(
                _exchange,
                port,
                b"HEAD /status.json HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            head, rest = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert rest.startswith(b"HTTP/1.1 200 ")  # no body between the two answers
            assert len(rest.split(b"\r\n\r\n", 1)[1]) == length

    asyncio.run(asyncio.wait_for(main(), 30))


def test_slow_clients_cannot_take_the_gateways_files(monkeypatch: Any) -> None:
    """Clients past MAX_CLIENTS wait in the listener's backlog, and a client that sends a
    request a byte at a time is closed at READ_TIMEOUT: 1,400 idle connections to the
    status port took every file of a gateway limited to 1,400, and its services' listeners
    could accept nothing ("accept on port 80: Too many open files")."""
    import os

    from summon.gateway import status

    monkeypatch.setattr(status, "MAX_CLIENTS", 2)
    monkeypatch.setattr(status, "READ_TIMEOUT", 1.0)

    def files() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        async with _serving() as port:
            before = files()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
            await asyncio.sleep(0.3)  # the server's loop runs: it accepts what it will
            assert files() - before - len(idle) <= 2  # the server's own: two clients at most
            for client in idle:
                client.close()
            # The slots free again: a client that asks now is answered.
            answer = await asyncio.to_thread(
                _exchange,
                port,
                b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 200 ")

            def trickle() -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=8) as client:
                    try:
                        for byte in b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n":
                            client.send(bytes([byte]))
                            time.sleep(0.1)  # each byte well within READ_TIMEOUT of the last
                        return client.recv(65536)
                    except OSError:
                        return b""

            assert await asyncio.to_thread(trickle) == b""  # closed, never answered

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_client_that_does_not_read_its_answers_is_let_go(monkeypatch: Any) -> None:
    """Requests sent without end and answers never read: the server waited to write for as
    long as the client liked, and held one of its MAX_CLIENTS slots all along."""
    from summon.gateway import status

    monkeypatch.setattr(status, "READ_TIMEOUT", 1.0)
    asked = 20_000  # answers of ~2 KB each: far more than the sockets' buffers hold

    def never_read(port: int) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            client.setblocking(False)
            requests = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * asked
            sent, until = 0, time.monotonic() + 4  # well past READ_TIMEOUT
            while time.monotonic() < until and sent < len(requests):
                try:
                    sent += client.send(requests[sent:])
                except BlockingIOError:
                    time.sleep(0.05)
            time.sleep(max(0.0, until - time.monotonic()))
            client.setblocking(True)
            answered = b""
            with contextlib.suppress(ConnectionError):
                while chunk := client.recv(1 << 20):
                    answered += chunk
            return answered.count(b"HTTP/1.1 200 ")

    async def main() -> None:
        async with _serving() as port:
            answered = await asyncio.to_thread(never_read, port)
            assert 0 < answered < asked  # closed while answers were still owed

    asyncio.run(asyncio.wait_for(main(), 60))
