"""WebSocket on the runtime's server (runtime/http/websocket.py): ASGI apps, bare and
Starlette's, served on loopback and spoken to by websocket-client (an independent client) and
by hand-made frames for what no polite client sends."""

from __future__ import annotations

import asyncio
import os
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

from summon.runtime.http.settings import Settings

Message = dict[str, Any]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # and its answer


class Echo:
    """A bare ASGI app: echoes messages, records what it was given and how it ended."""

    def __init__(self, subprotocol: str | None = None) -> None:
        self.subprotocol = subprotocol
        self.scopes: list[Message] = []
        self.ends: list[Message] = []
        self.send_after_end: list[BaseException] = []

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain http"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": self.subprotocol,
                    "headers": [(b"x-app", b"1")]})  # fmt: skip
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ends.append(message)
                try:
                    await send({"type": "websocket.send", "text": "too late"})
                except OSError as e:
                    self.send_after_end.append(e)
                return
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4000, "reason": "as asked"})
                continue
            reply = {k: v for k, v in message.items() if k in ("text", "bytes") and v is not None}
            await send({"type": "websocket.send", **reply})


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


async def handshake(served: Served, extra: bytes = b"", path: bytes = b"/ws") -> tuple[bytes, Any]:
    """Send an upgrade request by hand; the response head and the streams."""
    reader, writer = await served.connect()
    writer.write(
        b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\n" + extra + b"\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, (reader, writer)


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


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame made by hand (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame: (opcode, payload). Server frames are never masked."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    assert not second & 0x80, "a server frame was masked"
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first & 0x0F, await reader.readexactly(n)


async def opened(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    head, streams = await handshake(served, b"Sec-WebSocket-Version: 13\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    return streams  # type: ignore[no-any-return]


async def ended(app: Echo) -> Message:
    for _ in range(300):
        if app.ends:
            return app.ends[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the app never heard of the end")


def test_fragments_are_joined_and_control_frames_between_them_answered() -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi") as served:
            reader, writer = await opened(served)
            writer.write(frame(0x1, b"frag", fin=False) + frame(0x9, b"p")
                         + frame(0x0, "ment€".encode(), fin=True))  # fmt: skip
            assert await read_frame(reader) == (0xA, b"p")  # the pong first
            assert await read_frame(reader) == (0x1, "fragment€".encode())
            writer.write(frame(0x8, struct.pack("!H", 1000)))
            assert await read_frame(reader) == (0x8, struct.pack("!H", 1000))
            assert await asyncio.wait_for(reader.read(), 5) == b""  # and the socket closes
            assert (await ended(app))["code"] == 1000

    run(test)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x1, b"x", masked=False), 1002),  # RFC 6455 5.1: clients mask every frame
        (frame(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (frame(0x3, b"?"), 1002),  # a reserved opcode
    ],
    ids=["unmasked", "bad-utf8", "reserved-opcode"],
)
def test_a_protocol_error_closes_with_its_code(bad: bytes, code: int) -> None:
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi") as served:
            reader, writer = await opened(served)
            writer.write(bad)
            opcode, payload = await read_frame(reader)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, code)
            assert (await ended(app))["code"] == code

    run(test)


def huge_frame_begun() -> bytes:
    """The head of one masked binary frame that says 10 MB, and its first 200 kB."""
    key = os.urandom(4)
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 10_000_000) + key
    return head + bytes(b ^ key[i % 4] for i, b in enumerate(b"z" * 200_000))


@pytest.mark.parametrize("whole", [False, True], ids=["fragments", "one-frame-in-part"])
def test_a_message_over_the_body_limit_closes_with_1009(whole: bool) -> None:
    """Also a single frame that only says it is huge: refused as its bytes come, never
    buffered to its announced length."""
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi", Settings(max_body=1000)) as served:
            reader, writer = await opened(served)
            if whole:
                writer.write(huge_frame_begun())
            else:
                writer.write(frame(0x2, b"a" * 600, fin=False) + frame(0x0, b"b" * 600))
            opcode, payload = await read_frame(reader)
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1009)
            assert (await ended(app))["code"] == 1009

    run(test)


