"""WebSocket on the runtime's server (runtime/http/websocket.py): ASGI apps, bare and
Starlette's, served on loopback and spoken to by websocket-client (an independent client) and
by hand: the handshake and the ones refused, apps that do not accept, every way a connection
ends (the client, the app, the server's stop, a silent client's pings), and an image without
wsproto. Frames made by hand and the limits on messages are in test_http_websocket_frames.py.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from typing import Any

import pytest
import websocket  # websocket-client
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from test_http_server import Served, run
from ws_wire import ACCEPT, Echo, Message, ended, frame, handshake, opened, read_frame

from summon.runtime.http.settings import Settings


def connect(port: int, path: str = "/ws", **options: Any) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=5, **options)


def test_a_real_client_talks_to_a_bare_asgi_app_text_binary_ping_subprotocol() -> None:
    app = Echo(subprotocol="chat.v2")

    def client(port: int) -> tuple[Any, ...]:
        ws = connect(port, "/ws?room=1", subprotocols=["chat.v1", "chat.v2"])
        ws.send("héllo")
        text = ws.recv()
        ws.send_binary(bytes(range(256)) * 300)  # 76,800 bytes: a 64-bit length frame
        data = ws.recv()
        ws.ping(b"are you there")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        accepted = (ws.getsubprotocol(), ws.getheaders().get("x-app"))
        ws.close()
        return text, data, (opcode, frame.data), accepted

    async def test() -> None:
        async with Served(app, "asgi") as served:
            text, data, pong, accepted = await asyncio.to_thread(client, served.port)
            assert text == "héllo"
            assert data == bytes(range(256)) * 300
            assert pong == (websocket.ABNF.OPCODE_PONG, b"are you there")
            assert accepted == ("chat.v2", "1")
            for _ in range(100):
                if app.ends:
                    break
                await asyncio.sleep(0.01)
            assert app.ends == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
            assert app.send_after_end and isinstance(app.send_after_end[0], OSError)
            [scope] = app.scopes
            assert (scope["type"], scope["scheme"], scope["path"]) == ("websocket", "ws", "/ws")
            assert scope["query_string"] == b"room=1"
            assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
            assert "method" not in scope
            assert any('"GET /ws?room=1 HTTP/1.1" 101' in line for line in served.lines)

    run(test)


def test_a_starlette_websocket_route_and_its_http_routes_on_one_server() -> None:
    closed: list[int] = []

    async def shout(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                name = await ws.receive_text()
                if name == "bye":
                    await ws.close(code=4001)
                    return
                await ws.send_json({"hello": name.upper()})
        except WebSocketDisconnect as e:
            closed.append(e.code)

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    from starlette.routing import Route

    app = Starlette(routes=[Route("/", home), WebSocketRoute("/shout", shout)])

    def client(port: int) -> tuple[Any, ...]:
        ws = connect(port, "/shout")
        ws.send("ada")
        first = ws.recv()
        ws.send("bye")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        code = struct.unpack("!H", frame.data[:2])[0]
        ws.send_close(status=code)  # the answer to the server's close
        ws.shutdown()
        other = connect(port, "/shout")
        other.close()  # the client closes this time: Starlette's route sees 1000
        return first, opcode, code

    async def test() -> None:
        async with Served(app, "asgi") as served:
            first, opcode, code = await asyncio.to_thread(client, served.port)
            assert first == '{"hello":"ADA"}'
            assert (opcode, code) == (websocket.ABNF.OPCODE_CLOSE, 4001)
            reader, writer = await served.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b"home" in await asyncio.wait_for(reader.read(4096), 5)
            for _ in range(100):
                if closed:
                    break
                await asyncio.sleep(0.01)
            assert closed == [1000]

    run(test)


def test_the_handshake_answers_rfc_6455s_example_key() -> None:
    async def test() -> None:
        async with Served(Echo(), "asgi") as served:
            head, _ = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"sec-websocket-accept: " + ACCEPT + b"\r\n" in head.lower().replace(
                ACCEPT.lower(), ACCEPT
            )
            assert b"sec-websocket-extensions" not in head.lower()  # no compression offered

    run(test)


@pytest.mark.parametrize(
    ("extra", "status", "header"),
    [
        (b"Sec-WebSocket-Version: 8\r\n", b"426", b"sec-websocket-version: 13"),
        (b"", b"426", b"sec-websocket-version: 13"),
        (b"Sec-WebSocket-Version: 13\r\nContent-Length: 5\r\n", b"400", b""),
    ],
    ids=["version-8", "no-version", "a-body"],
)
def test_a_bad_handshake_is_refused_before_the_app_is_called(
    extra: bytes, status: bytes, header: bytes
) -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi") as served:
            head, _ = await handshake(served, extra)
            assert head.split(b" ")[1] == status
            assert header in head.lower()
            assert app.scopes == []

    run(test)


def test_a_key_that_is_not_16_bytes_is_refused() -> None:
    async def test() -> None:
        async with Served(Echo(), "asgi") as served:
            reader, writer = await served.connect()
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 400 ")

    run(test)


def refusing(how: str) -> Any:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await receive()
        if how == "close":
            await send({"type": "websocket.close", "code": 1000})
        elif how == "raise":
            raise RuntimeError("boom")
        elif how == "deny":
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer")]})  # fmt: skip
            await send({"type": "websocket.http.response.body", "body": b"log in first"})

    return app


@pytest.mark.parametrize(
    ("how", "status"), [("close", 403), ("raise", 500), ("return", 500), ("deny", 401)]
)
def test_an_app_that_does_not_accept_gets_an_http_answer(how: str, status: int) -> None:
    async def test() -> None:
        async with Served(refusing(how), "asgi") as served:
            head, (reader, _) = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
            assert head.startswith(b"HTTP/1.1 %d " % status)
            if how == "deny":
                assert b"www-authenticate: Bearer" in head
                assert await asyncio.wait_for(reader.readexactly(12), 5) == b"log in first"
            assert any(f'" {status} ' in line for line in served.lines)

    run(test)


def test_a_client_that_vanishes_is_a_1006_disconnect_for_the_app() -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi") as served:
            reader, writer = await opened(served)
            writer.write(frame(0x1, b"hi"))
            assert await read_frame(reader) == (0x1, b"hi")
            writer.close()
            assert await ended(app) == {"type": "websocket.disconnect", "code": 1006,
                                        "reason": ""}  # fmt: skip

    run(test)


def test_the_server_stop_closes_websockets_with_1001_within_the_grace() -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi", Settings(grace=3)) as served:
            reader, writer = await opened(served)
            stopping = asyncio.create_task(served.stop())
            opcode, payload = await read_frame(reader)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1001)
            writer.write(frame(0x8, payload[:2]))  # the client answers the close
            assert await asyncio.wait_for(stopping, 5) == 0
            assert (await ended(app))["code"] == 1001

    run(test)


def test_an_app_close_sends_its_code_and_reason() -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi") as served:
            reader, writer = await opened(served)
            writer.write(frame(0x1, b"close please"))
            opcode, payload = await read_frame(reader)
            assert (opcode, payload) == (0x8, struct.pack("!H", 4000) + b"as asked")
            writer.write(frame(0x8, payload[:2]))
            assert (await ended(app))["code"] == 4000
            assert await asyncio.wait_for(reader.read(), 5) == b""

    run(test)


def test_an_upgrade_to_a_wsgi_app_or_to_another_protocol_stays_plain_http() -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]

    async def test() -> None:
        async with Served(wsgi, "wsgi") as served:
            head, _ = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
        app = Echo()
        async with Served(app, "asgi") as served:
            reader, writer = await served.connect()
            writer.write(
                b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert app.scopes[0]["type"] == "http"

    run(test)


def test_an_app_that_never_reads_still_hears_the_server_stop_and_its_client_the_1001() -> None:
    """The reader stops reading once QUEUE_MESSAGES wait for the app; the stop still gets
    through to the client at once, not when the grace runs out."""

    async def deaf(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(3600)  # never reads again

    async def test() -> None:
        async with Served(deaf, "asgi", Settings(grace=3)) as served:
            reader, writer = await opened(served)
            writer.write(b"".join(frame(0x1, b"m%d" % i) for i in range(40)))
            await asyncio.sleep(0.2)  # 16 queued; the reader waits for room
            stopping = asyncio.create_task(served.stop())
            opcode, payload = await asyncio.wait_for(read_frame(reader), 1)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1001)
            await stopping  # the app itself is cut off at the end of the grace

    run(test)


def test_an_image_without_wsproto_answers_501_and_says_why_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image whose manifest excluded wsproto: upgrades get 501, the server goes on."""
    monkeypatch.setitem(sys.modules, "summon.runtime.http.websocket", None)  # ImportError

    async def test() -> None:
        async with Served(Echo(), "asgi") as served:
            for _ in range(2):
                head, _ = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
                assert head.startswith(b"HTTP/1.1 501 ")
            reader, writer = await served.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert b"plain http" in await asyncio.wait_for(reader.read(4096), 5)

    run(test)
    assert capsys.readouterr().err.count("WebSocket requests are answered 501") == 1


