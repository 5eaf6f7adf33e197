"""The gateway's DNS server: answers for its zone (UDP and TCP), wire format by dnspython.

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

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

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
        self.origin = dns.name.from_text(zone)
        self.lookup = lookup
        self.on_query = on_query
        self.ns_name = dns.name.from_text("ns", self.origin)

    def soa(self) -> dns.rrset.RRset:
        text = f"ns.{self.origin} hostmaster.{self.origin} 1 3600 600 86400 {SOA_TTL}"
        return dns.rrset.from_text(self.origin, SOA_TTL, "IN", "SOA", text)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to query, or None: outside the zone, for the caller to forward/refuse."""
        response = dns.message.make_response(query)
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if query.question else dns.rcode.FORMERR)
            return response
        q = query.question[0]
        qname = q.name
        if not qname.is_subdomain(self.origin):
            return None
        response.flags |= dns.flags.AA
        if q.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if qname == self.origin:
            if q.rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
                response.answer.append(self.soa())
            if q.rdtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
                ns = f"ns.{self.origin}"
                response.answer.append(dns.rrset.from_text(self.origin, SOA_TTL, "IN", "NS", ns))
            if not response.answer:
                response.authority.append(self.soa())  # NODATA
            return response
        if qname == self.ns_name:
            # The server's own name, so that the NS record resolves; it answers where asked.
            if q.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(qname, SOA_TTL, "IN", "A", "127.0.0.1"))
            else:
                response.authority.append(self.soa())
            return response
        relative = qname.relativize(self.origin)
        label = relative.to_text().lower() if len(relative.labels) == 1 else ""
        address = self.lookup(label) if label else None
        if address is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self.soa())
            return response
        if q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.append(dns.rrset.from_text(qname, TTL, "IN", "A", address))
            self.on_query(label)
        else:
            response.authority.append(self.soa())  # NODATA: the name exists, no such type
        return response


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
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: answering garbage could be used to reflect
        if query.flags & dns.flags.QR:
            return None
        response = self.zone.answer(query)
        if response is None:
            forwarded = await self._forward(query, tcp)
            if forwarded is not None:
                return forwarded
            response = dns.message.make_response(query)
            response.flags &= ~dns.flags.RA
            response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire(max_size=65535 if tcp else 512)

    async def _forward(self, query: dns.message.Message, tcp: bool) -> bytes | None:
        if self.upstream is None:
            return None
        host, port = self.upstream
        try:
            if tcp:
                reply = await dns.asyncquery.tcp(query, host, UPSTREAM_TIMEOUT, port)
            else:
                reply = await dns.asyncquery.udp(query, host, UPSTREAM_TIMEOUT, port)
        except (dns.exception.DNSException, OSError) as e:
            log.warning("upstream %s:%d: %s", host, port, e)
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
        reply.id = query.id
        return reply.to_wire(max_size=65535 if tcp else 512)

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


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._reply_udp(data, addr)
