"""The in-memory Stack: what an app sees is what asyncio's sockets give it, with no sockets."""

from __future__ import annotations

import asyncio
import errno

import pytest

from summon.devices import Stack
from summon.targets.browser.inpage.stack import FIRST_EPHEMERAL_PORT, MemoryStack


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each line in capitals until end of stream (or cancellation), then close."""
    try:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()


def test_a_memory_stack_is_a_stack_device() -> None:
    assert isinstance(MemoryStack(), Stack)


def test_a_connection_carries_bytes_both_ways_and_end_of_stream() -> None:
    async def main() -> tuple[bytes, bytes, tuple[str, int]]:
        stack = MemoryStack()
        server = await stack.start_server(echo_upper, 80)
        reader, writer = stack.connect(80)
        writer.write(b"hello\nworld\n")
        first = await reader.readline()
        writer.write_eof()
        rest = await reader.read()  # the app closes after our end of stream: read ends
        peer = writer.get_extra_info("sockname")
        writer.close()
        server.close()
        return first + rest, await reader.read(), peer

    answer, after, peer = run(main())  # type: ignore[misc]
    assert answer == b"HELLO\nWORLD\n"
    assert after == b""
    assert peer[0] == "127.0.0.1" and peer[1] >= FIRST_EPHEMERAL_PORT


def test_the_app_sees_its_own_port_and_the_peer_address() -> None:
    async def main() -> tuple[object, object]:
        stack = MemoryStack()
        seen: list[tuple[object, object]] = []

        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append((writer.get_extra_info("sockname"), writer.get_extra_info("peername")))
            writer.close()

        await stack.start_server(record, 8000)
        reader, writer = stack.connect(8000, ("10.1.2.3", 5555))
        assert await reader.read() == b""
        writer.close()
        return seen[0]

    sockname, peername = run(main())  # type: ignore[misc]
    assert sockname == ("127.0.0.1", 8000)
    assert peername == ("10.1.2.3", 5555)


def test_a_plain_callback_is_called_too() -> None:
    async def main() -> list[bytes]:
        stack = MemoryStack()
        got: list[bytes] = []

        def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi")
            writer.close()
            got.append(b"called")

        await stack.start_server(callback, 1)
        reader, writer = stack.connect(1)
        got.append(await reader.read())
        writer.close()
        return got

    assert run(main()) == [b"called", b"hi"]


def test_nothing_listening_is_connection_refused() -> None:
    async def main() -> None:
        stack = MemoryStack()
        with pytest.raises(ConnectionRefusedError):
            stack.connect(80)
        server = await stack.start_server(echo_upper, 80)
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            stack.connect(80)

    run(main())


def test_a_port_in_use_and_port_zero() -> None:
    async def main() -> None:
        stack = MemoryStack()
        first = await stack.start_server(echo_upper, 0)
        second = await stack.start_server(echo_upper, 0)
        assert first.port != second.port
        assert first.port >= FIRST_EPHEMERAL_PORT
        await stack.start_server(echo_upper, 80)
        with pytest.raises(OSError) as e:
            await stack.start_server(echo_upper, 80)
        assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OverflowError):
            await stack.start_server(echo_upper, 70000)
        assert stack.ports == [first.port, second.port, 80]

    run(main())


def test_open_connection_reaches_the_apps_own_servers_only() -> None:
    async def main() -> None:
        stack = MemoryStack()
        await stack.start_server(echo_upper, 80)
        reader, writer = await stack.open_connection("localhost", 80)
        writer.write(b"x\n")
        assert await reader.readline() == b"X\n"
        writer.close()
        with pytest.raises(OSError) as e:
            await stack.open_connection("example.org", 80)
        assert e.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as e:
            await stack.open_udp(53)
        assert e.value.errno == errno.EAFNOSUPPORT

    run(main())


def test_serve_forever_ends_with_cancellation_and_closes_the_server() -> None:
    async def main() -> None:
        stack = MemoryStack()
        server = await stack.start_server(echo_upper, 80)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stack.ports == []
        await asyncio.wait_for(server.wait_closed(), 1)

    run(main())


def test_wait_listening_returns_once_the_app_listens() -> None:
    async def main() -> tuple[int, int]:
        stack = MemoryStack()
        waiting_any = asyncio.ensure_future(stack.wait_listening())
        waiting_81 = asyncio.ensure_future(stack.wait_listening(81))
        await asyncio.sleep(0)
        assert not waiting_any.done()
        await stack.start_server(echo_upper, 80)
        first = await asyncio.wait_for(waiting_any, 1)
        assert not waiting_81.done()
        await stack.start_server(echo_upper, 81)
        return first, await asyncio.wait_for(waiting_81, 1)

    assert run(main()) == (80, 81)


def test_a_reader_that_pauses_gets_every_byte_in_order() -> None:
    """More than the StreamReader's limit, sent at once: the transport is paused and resumed."""
    payload = bytes(range(256)) * 2048  # 512 KiB, 8 times the limit

    async def main() -> bytes:
        stack = MemoryStack()

        async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0.01)  # everything has arrived (and reading paused) by now
            data = await reader.readexactly(len(payload))
            writer.write(data[::-1])
            writer.close()

        await stack.start_server(slow_reader, 80)
        reader, writer = stack.connect(80)
        for i in range(0, len(payload), 4096):
            writer.write(payload[i : i + 4096])
        answer = await reader.read()
        writer.close()
        return answer

    assert run(main()) == payload[::-1]


def test_writes_after_close_go_nowhere_and_connection_lost_is_delivered() -> None:
    async def main() -> bytes:
        stack = MemoryStack()
        closed = asyncio.Event()

        async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            writer.close()
            writer.write(b"never")  # as on a socket transport after close: dropped
            await writer.wait_closed()
            closed.set()

        await stack.start_server(closer, 80)
        reader, writer = stack.connect(80)
        data = await reader.read()
        await asyncio.wait_for(closed.wait(), 1)
        writer.close()
        return data

    assert run(main()) == b"bye"
