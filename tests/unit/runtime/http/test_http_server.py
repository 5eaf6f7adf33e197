"""The served path: HTTPServer on Stack devices (kernel sockets on loopback, and summon.net's
direct stack over an in-memory wire), with real clients; graceful stop, thread pool bound,
timeouts and lingering close over real connections."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import h11
import pytest
from http_wire import parse_responses

from summon.net.ipv4 import parse_address
from summon.net.links import Link
from summon.net.stack import DirectStack
from summon.runtime.http.server import HTTPServer
from summon.runtime.http.settings import Settings
from summon.runtime.socket_stack import SocketStack

Message = dict[str, Any]
StartResponse = Callable[..., Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """An app served on 127.0.0.1 through SocketStack, in the test's event loop."""

    def __init__(self, app: Any, interface: str, settings: Settings | None = None) -> None:
        self.lines: list[str] = []
        self.port = free_port()
        self.server = HTTPServer(app, interface, settings or Settings(), self.lines.append)
        self.task: asyncio.Task[int] | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Served:
        stack = SocketStack("127.0.0.1", {(80, "tcp"): self.port})
        self.task = asyncio.create_task(self.server.serve(stack, 80, "test:app"))
        for _ in range(200):
            if any("serving" in line for line in self.lines):
                return self
            await asyncio.sleep(0.01)
        raise AssertionError(f"the server did not start: {self.lines}")

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def stop(self) -> int:
        """What SIGTERM does through init.run_async: cancel the serving task."""
        assert self.task is not None
        self.task.cancel()
        return await self.task

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer


async def read_response(reader: asyncio.StreamReader, head: bool = False) -> bytes:
    """Read exactly one response (an h11 client decides where it ends)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=b"HEAD" if head else b"GET", target=b"/",
                            headers=[(b"host", b"t")]))  # fmt: skip
    client.send(h11.EndOfMessage())
    raw = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(reader.read(65536), 10)
            raw += data
            client.receive_data(data)
            continue
        if type(event) is h11.EndOfMessage or type(event) is h11.ConnectionClosed:
            return raw


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def slow_wsgi(seconds: float, active: list[int] | None = None) -> Any:
    lock = threading.Lock()
    peak = [0, 0]  # now, highest

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with lock:
            peak[0] += 1
            peak[1] = max(peak)
        try:
            time.sleep(seconds if environ["PATH_INFO"] == "/slow" else 0)
        finally:
            with lock:
                peak[0] -= 1
        if active is not None:
            active[:] = [peak[1]]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done " + environ["PATH_INFO"].encode()]

    return app


def test_wsgi_graceful_stop_finishes_the_request_under_way_and_closes_idle_ones() -> None:
    async def test() -> None:
        async with Served(slow_wsgi(0.6), "wsgi") as served:
            idle_r, idle_w = await served.connect()
            idle_w.write(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(idle_r)  # served, now idle and kept alive
            slow_r, slow_w = await served.connect()
            slow_w.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.2)  # the slow request is in the app
            stopping = asyncio.create_task(served.stop())
            assert await asyncio.wait_for(idle_r.read(), 1) == b""  # the idle one: closed
            [response] = parse_responses(await read_response(slow_r))
            assert (response.status, response.body) == (200, b"done /slow")
            assert response.headers[b"connection"] == b"close"
            assert await asyncio.wait_for(slow_r.read(), 1) == b""
            assert await stopping == 0
            try:  # nothing listens any more
                await served.connect()
                raise AssertionError("still accepting after the stop")
            except OSError:
                pass
            assert sum(" 200 " in line for line in served.lines) == 2

    run(test)


def test_a_request_beyond_the_grace_is_cut_off() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await asyncio.sleep(3600)

    async def test() -> None:
        async with Served(app, "asgi", Settings(grace=0.3)) as served:
            reader, writer = await served.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.1)
            started = time.monotonic()
            assert await served.stop() == 0
            assert time.monotonic() - started < 2
            assert await asyncio.wait_for(reader.read(), 1) == b""

    run(test)


def test_wsgi_requests_run_at_most_threads_at_once() -> None:
    active: list[int] = []

    async def test() -> None:
        async with Served(slow_wsgi(0.15, active), "wsgi", Settings(threads=2)) as served:

            async def one() -> bytes:
                reader, writer = await served.connect()
                writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
                return await read_response(reader)

            results = await asyncio.gather(*(one() for _ in range(6)))
            assert all(parse_responses(r)[0].status == 200 for r in results)

    run(test)
    assert active == [2]


def test_a_slow_head_gets_408_over_a_socket() -> None:
    async def test() -> None:
        async with Served(slow_wsgi(0), "wsgi", Settings(head_timeout=0.2)) as served:
            reader, writer = await served.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost:")
            [response] = parse_responses(await read_response(reader))
            assert response.status == 408
            assert await asyncio.wait_for(reader.read(), 1) == b""

    run(test)


def test_an_idle_keep_alive_connection_is_closed() -> None:
    async def test() -> None:
        async with Served(slow_wsgi(0), "wsgi", Settings(keepalive_timeout=0.2)) as served:
            reader, writer = await served.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(reader)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 2) == b""
            assert time.monotonic() - started < 1.5

    run(test)


def test_a_413_reaches_a_client_still_sending_its_body() -> None:
    """Lingering close: closing with unread bytes would reset the connection under the 413."""

    def blocking_client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            body = b"x" * (4 << 20)
            s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
            try:
                s.sendall(body)
            except OSError:
                pass  # the server may stop reading; what matters is what we can read
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    async def test() -> None:
        async with Served(slow_wsgi(0), "wsgi", Settings(max_body=1000)) as served:
            data = await asyncio.to_thread(blocking_client, served.port)
            assert parse_responses(data)[0].status == 413

    run(test)


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_a_huge_chunk_size_gets_413_at_once_over_a_socket(interface: str) -> None:
    """A raw client declares a 281 TB chunk and sends none of it: 413 now, not 408 when the
    read timer (30 s) runs out."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"read it all"})

    async def test() -> None:
        served_app = slow_wsgi(0) if interface == "wsgi" else app
        async with Served(served_app, interface, Settings(max_body=1000)) as served:
            reader, writer = await served.connect()
            for part in (b"POST /up HTTP/1.1\r\nHost: t\r\n", b"Transfer-Encoding: chunked\r\n",
                         b"\r\n", b"ffffffff", b"ffff\r\n", b"x" * 10):  # fmt: skip
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.05)
            started = time.monotonic()
            [response] = parse_responses(await read_response(reader))
            assert response.status == 413 and time.monotonic() - started < 3
            assert await asyncio.wait_for(reader.read(), 3) == b""

    run(test)


