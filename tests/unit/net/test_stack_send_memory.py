"""Slow readers against a served app on the direct stack: the stack's send budget holds
what TCP keeps for them to config.send_memory plus a floor each, the handlers' drain()
waits instead, and once the readers read, every handler finishes."""

from __future__ import annotations

import asyncio
import hashlib

from test_stack import SERVER_IP, run, stack_pair

from summon.net.tcp.buffers import SEND_FLOOR
from summon.net.tcp.config import TCPConfig

READERS = 8
EACH = 256 * 1024
SEND_BUFFER = 64 * 1024
SEND_MEMORY = 64 * 1024


def test_slow_readers_hold_the_send_budget_and_all_handlers_finish_once_they_read() -> None:
    async def main() -> None:
        config = TCPConfig(
            send_buffer=SEND_BUFFER, receive_buffer=32 * 1024, send_memory=SEND_MEMORY
        )
        server, client = stack_pair(tcp_config=config)
        payloads = [hashlib.sha256(bytes([i])).digest() * (EACH // 32) for i in range(READERS)]
        finished: list[int] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            which = (await reader.readexactly(1))[0]
            writer.write(payloads[which])  # a big response to a peer that does not read
            await writer.drain()
            finished.append(which)
            writer.close()

        await server.start_server(handler, 80)
        streams = [await client.open_connection(SERVER_IP, 80) for _ in range(READERS)]
        for i, (_reader, writer) in enumerate(streams):
            writer.write(bytes([i]))
        await asyncio.sleep(1.0)  # the peers read nothing: windows and the budget fill
        tcp = server.tcp
        assert tcp is not None
        held = sum(len(c.sndbuf.data) for c in tcp.connections)
        assert tcp.send_budget.used == held
        assert held <= SEND_MEMORY + READERS * SEND_FLOOR < READERS * SEND_BUFFER
        assert not finished  # every handler waits in drain()
        assert tcp.counters["tcp__send_memory__wait"] >= 1
        got = await asyncio.gather(*(reader.readexactly(EACH) for reader, _ in streams))
        assert got == payloads
        for _ in range(100):
            if len(finished) == READERS:
                break
            await asyncio.sleep(0.05)
        assert sorted(finished) == list(range(READERS))
        for _reader, writer in streams:
            writer.close()

    run(main)
