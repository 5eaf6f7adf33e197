"""Two sans-IO sessions joined by an in-memory link, for tests (after h11's ConnectionPair)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from summon.secrets import FolderSecrets
from summon.tls import errors as e
from summon.tls.device import TLSDevice
from summon.tls.events import ApplicationData, CloseNotify, HandshakeComplete, TruncatedClose
from summon.tls.session import Session

Event = HandshakeComplete | ApplicationData | CloseNotify | TruncatedClose

BACKENDS = ("openssl", "python")


def device(pki_folder: str, backend: str) -> TLSDevice:
    return TLSDevice(FolderSecrets(pki_folder), backend)


class Pair:
    """A client and a server session; pump() moves bytes until both are quiet."""

    def __init__(self, client: Session, server: Session, *, chunk: int | None = None) -> None:
        self.client = client
        self.server = server
        self.chunk = chunk
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.wire_to_server = bytearray()  # everything the client sent, for inspection

    def _deliver(self, data: bytes, to: Session, events: list[Event]) -> None:
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            events += to.receive_data(data[i : i + step])

    def pump(self) -> None:
        for _ in range(100):
            a = self.client.data_to_send()
            self.wire_to_server += a
            if a:
                self._deliver(a, self.server, self.server_events)
            b = self.server.data_to_send()
            if b:
                self._deliver(b, self.client, self.client_events)
            if not a and not b:
                return
        raise AssertionError("the sessions never went quiet")

    def handshake(self) -> None:
        self.client.start()
        self.pump()


def echo_against(
    backend: str, pki_folder: str, peer: Callable[[int], dict[str, object]]
) -> tuple[dict[str, object], list[object]]:
    """An echo server of backend's TLS on 127.0.0.1 (one read of up to 100 bytes, written
    back), and peer(port) run against it in a thread: (what peer returned, what the server
    read or the TLSError it raised, in order)."""
    ctx = device(pki_folder, backend).server()
    seen: list[object] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reader, writer = await ctx.wrap(reader, writer)
            data = await reader.read(100)
            seen.append(data)
            writer.write(data)
            await writer.drain()
        except e.TLSError as exc:
            seen.append(exc)
        writer.close()

    async def main() -> dict[str, object]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            out: dict[str, object] = {}
            thread = threading.Thread(target=lambda: out.update(peer(port)))
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)
            return out

    return asyncio.run(main()), seen