def test_access_lines_name_the_client_request_status_size_and_time() -> None:
    async def test() -> None:
        async with Served(slow_wsgi(0), "wsgi") as served:
            reader, writer = await served.connect()
            writer.write(b"GET /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(reader)
            writer.close()
            for _ in range(100):  # the line is written as the response ends, just after
                if len(served.lines) > 1:
                    break
                await asyncio.sleep(0.01)
            [line] = [line for line in served.lines if "/x?y=1" in line]
            assert line.startswith("127.0.0.1 - - [")
            assert '] "GET /x?y=1 HTTP/1.1" 200 7 ' in line and line.endswith("ms")

    run(test)


def test_a_failing_lifespan_startup_stops_before_serving(capfd: Any) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def test() -> None:
        server = HTTPServer(app, "asgi", Settings(), lambda line: None)
        assert await server.serve(SocketStack("127.0.0.1"), free_port()) == 1

    run(test)
    assert "summon: the app's lifespan startup failed: no database" in capfd.readouterr().err


# --- the same server on summon.net's direct stack --------------------------------------------


class PairLink(Link):
    """One end of an AF_UNIX datagram socketpair: a frame link for DirectStack."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
        except OSError:
            pass

    def receive(self) -> list[bytes]:
        frames = []
        while len(frames) < 256:
            try:
                frames.append(self.sock.recv(70000))
            except BlockingIOError:
                break
        return frames

    def close(self) -> None:
        self.sock.close()


def test_an_asgi_app_serves_unchanged_on_the_direct_stack() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        message = await receive()
        body = f"{scope['method']} {scope['path']} {message['body'].decode()} {scope['client'][0]}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    async def test() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        server_stack = DirectStack(PairLink(a), b"\x02\0\0\0\0\x01", ip=parse_address("192.0.2.1"))
        client_stack = DirectStack(PairLink(b), b"\x02\0\0\0\0\x02", ip=parse_address("192.0.2.2"))
        lines: list[str] = []
        server = HTTPServer(app, "asgi", Settings(), lines.append)
        task = asyncio.create_task(server.serve(server_stack, 80))
        try:
            while not lines:
                await asyncio.sleep(0.01)
            reader, writer = await client_stack.open_connection("192.0.2.1", 80)
            writer.write(b"POST /direct HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
            writer.write(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")  # pipelined, kept alive
            first = parse_responses(await read_response(reader))
            second = parse_responses(await read_response(reader))
            assert first[0].body == b"POST /direct hi 192.0.2.2"
            assert second[0].body == b"GET /again  192.0.2.2"
            writer.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            server_stack.close()
            client_stack.close()

    run(test)


def test_with_no_threads_a_wsgi_app_runs_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A browser tab (Pyodide) has no threads: an entry function that serves a WSGI app with
    the runtime's server (examples/todo) gets each response whole, from the loop's thread."""
    monkeypatch.setattr(sys, "platform", "emscripten")
    threads: list[str] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        threads.append(threading.current_thread().name)
        assert environ["wsgi.multithread"] is False
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"on ", b"the loop"]

    async def test() -> None:
        async with Served(app, "wsgi") as served:
            assert served.server.pool is None
            reader, writer = await served.connect()
            for _ in range(2):  # keep-alive: the connection serves the next one too
                writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                raw = await read_response(reader)
                assert raw.startswith(b"HTTP/1.1 200 ") and b"on \r\n8\r\nthe loop" in raw, raw

    run(test)
    assert threads == [threading.main_thread().name] * 2