def frame_header(opcode: int, announced: int, fin: bool = True) -> bytes:
    """A masked frame's header announcing `announced` payload bytes, none of which follow."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if announced < 126:
        head += bytes([0x80 | announced])
    elif announced < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", announced)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", announced)
    return head + os.urandom(4)


@pytest.mark.parametrize(
    "announce",
    [
        frame_header(0x2, (1 << 63) - 1),
        frame_header(0x1, 1001),
        frame(0x2, b"a" * 600, fin=False) + frame(0x9, b"p") + frame_header(0x0, 401),
    ],
    ids=["2^63-1-bytes", "one-byte-over", "fragment-taking-it-over"],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["at-once", "bytewise"])
def test_a_frame_header_announcing_more_than_the_limit_closes_with_1009_at_once(
    announce: bytes, bytewise: bool
) -> None:
    """The header alone is enough: 1009 and the connection closed, with no payload byte
    sent (before: the announced bytes were awaited and counted as they came)."""
    app = Echo()

    async def test() -> None:
        async with Served(app, "asgi", Settings(max_body=1000)) as served:
            reader, writer = await opened(served)
            for i in range(len(announce)) if bytewise else [None]:
                writer.write(announce[i : i + 1] if i is not None else announce)
                await writer.drain()
            while (frame_read := await read_frame(reader))[0] == 0xA:
                pass  # the pong of the ping between the fragments
            opcode, payload = frame_read
            assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1009)
            assert (await ended(app))["code"] == 1009
            assert await asyncio.wait_for(reader.read(), 5) == b""  # no wait for our close

    run(test)


def test_messages_up_to_the_limit_pass_in_frames_of_every_header_size() -> None:
    app = Echo()
    sizes = [0, 125, 126, 1000]  # 7-bit, 16-bit (126 up) lengths; 64-bit below

    async def test() -> None:
        async with Served(app, "asgi", Settings(max_body=70_000)) as served:
            reader, writer = await opened(served)
            for n in sizes:
                writer.write(frame(0x2, b"q" * n))
                assert await read_frame(reader) == (0x2, b"q" * n)
            big = frame(0x2, b"r" * 65_536, fin=False) + frame(0x0, b"s" * 4_464)
            writer.write(big)  # a 64-bit length, then 70,000 bytes in all: the limit
            assert await read_frame(reader) == (0x2, b"r" * 65_536 + b"s" * 4_464)

    run(test)


@pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "bytes"])
def test_a_message_in_one_byte_fragments_costs_its_size_not_an_object_a_fragment(
    opcode: int,
) -> None:
    """42,000 fragments of one byte (each 7 bytes on the wire): held as a list of
    wsproto's pieces they cost some 1.5 MB, 40 times the message (two 1 MiB messages sent
    so filled a 128M sandbox: out of memory). Gathered as bytes, about the message's size."""
    import tracemalloc

    app = Echo()
    n = 42_000
    euro = "€".encode()  # split in three: each piece a new str (Latin-1 ones are cached)
    piece = b"".join(frame(0x0, euro[i : i + 1], fin=False) for i in range(3))

    async def test() -> None:
        async with Served(app, "asgi") as served:
            reader, writer = await opened(served)
            fragments = frame(opcode, b"", fin=False) + piece * (n // 3) + frame(0x9, b"after")
            tracemalloc.start()
            try:
                writer.write(fragments)  # the ping is answered once the fragments are read
                await writer.drain()
                pong = await asyncio.wait_for(reader.readexactly(7), 120)  # slow under tracemalloc
                held = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert pong == b"\x8a\x05after"
            assert held < 400_000, f"{held} bytes held for a {n}-byte message"
            writer.write(frame(0x0, b"!"))
            assert await read_frame(reader) == (opcode, euro * (n // 3) + b"!")

    run(test)


def test_messages_the_app_has_not_taken_are_held_up_to_the_body_limit_not_16_of_it() -> None:
    """Six clients sent 1 MiB messages to an echo app and read nothing back: the app sat in
    send(), and behind it 16 messages each (16 MiB a client) put a 128M sandbox out of
    memory. Now the server stops reading once max_body bytes wait for the app: the ping
    after them is answered only when the app takes one."""
    go = asyncio.Event()
    taken: list[int] = []

    async def slow(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while (message := await receive())["type"] == "websocket.receive":
            taken.append(len(message["bytes"]))

    async def test() -> None:
        async with Served(slow, "asgi", Settings(max_body=100_000)) as served:
            reader, writer = await opened(served)
            writer.write(frame(0x2, b"m" * 90_000) * 5 + frame(0x9, b"after"))
            try:  # not a timing assertion: the pong must not come at all before `go`
                early = await asyncio.wait_for(reader.readexactly(7), 1.0)
            except TimeoutError:
                early = b""
            assert early == b"", "the server read past max_body of messages left waiting"
            go.set()
            assert await asyncio.wait_for(reader.readexactly(7), 10) == b"\x8a\x05after"
            writer.write(frame(0x8, struct.pack("!H", 1000)))
            for _ in range(300):
                if len(taken) == 5:
                    break
                await asyncio.sleep(0.01)
            assert taken == [90_000] * 5

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


@pytest.mark.parametrize("seed", range(20))
def test_frame_sizes_follow_any_split_of_the_stream(seed: int) -> None:
    """FrameSizes reads each header whatever the pieces the bytes come in, so it announces
    exactly the size of the message under way: never more (no false 1009), never less."""
    import random

    from summon.runtime.http.frames import FrameSizes

    rng = random.Random(seed)
    stream, expected = b"", []
    message = 0
    for _ in range(30):
        n = rng.choice([0, 1, 125, 126, 300, 65_535, 65_536, 70_000])
        kind = rng.choice([0x1, 0x2, 0x0, 0x9])
        if kind == 0x9:
            n = min(n, 125)  # control frames carry at most 125 bytes
        elif kind == 0x0:
            message += n
        else:
            message = n
        stream += frame(kind, b"m" * n, fin=rng.random() < 0.5)
        expected.append(message)
    sizes = FrameSizes()
    pos = 0
    seen = []
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 14, 1000, 100_000])
        seen.append(sizes.feed(stream[pos : pos + step]))
        pos += step
    assert seen[-1] == expected[-1] and not sizes.done
    assert max(seen) <= max(expected)
