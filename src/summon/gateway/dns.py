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
import socket
import struct
from collections.abc import Callable

from summon.gateway import dnswire
from summon.gateway.dnswire import (
    BADVERS,
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
# A flood of queries must not take the gateway's file descriptors: each forwarded query
# holds a socket for up to UPSTREAM_TIMEOUT, each TCP client one for TCP_IDLE. Past these
# bounds a forward is answered SERVFAIL at once, and a new TCP client is closed.
MAX_FORWARDS = 256
MAX_TCP_CLIENTS = 64
TCP_IDLE = 10.0  # seconds a TCP client may take to send its next query (RFC 7766 6.2.3)
UDP_BUFFER = 1 << 20  # the UDP socket's receive buffer: a burst waits rather than drops


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
        self.ns_name = f"ns.{self.origin}"  # config.NS_LABEL: no service takes the name

    def soa(self) -> Record:
        return dnswire.soa_record(self.origin, SOA_TTL, self.ns_name, f"hostmaster.{self.origin}")

    def answer(self, query: Query) -> bytes | None:
        """The response to query, or None: outside the zone, for the caller to forward/refuse."""
        if query.opcode != 0 or query.questions != 1:
            return dnswire.response(query, NOTIMP if query.questions else FORMERR)
        if query.opts > 1:
            return dnswire.response(query, FORMERR)  # RFC 6891 section 6.1.1
        if query.edns is not None and query.edns.version > 0:
            return dnswire.response(query, BADVERS)  # only version 0 exists
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
        self._forwards = 0  # upstream queries under way
        self._tcp_clients = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        sock = transport.get_extra_info("socket")
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # FORCE: root only, past net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER)
                break
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
        query, response = self.answer_now(wire)
        if query is None or response is not None:
            return response
        return await self._forward(query, wire, tcp)

    def answer_now(self, wire: bytes) -> tuple[Query | None, bytes | None]:
        """(query, response) for what needs no upstream: (None, None) for what is not worth
        an answer, (query, None) for a query to forward."""
        try:
            query = dnswire.parse_query(wire)
        except DnsFormatError:
            return None, None  # not DNS: answering garbage could be used to reflect
        if query.is_response:
            return None, None
        response = self.zone.answer(query)
        if response is None and self.upstream is None:
            response = dnswire.response(query, REFUSED)
        elif response is None and self._forwards >= MAX_FORWARDS:
            response = dnswire.response(query, SERVFAIL)
        return query, response

    async def _forward(self, query: Query, wire: bytes, tcp: bool) -> bytes:
        """The upstream server's reply to the query as it came, or SERVFAIL."""
        assert self.upstream is not None
        host, port = self.upstream
        self._forwards += 1
        try:
            ask = _ask_tcp if tcp else _ask_udp
            reply = await asyncio.wait_for(ask(host, port, wire), UPSTREAM_TIMEOUT)
            if len(reply) < dnswire.HEADER.size:
                raise OSError(f"a {len(reply)}-byte reply")
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            log.warning("upstream %s:%d: %s", host, port, e or "no answer")
            return dnswire.response(query, SERVFAIL)
        finally:
            self._forwards -= 1
        return dnswire.with_ident(reply, query.ident)

    def _reply_udp(self, wire: bytes, addr: tuple[str, int]) -> None:
        """Answer a datagram: at once on the loop, or in a task when it goes upstream."""
        query, out = self.answer_now(wire)
        if query is not None and out is None:

            async def run() -> None:
                self._send(await self._forward(query, wire, tcp=False), addr)

            task = asyncio.ensure_future(run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif out is not None:
            self._send(out, addr)

    def _send(self, out: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(out, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            writer.transport.abort()  # at the bound: the client retries, or asks over UDP
            return
        self._tcp_clients += 1
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                (length,) = struct.unpack("!H", head)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                out = await self.handle(wire, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                async with asyncio.timeout(TCP_IDLE):  # one that never read held its slot
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_clients -= 1
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