def test_a_client_reading_slower_than_the_minimum_rate_frees_its_wsgi_thread() -> None:
    """A slow reader takes a few bytes now and then: each restarted the silence timer, so a
    handful of them held every WSGI thread while others waited. Below min_send_rate, once
    the send buffer is full, it is dropped and its thread serves the next request."""
    chunk = b"x" * 65536

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/big":
            return (chunk for _ in range(512))  # 32 MiB, streamed
        return [b"small"]

    async def test() -> None:
        settings = Settings(threads=1, min_send_rate=256 * 1024)
        async with Served(app, "wsgi", settings) as served:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", served.port))
            slow_r, slow_w = await asyncio.open_connection(sock=sock)
            served.writers.append(slow_w)
            slow_w.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            await slow_r.read(1024)  # it has started: the one thread is this response's

            async def trickle() -> int:
                got = 0
                while data := await slow_r.read(1024):
                    got += len(data)
                    await asyncio.sleep(0.1)  # ~10 KiB/s
                return got

            reader = asyncio.ensure_future(trickle())
            t0 = time.monotonic()
            _r, w = await served.connect()
            w.write(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            [response] = parse_responses(await read_response(_r))
            assert response.body == b"small"
            assert time.monotonic() - t0 < 8  # not once the 32 MiB have trickled out
            reader.cancel()  # (what the kernel had buffered still trickles in)

    run(test)


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_requests_pipelined_before_a_half_close_are_all_answered(interface: str) -> None:
    """`printf 'GET /a ... GET /b ...' | nc -N`: the FIN follows the requests at once."""

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    async def asgi(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        assert (await receive())["type"] == "http.request"
        # As a framework watching for the client leaving does: this read sees the FIN.
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async def test() -> None:
        async with Served(wsgi if interface == "wsgi" else asgi, interface) as served:
            reader, writer = await served.connect()
            writer.write(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
            writer.write_eof()
            raw = await asyncio.wait_for(reader.read(), 10)  # to the server's close
            assert [r.body for r in parse_responses(raw)] == [b"/a", b"/b"]

    run(test)


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_a_large_response_is_not_copied_whole_into_the_send_buffer(interface: str) -> None:
    """A 4 MB body (Flask's `return b"y" * 4_000_000`): the server once joined it to its
    head and handed it to the transport in one write, which kept what the client had not
    taken as another copy; nine clients that asked for it and read nothing put a 128M
    sandbox out of memory. Now the server's own allocations stay small."""
    import tracemalloc

    body = b"y" * 4_000_000  # made before tracing: the app's, not the server's

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]

    async def asgi(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    async def test() -> None:
        async with Served(wsgi if interface == "wsgi" else asgi, interface) as served:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow taker
            sock.connect(("127.0.0.1", served.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            served.writers.append(writer)
            tracemalloc.start()
            try:
                writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
                got = 0
                while got < len(body):
                    data = await asyncio.wait_for(reader.read(65536), 30)
                    assert data, "the response was cut short"
                    got += len(data)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 1_000_000, f"{peak} bytes allocated to serve a 4 MB body"

    run(test)
