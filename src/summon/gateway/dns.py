"""The gateway's DNS server: answers for its zone (UDP and TCP), wire format in dnswire.py.

A records for <service>.<zone> give the service's loopback address; a query for a service
that is down also starts its boot (the on_query callback), so the instance is often up by
the time the client connects. Names outside the zone are REFUSED, or forwarded to an
upstream server when one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

from summon.gateway import dnswire
from summon.gateway.dnswire import (
    CLASS_IN,
    FORMERR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TYPE_A,
    TYPE_ANY,
    TYPE_NS,
    TYPE_SOA,
    DnsFormatError,
    Query,
    Record,
)

log = logging.getLogger(__name__)

TTL = 5  # seconds: small, the address is stable but the service list is reloadable
SOA_TTL = 60
UPSTREAM_TIMEOUT = 2.0


class Zone:
    """What the server knows: the zone name and a lookup from service label to address."""

    def __init__(
        self,
        zone: str,
        lookup: Callable[[str], str | None],
        on_query: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.origin = zone.strip(".").lower()
        self.lookup = lookup
        self.on_query = on_query
        self.ns_name = f"ns.{self.origin}"

    def soa(self) -> Record:
        return dnswire.soa_record(self.origin, SOA_TTL, self.ns_name, f"hostmaster.{self.origin}")

    def answer(self, query: Query) -> bytes | None:
        """The response to query, or None: outside the zone, for the caller to forward/refuse."""
        if query.opcode != 0 or query.questions != 1:
            return dnswire.response(query, NOTIMP if query.questions else FORMERR)
        name = query.name
        if name != self.origin and not name.endswith("." + self.origin):
            return None
        reply = _Reply(query)
        if query.qclass != CLASS_IN:
            return reply.done(REFUSED)
        if name == self.origin:
            if query.qtype in (TYPE_SOA, TYPE_ANY):
                reply.answer.append(self.soa())
            if query.qtype in (TYPE_NS, TYPE_ANY):
                reply.answer.append(dnswire.ns_record(self.origin, SOA_TTL, self.ns_name))
            if not reply.answer:
                reply.authority.append(self.soa())  # NODATA
            return reply.done()
        if name == self.ns_name:
            # The server's own name, so that the NS record resolves; it answers where asked.
            if query.qtype == TYPE_A:
                reply.answer.append(dnswire.a_record(name, SOA_TTL, "127.0.0.1"))
            else:
                reply.authority.append(self.soa())
            return reply.done()
        relative = name[: -len(self.origin) - 1]
        label = relative if "." not in relative else ""
        address = self.lookup(label) if label else None
        if address is None:
            reply.authority.append(self.soa())
            return reply.done(NXDOMAIN)
        if query.qtype in (TYPE_A, TYPE_ANY):
            reply.answer.append(dnswire.a_record(name, TTL, address))
            self.on_query(label)
        else:
            reply.authority.append(self.soa())  # NODATA: the name exists, no such type
        return reply.done()


class _Reply:
    """An authoritative response being put together."""

    def __init__(self, query: Query) -> None:
        self.query = query
        self.answer: list[Record] = []
        self.authority: list[Record] = []

    def done(self, rcode: int = 0) -> bytes:
        return dnswire.response(
            self.query, rcode, tuple(self.answer), tuple(self.authority), authoritative=True
        )


class DnsServer:
    """Serves a Zone on one address, UDP and TCP."""

    def __init__(self, zone: Zone, upstream: tuple[str, int] | None = None) -> None:
        self.zone = zone
        self.upstream = upstream
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._transport = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def handle(self, wire: bytes, tcp: bool) -> bytes | None:
        """The response bytes for a query's bytes; None when it is not worth an answer."""
        try:
            query = dnswire.parse_query(wire)
        except DnsFormatError:
            return None  # not DNS: answering garbage could be used to reflect
        if query.is_response:
            return None
        response = self.zone.answer(query)
        if response is None:
            forwarded = await self._forward(query, wire, tcp)
            if forwarded is not None:
                return forwarded
            response = dnswire.response(query, REFUSED)
        return response

    async def _forward(self, query: Query, wire: bytes, tcp: bool) -> bytes | None:
        """The upstream server's reply to the query as it came, or SERVFAIL."""
        if self.upstream is None:
            return None
        host, port = self.upstream
        try:
            ask = _ask_tcp if tcp else _ask_udp
            reply = await asyncio.wait_for(ask(host, port, wire), UPSTREAM_TIMEOUT)
            if len(reply) < dnswire.HEADER.size:
                raise OSError(f"a {len(reply)}-byte reply")
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            log.warning("upstream %s:%d: %s", host, port, e or "no answer")
            return dnswire.response(query, SERVFAIL)
        return dnswire.with_ident(reply, query.ident)

    def _reply_udp(self, wire: bytes, addr: tuple[str, int]) -> None:
        async def run() -> None:
            out = await self.handle(wire, tcp=False)
            if out is not None and self._transport is not None:
                self._transport.sendto(out, addr)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 30)
                (length,) = struct.unpack("!H", head)
                wire = await asyncio.wait_for(reader.readexactly(length), 30)
                out = await self.handle(wire, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _ask_udp(host: str, port: int, wire: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Answer(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not got.done():
                got.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(Answer, remote_addr=(host, port))
    try:
        transport.sendto(wire)
        return await got
    finally:
        transport.close()


async def _ask_tcp(host: str, port: int, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)
    finally:
        writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._reply_udp(data, addr)