def test_a_silent_client_is_pinged_and_one_that_never_answers_is_closed() -> None:
    """A client gone without a FIN would hold its connection (and keep a gateway's service
    up) forever: after ws_ping of silence it gets a ping, after as long again it is closed."""
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi", Settings(ws_ping=0.3)) as served:
            reader, writer = await opened(served)
            assert await asyncio.wait_for(read_frame(reader), 2) == (0x9, b"summon")
            writer.write(frame(0xA, b"summon"))  # answered: the connection stays
            assert await asyncio.wait_for(read_frame(reader), 2) == (0x9, b"summon")
            # This time no answer, as from a client whose host vanished.
            opcode, payload = await asyncio.wait_for(read_frame(reader), 2)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1011)
            assert (await ended(app))["code"] == 1006

    run(test)


def test_a_wsgi_app_given_an_upgrade_answers_it_as_http_and_the_server_says_why_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """flask-sock's route (simple-websocket takes the socket from werkzeug.socket) answered
    500 "Cannot obtain socket from WSGI environment", with nothing saying what to do."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"no socket\n"]

    async def test() -> None:
        async with Served(app, "wsgi") as served:
            for _ in range(2):
                head, _ = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
                assert head.startswith(b"HTTP/1.1 400 ")

    run(test)
    err = capsys.readouterr().err
    assert err.count("summon: a WebSocket upgrade (GET /ws) reached a WSGI app") == 1
    assert "serve WebSocket routes from an ASGI app" in err
