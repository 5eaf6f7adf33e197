"""The gateway's DNS answers, checked with dnspython as the peer, and over real UDP/TCP."""

from __future__ import annotations

import asyncio
import socket

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from summon.gateway import dnswire
from summon.gateway.dns import DnsServer, Zone

SERVICES = {"http": "127.10.20.30", "api": "127.40.50.60"}


def make_zone(queried: list[str]) -> Zone:
    return Zone("summon.test.", SERVICES.get, queried.append)


def answer(zone: Zone, query: dns.message.Message) -> bytes | None:
    return zone.answer(dnswire.parse_query(query.to_wire()))


def ask(zone: Zone, name: str, rdtype: str = "A") -> dns.message.Message:
    response = answer(zone, dns.message.make_query(name, rdtype))
    assert response is not None
    return dns.message.from_wire(response)


def test_a_record_for_a_service_starts_its_boot() -> None:
    queried: list[str] = []
    r = ask(make_zone(queried), "HTTP.summon.test.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    (rrset,) = r.answer
    assert [rd.address for rd in rrset] == ["127.10.20.30"]
    assert rrset.ttl <= 10
    assert queried == ["http"]


def test_unknown_name_is_nxdomain_with_soa() -> None:
    queried: list[str] = []
    r = ask(make_zone(queried), "nope.summon.test.")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    assert not queried
    assert ask(make_zone(queried), "a.http.summon.test.").rcode() == dns.rcode.NXDOMAIN


def test_apex_soa_and_ns_and_nodata() -> None:
    zone = make_zone([])
    assert ask(zone, "summon.test.", "SOA").answer[0].rdtype == dns.rdatatype.SOA
    assert ask(zone, "summon.test.", "NS").answer[0].rdtype == dns.rdatatype.NS
    nodata = ask(zone, "http.summon.test.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_outside_the_zone_is_left_to_the_server() -> None:
    assert answer(make_zone([]), dns.message.make_query("example.com.", "A")) is None


def test_the_response_echoes_id_rd_and_question_and_has_no_ra() -> None:
    query = dns.message.make_query("http.summon.test.", "A", id=4242)
    query.flags |= dns.flags.RD
    raw = answer(make_zone([]), query)
    assert raw is not None
    response = dns.message.from_wire(raw)
    assert response.id == 4242 and query.is_response(response)
    assert response.flags & dns.flags.RD and not response.flags & dns.flags.RA
    soa = ask(make_zone([]), "summon.test.", "SOA").answer[0][0]
    assert (str(soa.mname), str(soa.rname), soa.minimum) == (
        "ns.summon.test.", "hostmaster.summon.test.", 60)  # fmt: skip
    ns = ask(make_zone([]), "ns.summon.test.").answer[0]
    assert [rd.address for rd in ns] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00" * 11,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab",  # label cut off
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",  # pointer loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",  # type cut off
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x80abc",  # bad label type
    ],
)
def test_what_is_not_a_query_raises_the_format_error(wire: bytes) -> None:
    with pytest.raises(dnswire.DnsFormatError):
        dnswire.parse_query(wire)


def test_parse_query_follows_a_pointer_and_lowercases() -> None:
    wire = dns.message.make_query("HTTP.Summon.Test.", "A").to_wire()
    assert dnswire.parse_query(wire).name == "http.summon.test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_over_udp_and_tcp_refused_outside_and_forwarded_upstream() -> None:
    async def main() -> None:
        queried: list[str] = []
        # An "upstream" that is another gateway serving example.test.
        upstream = DnsServer(Zone("example.test.", {"www": "127.9.9.9"}.get))
        up_port = _free_port()
        await upstream.start("127.0.0.1", up_port)
        server = DnsServer(make_zone(queried))
        port = _free_port()
        await server.start("127.0.0.1", port)
        forwarding = DnsServer(make_zone([]), upstream=("127.0.0.1", up_port))
        fport = _free_port()
        await forwarding.start("127.0.0.1", fport)
        try:
            q = dns.message.make_query("api.summon.test.", "A")
            udp = await dns.asyncquery.udp(q, "127.0.0.1", 2, port)
            tcp = await dns.asyncquery.tcp(q, "127.0.0.1", 2, port)
            for r in (udp, tcp):
                assert r.answer[0][0].address == "127.40.50.60"
            outside = dns.message.make_query("www.example.test.", "A")
            refused = await dns.asyncquery.udp(outside, "127.0.0.1", 2, port)
            assert refused.rcode() == dns.rcode.REFUSED
            forwarded = await dns.asyncquery.udp(outside, "127.0.0.1", 2, fport)
            assert forwarded.answer[0][0].address == "127.9.9.9"
            assert queried == ["api", "api"]
        finally:
            for s in (server, upstream, forwarding):
                await s.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_real_resolver() -> None:
    async def main(port: int) -> None:
        server = DnsServer(make_zone([]))
        await server.start("127.0.0.1", port)
        try:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
            resolver.port = port
            answer = await asyncio.to_thread(resolver.resolve, "http.summon.test", "A")
            assert [a.address for a in answer] == ["127.10.20.30"]
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(_free_port()), 20))
