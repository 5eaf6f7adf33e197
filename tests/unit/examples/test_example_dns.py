"""The dns example: answers for the baked-in zone, in memory and over loopback UDP and TCP."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import socket
import sys
from pathlib import Path
from types import ModuleType

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summon.runtime.posix_devices import FolderKV, StdoutConsole
from summon.runtime.socket_stack import SocketStack

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "dns"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_dnsd", EXAMPLE / "dnsd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dnsd = _load()
AUTHORITY = dnsd.Authority.from_kv(FolderKV(str(EXAMPLE / "zone")))


def ask(
    name: str, rdtype: str = "A", authority: object = AUTHORITY, **kw: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    reply = authority.respond(query.to_wire())  # type: ignore[attr-defined]
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == query.id and response.flags & dns.flags.QR
    assert response.question == query.question
    return response


def records(section: list[dns.rrset.RRset]) -> list[str]:
    """Each record as "name type data", sorted."""
    return sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in section
        for rdata in rrset
    )


SOA = "example.test. SOA ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 300"


@pytest.mark.parametrize(
    ("name", "rdtype", "answer"),
    [
        ("www.example.test", "A", ["www.example.test. A 192.0.2.10"]),
        ("www.example.test", "AAAA", ["www.example.test. AAAA 2001:db8::10"]),
        ("www.example.test", "TXT", ['www.example.test. TXT "hello from a summon unikernel"']),
        ("example.test", "SOA", [SOA]),
        (
            "example.test",
            "NS",
            ["example.test. NS ns1.example.test.", "example.test. NS ns2.example.test."],
        ),
        ("example.test", "MX", ["example.test. MX 10 mail.example.test."]),
        ("example.test", "A", ["example.test. A 192.0.2.1"]),
        ("deep.sub.example.test", "A", ["deep.sub.example.test. A 192.0.2.20"]),
        (
            "alias.example.test",
            "A",
            ["alias.example.test. CNAME www.example.test.", "www.example.test. A 192.0.2.10"],
        ),
        ("alias.example.test", "CNAME", ["alias.example.test. CNAME www.example.test."]),
        ("outside.example.test", "A", ["outside.example.test. CNAME www.example.org."]),
    ],
)
def test_answers(name: str, rdtype: str, answer: list[str]) -> None:
    response = ask(name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert records(response.answer) == answer
    assert response.answer[0].ttl == 300


def test_any() -> None:
    response = ask("www.example.test", "ANY")
    assert [r.split()[1] for r in records(response.answer)] == ["A", "AAAA", "TXT"]


def test_names_keep_the_case_they_were_asked_in() -> None:
    response = ask("WwW.Example.TEST", "A")
    assert response.answer[0].name.to_text() == "WwW.Example.TEST."


@pytest.mark.parametrize(
    "name", ["nope.example.test", "deeper.www.example.test", "x.alias2.example.test"]
)
def test_nxdomain_with_the_soa(name: str) -> None:
    response = ask(name)
    assert (response.rcode(), response.answer) == (dns.rcode.NXDOMAIN, [])
    assert response.flags & dns.flags.AA
    assert records(response.authority) == [SOA]


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("www.example.test", "MX"), ("sub.example.test", "A"), ("alias.example.test", "NONE")],
)
def test_nodata_with_the_soa(name: str, rdtype: str) -> None:
    # sub.example.test holds nothing but has a name below it: it exists (RFC 8020).
    if rdtype == "NONE":
        rdtype = "SRV"  # the CNAME's target has no SRV either
        response = ask(name, rdtype)
        assert records(response.answer) == ["alias.example.test. CNAME www.example.test."]
    else:
        response = ask(name, rdtype)
        assert response.answer == []
    assert response.rcode() == dns.rcode.NOERROR
    assert records(response.authority) == [SOA]


@pytest.mark.parametrize("name", ["delegated.example.test", "host.delegated.example.test"])
def test_referral_at_a_delegation(name: str) -> None:
    response = ask(name)
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.flags & dns.flags.AA
    assert response.answer == []
    assert records(response.authority) == ["delegated.example.test. NS ns.delegated.example.test."]
    assert records(response.additional) == ["ns.delegated.example.test. A 192.0.2.99"]


@pytest.mark.parametrize(
    ("name", "rdtype", "kw"),
    [
        ("www.example.org", "A", {}),
        ("test", "SOA", {}),
        ("www.example.test", "A", {"rdclass": dns.rdataclass.CH}),
        ("example.test", "AXFR", {}),
    ],
)
def test_refused(name: str, rdtype: str, kw: dict[str, object]) -> None:
    response = ask(name, rdtype, **kw)
    assert (response.rcode(), response.answer) == (dns.rcode.REFUSED, [])
    assert not response.flags & dns.flags.AA


def test_other_opcodes_are_not_implemented() -> None:
    query = dns.message.make_query("example.test", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = AUTHORITY.respond(query.to_wire())
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP


def test_silent_for_responses_and_scraps() -> None:
    query = dns.message.make_query("www.example.test", "A")
    response = dns.message.make_response(query)
    assert AUTHORITY.respond(response.to_wire()) is None
    assert AUTHORITY.respond(b"\x00" * 11) is None


def test_formerr_for_what_does_not_parse() -> None:
    reply = AUTHORITY.respond(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www")
    assert reply == b"\xab\xcd\x80\x01" + bytes(8)


def test_edns_is_echoed() -> None:
    response = ask("www.example.test", use_edns=0, payload=4096)
    assert response.edns == 0 and response.payload == dnsd.UDP_PAYLOAD


BIG_ZONE = (
    "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"
    + "".join(f'big TXT "{"x" * 200} {i}"\n' for i in range(20))  # ~4.4 kB
    + "".join(f'mid TXT "{"x" * 200} {i}"\n' for i in range(4))  # ~900 bytes
)


def test_answers_that_do_not_fit_udp_are_truncated_and_whole_over_tcp() -> None:
    zone = dns.zone.from_text(BIG_ZONE, origin="big.test", relativize=False)
    authority = dnsd.Authority([zone])

    def reply(name: str, udp: bool = True, **kw: object) -> tuple[int, dns.message.Message]:
        query = dns.message.make_query(name, "TXT", **kw)  # type: ignore[arg-type]
        wire = authority.respond(query.to_wire(), udp=udp)
        assert wire is not None
        return len(wire), dns.message.from_wire(wire)

    size, response = reply("mid.big.test")  # no EDNS: 512 bytes at most
    assert size <= 512 and response.flags & dns.flags.TC and response.answer == []
    size, response = reply("mid.big.test", use_edns=0, payload=4096)
    assert 512 < size <= dnsd.UDP_PAYLOAD and not response.flags & dns.flags.TC
    assert len(records(response.answer)) == 4
    size, response = reply("big.big.test", use_edns=0, payload=4096)  # capped at UDP_PAYLOAD
    assert size <= dnsd.UDP_PAYLOAD and response.flags & dns.flags.TC
    size, response = reply("big.big.test", udp=False)
    assert not response.flags & dns.flags.TC and len(records(response.answer)) == 20


@settings(max_examples=500)
@given(st.binary(min_size=12, max_size=120))
def test_any_bytes_get_silence_or_a_response(wire: bytes) -> None:
    reply = AUTHORITY.respond(wire)
    if reply is not None:
        assert reply[:2] == wire[:2] and reply[2] & 0x80  # the ID, and QR set


def test_zone_files_are_needed(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a zone")
    with pytest.raises(ValueError, match="no zone files"):
        dnsd.Authority.from_kv(FolderKV(str(tmp_path)))


def test_probe() -> None:
    dnsd.probe()


def test_server_over_loopback_udp_and_tcp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp_port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tcp_port = s.getsockname()[1]
    log = io.StringIO()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", {(53, "udp"): udp_port, (53, "tcp"): tcp_port})
        zone = FolderKV(str(EXAMPLE / "zone"))
        server = asyncio.create_task(dnsd.main(stack, zone, StdoutConsole("info", log)))
        for _ in range(100):
            if "serving" in log.getvalue():
                break
            await asyncio.sleep(0.01)
        query = dns.message.make_query("www.example.test", "AAAA")
        response = await dns.asyncquery.udp(query, "127.0.0.1", port=udp_port, timeout=5)
        assert records(response.answer) == ["www.example.test. AAAA 2001:db8::10"]
        query = dns.message.make_query("example.test", "NS")
        response = await dns.asyncquery.tcp(query, "127.0.0.1", port=tcp_port, timeout=5)
        assert len(response.answer[0]) == 2
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(server, 5)

    asyncio.run(scenario())
    assert log.getvalue().splitlines() == [
        "info: serving example.test. on port 53",
        "info: stopped",
    ]
