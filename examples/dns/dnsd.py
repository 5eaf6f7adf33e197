"""An authoritative DNS server on dnspython: answers for the zone files baked into `zone`.

Every key "<origin>.zone" of the data folder is a zone file (RFC 1035 master format) for
<origin>. Queries are answered over UDP and TCP on port 53: the records asked for (A, AAAA,
TXT, SOA, NS, MX, CNAME...), NXDOMAIN with the SOA for names the zone lacks, NODATA for
names that exist without that type, referrals at delegations, REFUSED for names outside
every zone. No recursion, wildcards, DNSSEC or zone transfers.

The Authority class is sans-IO (bytes in, bytes out); main() moves bytes for it.
"""

from __future__ import annotations

import asyncio
import os

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

from summon.devices import KV_RO, Console, Stack

PORT = 53
# The largest UDP answer: the EDNS buffer size DNS Flag Day 2020 settled on; 512 without EDNS.
UDP_PAYLOAD = 1232
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay silent between queries
CNAME_CHAIN_LIMIT = 8
HEADER_SIZE = 12


class Authority:
    """Answers queries for a set of zones, from their wire format to the reply's."""

    def __init__(self, zones: list[dns.zone.Zone]) -> None:
        self.zones = sorted(zones, key=lambda z: len(_origin(z)), reverse=True)
        # Every name that exists in a zone, with the empty non-terminals above the names that
        # hold records: those answer NODATA, not NXDOMAIN (RFC 8020).
        self._existing: set[dns.name.Name] = set()
        for zone in self.zones:
            for name in zone.nodes:
                while name != _origin(zone) and name not in self._existing:
                    self._existing.add(name)
                    name = name.parent()
            self._existing.add(_origin(zone))

    @classmethod
    def from_kv(cls, files: KV_RO) -> Authority:
        """The zones of every "<origin>.zone" key in `files`."""
        zones = []
        for key in files.list():
            base = key.rpartition("/")[2]
            if base.endswith(".zone"):
                text = files.get(key).decode("utf-8")
                zones.append(dns.zone.from_text(text, origin=base[:-5], relativize=False))
        if not zones:
            raise ValueError("no zone files: the data folder needs files named <origin>.zone")
        return cls(zones)

    @property
    def origins(self) -> list[str]:
        return [_origin(zone).to_text() for zone in self.zones]

    def respond(self, wire: bytes, udp: bool = True) -> bytes | None:
        """The reply to the DNS message `wire`, or None to stay silent.

        Silent for what is no query: fewer bytes than a header, or a response (QR set), so two
        servers never answer each other forever. A query that does not parse gets FORMERR.
        Over UDP the reply fits the query's EDNS buffer size (at most UDP_PAYLOAD), or 512
        bytes without EDNS; what does not fit is cut and flagged TC, to be asked over TCP.
        """
        if len(wire) < HEADER_SIZE or wire[2] & 0x80:
            return None
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # whatever the input breaks, the answer is FORMERR, not a crash
            return _header_only(wire, dns.rcode.FORMERR)
        max_size = 65535
        if udp:
            max_size = 512 if query.edns < 0 else max(512, min(query.payload, UDP_PAYLOAD))
        return self.answer(query).to_wire(max_size=max_size, prefer_truncation=True)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The response to a parsed query."""
        response = dns.message.make_response(query, our_payload=UDP_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        zone = self._zone_for(question.name)
        if (
            zone is None
            or question.rdclass != dns.rdataclass.IN
            or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
        ):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        self._resolve(zone, response, question.name, question.rdtype)
        return response

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        for zone in self.zones:  # longest origin first: the closest enclosing zone
            if name.is_subdomain(_origin(zone)):
                return zone
        return None

    def _resolve(
        self,
        zone: dns.zone.Zone,
        response: dns.message.Message,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> None:
        origin = _origin(zone)
        for _ in range(CNAME_CHAIN_LIMIT):
            cut = _zone_cut(zone, name)
            if cut is not None:
                self._refer(zone, response, cut)
                return
            node = zone.get_node(name)
            if node is None:
                if name not in self._existing:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                _add_soa(zone, response)
                return
            if rdtype == dns.rdatatype.ANY:
                rdatasets = list(node.rdatasets)
            else:
                found = node.get_rdataset(dns.rdataclass.IN, rdtype)
                rdatasets = [found] if found is not None else []
            if rdatasets:
                for rdataset in rdatasets:
                    response.answer.append(_rrset(name, rdataset))
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                _add_soa(zone, response)  # NODATA
                return
            response.answer.append(_rrset(name, cname))
            target = next(iter(cname)).target
            if not target.is_subdomain(origin):
                return  # the resolver follows it elsewhere
            name = target

    def _refer(
        self, zone: dns.zone.Zone, response: dns.message.Message, cut: dns.name.Name
    ) -> None:
        """A referral to the zone delegated at `cut`: its NS records, and glue we hold."""
        if not response.answer:
            response.flags &= ~dns.flags.AA  # the answer is the child zone's to give
        ns = zone.get_rdataset(cut, dns.rdatatype.NS)
        assert ns is not None
        response.authority.append(_rrset(cut, ns))
        for record in ns:
            if not record.target.is_subdomain(_origin(zone)):
                continue
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                glue = zone.get_rdataset(record.target, rdtype)
                if glue is not None:
                    response.additional.append(_rrset(record.target, glue))


def _origin(zone: dns.zone.Zone) -> dns.name.Name:
    assert zone.origin is not None  # from_text always sets it
    return zone.origin


def _zone_cut(zone: dns.zone.Zone, name: dns.name.Name) -> dns.name.Name | None:
    """The highest name between the apex (excluded) and `name` that holds NS records."""
    origin = _origin(zone)
    cut = None
    while name != origin:
        if zone.get_rdataset(name, dns.rdatatype.NS) is not None:
            cut = name
        name = name.parent()
    return cut


def _add_soa(zone: dns.zone.Zone, response: dns.message.Message) -> None:
    """The SOA in the authority section: what a resolver caches a negative answer by."""
    soa = zone.get_rdataset(_origin(zone), dns.rdatatype.SOA)
    if soa is not None:
        response.authority.append(_rrset(_origin(zone), soa))


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A bare response header for a query too broken to parse: its ID and opcode, `rcode`."""
    opcode_bits = wire[2] & 0x78
    flags = bytes((0x80 | opcode_bits, rcode & 0x0F))
    return wire[:2] + flags + bytes(8)


