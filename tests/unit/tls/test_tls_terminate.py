"""TLS the runtime serves for an app (manifest tls.ports): the app sees plain connections.

TLSStack over the socket-mode Stack, on loopback, with both backends; a real stdlib ssl client
checks the certificate against the test CA. A client that does not speak TLS never reaches the
app: its handshake fails, is counted, and the connection closes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
from collections.abc import Callable

import pytest
from tls_pair import BACKENDS, device
from tls_pki import PKI

from summon.runtime.socket_stack import SocketStack
from summon.tls.terminate import TLSStack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_app_gets_plain_bytes_and_the_client_gets_tls(pki: PKI, backend: str) -> None:
    port = free_port()
    seen: list[bytes] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readline()
        seen.append(data)
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, str | None]:
        inner = SocketStack("127.0.0.1", {(443, "tcp"): port})
        context = device(str(pki.folder), backend).server(cert="server.crt", key="server.key")
        stack = TLSStack(inner, context, frozenset({443}))
        server = await stack.start_server(app, 443)
        client = ssl.create_default_context(cafile=pki.path("ca"))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"hello over tls\n")
        answer = await reader.read()
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, version

    answer, version = asyncio.run(asyncio.wait_for(main(), 60))
    assert answer == b"HELLO OVER TLS\n"
    assert seen == [b"hello over tls\n"]  # the app read plain text
    assert version in ("TLSv1.2", "TLSv1.3")


def test_a_client_without_tls_never_reaches_the_app(pki: PKI) -> None:
    port = free_port()
    called: list[bool] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        called.append(True)
        writer.close()

    async def main() -> tuple[bytes, int]:
        inner = SocketStack("127.0.0.1", {(80, "tcp"): port})
        context = device(str(pki.folder), "openssl").server(cert="server.crt", key="server.key")
        stack = TLSStack(inner, context, frozenset({80}))
        server = await stack.start_server(app, 80)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        answer = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, stack.failed

    answer, failed = asyncio.run(asyncio.wait_for(main(), 60))
    assert not called and failed == 1
    assert b"HTTP/1.0 200" not in answer  # whatever came back, it was no answer of the app's


def test_other_ports_pass_through_untouched(pki: PKI) -> None:
    port = free_port()

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        inner = SocketStack("127.0.0.1", {(8080, "tcp"): port})
        context = device(str(pki.folder), "openssl").server(cert="server.crt", key="server.key")
        stack = TLSStack(inner, context, frozenset({443}))
        server = await stack.start_server(app, 8080)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"plain\n")
        answer = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return answer

    assert asyncio.run(asyncio.wait_for(main(), 30)) == b"plain\n"


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl s_client")
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_runtime_http_server_refuses_an_h2_only_client_with_no_application_protocol(
    pki: PKI, backend: str
) -> None:
    """The runtime's own HTTP server behind TLS with tls.alpn = ["http/1.1"] (as in
    examples/https): `s_client -alpn h2` gets alert 120 and the app is never called;
    `-alpn h2,http/1.1` is served over http/1.1."""
    from summon.runtime.http.server import HTTPServer
    from summon.runtime.http.settings import Settings

    port = free_port()
    lines: list[str] = []
    calls: list[str] = []

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        calls.append(str(environ["PATH_INFO"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    async def s_client(alpn: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", pki.path("ca"), "-alpn", alpn, "-ign_eof",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        request = b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        out, _ = await asyncio.wait_for(proc.communicate(request), 30)
        return out.decode(errors="replace")

    async def main() -> tuple[str, str]:
        inner = SocketStack("127.0.0.1", {(443, "tcp"): port})
        context = device(str(pki.folder), backend).server(
            cert="server.crt", key="server.key", alpn=["http/1.1"]
        )
        stack = TLSStack(inner, context, frozenset({443}))
        server = HTTPServer(app, "wsgi", Settings(), lines.append)
        task = asyncio.create_task(server.serve(stack, 443, "test:app"))
        try:
            for _ in range(200):
                if any("serving" in line for line in lines):
                    break
                await asyncio.sleep(0.01)
            return await s_client("h2"), await s_client("h2,http/1.1")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    refused, served = asyncio.run(asyncio.wait_for(main(), 90))
    assert "SSL alert number 120" in refused and "served" not in refused
    assert "ALPN protocol: http/1.1" in served and "served" in served
    assert calls == ["/x"]  # only the second client reached the app


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tls_error_after_the_handshake_is_one_line_not_the_apps_traceback(
    pki: PKI, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An app served over TLS unchanged (examples/http) knows nothing of summon.tls's errors:
    a client that broke TLS after the handshake (a heartbeat record, here) made its read raise
    ProtocolViolation out of the app, and the log got "Task exception was never retrieved"
    and a 20-line traceback. Now one line naming the peer and the reason; the app's own
    cleanup still runs (the error passes through it), and the next client is served."""
    import gc

    port = free_port()
    cleaned: list[bool] = []
    unhandled: list[dict[str, object]] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(100):  # an app expecting only OSErrors
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            cleaned.append(True)
            writer.close()

    def heartbeat_after_handshake(client: ssl.SSLContext) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                assert tls.recv(4) == b"ping"
                raw_copy = socket.socket(fileno=os.dup(tls.fileno()))
                raw_copy.sendall(bytes([24, 3, 3, 0, 3, 1, 0, 0]))  # a heartbeat record
                raw_copy.close()
                try:
                    tls.recv(10)
                except (OSError, ssl.SSLError):
                    pass

    def echo(client: ssl.SSLContext) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"next")
                return tls.recv(4)

    async def main() -> bytes:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, c: unhandled.append(c))
        inner = SocketStack("127.0.0.1", {(443, "tcp"): port})
        context = device(str(pki.folder), backend).server(cert="server.crt", key="server.key")
        stack = TLSStack(inner, context, frozenset({443}))
        server = await stack.start_server(app, 443)
        client = ssl.create_default_context(cafile=pki.path("ca"))
        await asyncio.to_thread(heartbeat_after_handshake, client)
        for _ in range(200):
            if cleaned:
                break
            await asyncio.sleep(0.01)
        answer = await asyncio.to_thread(echo, client)
        server.close()
        await server.wait_closed()
        gc.collect()  # a task whose exception nobody retrieved says so when it is collected
        await asyncio.sleep(0)
        return answer

    assert asyncio.run(asyncio.wait_for(main(), 60)) == b"next"
    assert cleaned[:1] == [True]
    assert unhandled == [], unhandled
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("tls: ")]
    assert len(lines) == 1, out
    assert "127.0.0.1:" in lines[0] and "on port 443" in lines[0], lines
    assert "unknown content type 24" in lines[0], lines
