"""The openssl backend's TLS 1.2 session cache is bounded.

OpenSSL keeps every TLS 1.2 server session for resumption by session ID (20,480 of them,
about 1.2 KB each, for 300 s), and the ssl module has no call to turn that off or size it:
`openssl s_client -tls1_2 -reconnect` showed "Reused", and 8,000 full handshakes from one
client grew the server by 9.5 MB, so a client could make it hold ~24 MB. Past
openssl_backend.MAX_CACHED_SESSIONS the context is made anew; resumption still works.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import pytest
from tls_pki import PKI

from summon.secrets import FolderSecrets
from summon.tls import openssl_backend
from summon.tls.device import TLSDevice

LIMIT = 8


def test_full_handshakes_do_not_grow_the_session_cache_without_bound(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openssl_backend, "MAX_CACHED_SESSIONS", LIMIT, raising=False)
    ctx = TLSDevice(FolderSecrets(str(pki.folder)), "openssl").server()
    backend = ctx._backend  # type: ignore[attr-defined]
    client = ssl.create_default_context(cafile=pki.path("ca"))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    cached: list[int] = []
    reused: list[bool] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reader, writer = await ctx.wrap(reader, writer)
            writer.write(await reader.read(10))
            await writer.drain()
        finally:
            writer.close()

    def connect(port: int, session: ssl.SSLSession | None = None) -> ssl.SSLSession:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"x")
                assert tls.recv(10) == b"x"
                reused.append(tls.session_reused)
                return tls.session  # type: ignore[return-value]

    def peer(port: int) -> None:
        session = None
        for _ in range(4 * LIMIT - 1):
            session = connect(port)  # a full handshake each
            cached.append(backend._contexts[""].session_stats()["number"])
        # A client resuming the session it just had is still served from the cache.
        connect(port, session)

    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            thread = threading.Thread(target=peer, args=(port,))
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)

    asyncio.run(main())
    assert len(cached) == 4 * LIMIT - 1
    assert max(cached) <= LIMIT, cached  # without the bound: 1, 2, ... 31
    assert reused == [False] * len(cached) + [True]
