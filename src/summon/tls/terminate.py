"""TLS served by the runtime for the app: a Stack whose listeners on some ports speak TLS.

The manifest's `tls = { ports = [443], ... }` makes the runtime give the app this Stack: on
those ports each accepted connection is wrapped by the TLS device (server role) before the
app's callback sees it, so an app written for plain connections — examples/http, or any WSGI
or ASGI app the runtime serves — is served over TLS unchanged, on kernel sockets and on
summon's own TCP/IP stack alike. A handshake that fails is logged once per connection with
its reason and closed; the app never sees it. A TLS error after the handshake reaches the
app's read or drain as on any TLS stream; one the app lets through ends the connection with
one line too. Other ports and everything else pass through.
"""

from __future__ import annotations

import sys

from summon.devices import Server, Stack, UDPEndpoint
from summon.tls.errors import TLSError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter

    from summon.devices import ClientConnected, TLSServerContext


class TLSStack(Stack):
    """inner, with TLS on `ports` (guest ports) through `context`."""

    def __init__(self, inner: Stack, context: TLSServerContext, ports: frozenset[int]) -> None:
        self.inner = inner
        self.context = context
        self.ports = ports
        self.failed = 0  # handshakes refused, for the logs and tests

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        if port not in self.ports:
            return await self.inner.start_server(client_connected_cb, port, backlog=backlog)

        async def serve(reader: StreamReader, writer: StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            try:
                reader, writer = await self.context.wrap(reader, writer)
            except TLSError as e:
                self.failed += 1
                _log(f"tls: handshake with {_peer(peer)} on port {port} failed: {e}")
                writer.close()
                return
            except (ConnectionError, OSError):
                writer.close()
                return
            try:
                result = client_connected_cb(reader, writer)
                if result is not None:
                    await result
            except TLSError as e:
                # The peer broke TLS after the handshake (a fatal alert, a record TLS forbids):
                # the app's read or drain raised it through the app, written for plain
                # connections, whose task then ended in a traceback. One line instead.
                _log(f"tls: connection with {_peer(peer)} on port {port} ended: {e}")
                writer.close()

        return await self.inner.start_server(serve, port, backlog=backlog)

    async def open_connection(self, host: str, port: int) -> tuple[StreamReader, StreamWriter]:
        return await self.inner.open_connection(host, port)

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        return await self.inner.open_udp(port)

    def __getattr__(self, name: str) -> object:
        # What a stack offers beyond the Stack interface (DirectStack's resolve, stats...).
        return getattr(self.inner, name)


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "a client"


def _log(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