async def serve_tcp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: Authority
) -> None:
    """Answer length-prefixed queries (RFC 1035 4.2.2) until the client closes or idles."""
    try:
        while True:
            prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
            query = await asyncio.wait_for(
                reader.readexactly(int.from_bytes(prefix, "big")), TCP_IDLE_TIMEOUT
            )
            reply = authority.respond(query, udp=False)
            if reply is None:
                break
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(stack: Stack, zone: KV_RO, log: Console) -> None:
    """Serve the zones in `zone` on port 53, UDP and TCP, until stopped."""
    authority = Authority.from_kv(zone)
    udp = await stack.open_udp(PORT)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_tcp(reader, writer, authority)

    tcp = await stack.start_server(on_connection, PORT)
    log.info(f"serving {', '.join(authority.origins)} on port {udp.port}")
    try:
        while True:
            data, addr = await udp.recvfrom()
            try:
                reply = authority.respond(data)
            except Exception as e:  # one bad query must not stop the server
                log.error(f"query from {addr[0]}: {type(e).__name__}: {e}")
                reply = _header_only(data, dns.rcode.SERVFAIL)
            if reply is not None:
                udp.sendto(reply, addr)
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()
        log.info("stopped")


def probe() -> None:
    """Answer queries of every kind in memory, so a build's trace loads what answering uses.

    dnspython imports the code for each record type the first time it meets it; this makes
    it meet every type of the baked-in zones. Raises if an answer is not as it should be.
    """
    from summon.runtime.posix_devices import FolderKV

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zone")
    if not os.path.isdir(folder):  # inside the image, where the runtime warms the app up
        folder = "/data/zone"
    authority = Authority.from_kv(FolderKV(folder))
    types = {rdataset.rdtype for z in authority.zones for _, rdataset in z.iterate_rdatasets()}
    for origin in authority.origins:
        for rdtype in [*sorted(types), dns.rdatatype.ANY]:
            query = dns.message.make_query(origin, rdtype, use_edns=0)
            reply = authority.respond(query.to_wire())
            if reply is None or dns.message.from_wire(reply).rcode() != dns.rcode.NOERROR:
                raise RuntimeError(f"probe: no answer for {origin} {rdtype!r}")
        nxdomain = dns.message.make_query("no-such-name." + origin, "A")
        reply = authority.respond(nxdomain.to_wire())
        if reply is None or dns.message.from_wire(reply).rcode() != dns.rcode.NXDOMAIN:
            raise RuntimeError(f"probe: no NXDOMAIN below {origin}")
    if authority.respond(b"\x12\x34" + bytes(10) + b"\xff") is None:
        raise RuntimeError("probe: no FORMERR for a malformed query")
