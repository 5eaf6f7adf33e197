"""WebSocket frames on the runtime's server, made by hand for what no polite client sends:
fragments with control frames between them, protocol errors and their close codes, messages
and frame headers over the body limit (1009 at once), and what a message in tiny fragments
or a slow app's queue may hold in memory; FrameSizes reading any split of the stream.
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

import pytest
from test_http_server import Served, run
from ws_wire import Echo, Message, ended, frame, opened, read_frame

from summon.runtime.http.settings import Settings


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
