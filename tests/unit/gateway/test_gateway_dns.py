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
        # A name over 255 octets (five labels of 63): it was answered, echoed whole.
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + (b"\x3f" + b"a" * 63) * 5
        + b"\x00\x00\x01\x00\x01",
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


def test_an_edns_query_gets_an_opt_record_with_do_copied() -> None:
    """RFC 6891 6.1: a server answers an OPT with its own (glibc's `options edns0`,
    systemd-resolved and unbound all ask so)."""
    zone = make_zone([])
    q = dns.message.make_query("http.summon.test.", "A", use_edns=0, payload=4096)
    plain = answer(zone, q)
    assert plain is not None
    r = dns.message.from_wire(plain)
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].address == "127.10.20.30"
    assert (r.edns, r.payload) == (0, dnswire.EDNS_PAYLOAD) and not r.ednsflags & dns.flags.DO
    secure = answer(zone, dns.message.make_query("http.summon.test.", "A", want_dnssec=True))
    assert secure is not None and dns.message.from_wire(secure).ednsflags & dns.flags.DO
    nx = answer(zone, dns.message.make_query("nope.summon.test.", "A", use_edns=0))
    assert nx is not None and dns.message.from_wire(nx).edns == 0  # NXDOMAIN has one too
    # Without one, none: a resolver that did not ask gets a plain RFC 1035 answer.
    assert ask(zone, "http.summon.test.").edns == -1


def test_edns_version_above_0_is_badvers_and_two_opts_formerr() -> None:
    zone = make_zone([])
    r1 = answer(zone, dns.message.make_query("http.summon.test.", "A", use_edns=1))
    assert r1 is not None
    badvers = dns.message.from_wire(r1)
    assert badvers.rcode() == dns.rcode.BADVERS and not badvers.answer and badvers.edns == 0
    # Two OPT records: the query's own, repeated, with ARCOUNT saying 2.
    wire = bytearray(dns.message.make_query("http.summon.test.", "A", use_edns=0).to_wire())
    wire[10:12] = b"\x00\x02"
    wire += wire[-11:]
    query = dnswire.parse_query(bytes(wire))
    assert query.opts == 2
    raw = zone.answer(query)
    assert raw is not None and dns.message.from_wire(raw).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x00\x29\x10",
        b"\x01a\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x05ab",
    ],
    ids=["cut-off", "not-root", "data-past-end"],
)
def test_a_broken_additional_section_is_a_format_error(tail: bytes) -> None:
    head = bytearray(dns.message.make_query("http.summon.test.", "A").to_wire())
    head[10:12] = b"\x00\x01"
    with pytest.raises(dnswire.DnsFormatError):
        dnswire.parse_query(bytes(head) + tail)


def test_a_flood_of_forwards_or_tcp_clients_cannot_take_the_gateways_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_FORWARDS a forward is SERVFAIL at once; past MAX_TCP_CLIENTS a TCP client
    is closed: neither waits on, nor holds, another socket."""
    from summon.gateway import dns as gwdns

    monkeypatch.setattr(gwdns, "MAX_FORWARDS", 3)
    monkeypatch.setattr(gwdns, "MAX_TCP_CLIENTS", 2)

    async def main() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # an upstream that never answers
        silent.bind(("127.0.0.1", 0))
        server = DnsServer(make_zone([]), upstream=silent.getsockname())
        port = _free_port()
        await server.start("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        try:
            outside = dns.message.make_query("www.example.test.", "A")
            slow = [
                asyncio.ensure_future(dns.asyncquery.udp(outside, "127.0.0.1", 5, port))
                for _ in range(3)
            ]
            await asyncio.sleep(0.2)
            t0 = loop.time()
            busy = await dns.asyncquery.udp(outside, "127.0.0.1", 1, port)
            assert busy.rcode() == dns.rcode.SERVFAIL and loop.time() - t0 < 0.5
            inside = await dns.asyncquery.udp(
                dns.message.make_query("http.summon.test.", "A"), "127.0.0.1", 1, port
            )
            assert inside.answer[0][0].address == "127.10.20.30"  # the zone is still served
            for done in await asyncio.gather(*slow):  # each after UPSTREAM_TIMEOUT
                assert done.rcode() == dns.rcode.SERVFAIL
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(1), 2) == b""  # closed at once
            writer.close()
            held[0][1].close()
            await asyncio.sleep(0.1)
            q = dns.message.make_query("api.summon.test.", "A")
            tcp = await dns.asyncquery.tcp(q, "127.0.0.1", 2, port)
            assert tcp.answer[0][0].address == "127.40.50.60"  # a place came free
            held[1][1].close()
        finally:
            await server.close()
            silent.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_tcp_client_that_does_not_read_its_answers_is_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queries over TCP whose answers are never read: the server waited to write for as long
    as the client liked, and held one of its MAX_TCP_CLIENTS all along."""
    import struct

    from summon.gateway import dns as dns_mod

    monkeypatch.setattr(dns_mod, "TCP_IDLE", 0.2)

    class NeverRead:
        """A writer whose client reads nothing: its buffers stay full."""

        closed = False

        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            await asyncio.Event().wait()  # the client's window never opens

        def close(self) -> None:
            self.closed = True

        async def wait_closed(self) -> None:
            pass

    async def main() -> None:
        server = DnsServer(make_zone([]))
        query = dns.message.make_query("web.summon.test.", "A").to_wire()
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack("!H", len(query)) + query)
        writer = NeverRead()
        await asyncio.wait_for(server._serve_tcp(reader, writer), 10)  # type: ignore[arg-type]
        assert writer.closed and server._tcp_clients == 0

    asyncio.run(main())
