"""Test helpers for the WebSocket tests: an echoing ASGI app, an upgrade request and client
frames made by hand (unmasked ones too, which no polite client sends), and a reader of the
server's frames that checks they are never masked."""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

from test_http_server import Served

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


async def handshake(served: Served, extra: bytes = b"", path: bytes = b"/ws") -> tuple[bytes, Any]:
    """Send an upgrade request by hand; the response head and the streams."""
    reader, writer = await served.connect()
    writer.write(
        b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\n" + extra + b"\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, (reader, writer)


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
