"""Fuzzing DHCP and DNS beyond the shared corpus: arbitrary bytes, options behind a valid
DHCP header fed to a bound client, and a real reply (as dnspython writes it) overwritten
anywhere. The rule: parse, or raise the protocol's typed error; the client never raises.
"""

from __future__ import annotations

import dns.message
import dns.rrset
from corpus import PEER, US
from hypothesis import given, settings
from hypothesis import strategies as st

from summon.net.dhcp import ACK, BOOTREPLY, BOUND, OFFER, DhcpClient, DhcpError, DhcpMessage
from summon.net.dns import DnsError, build_query, parse_response

MAC = b"\x02\x00\x00\x00\x00\x07"


def bound_client() -> DhcpClient:
    """A client that went through DISCOVER, OFFER, REQUEST, ACK with a scripted server."""
    client = DhcpClient(MAC, random_bytes=lambda n: bytes(n))
    client.start(0.0)
    options = {51: (600).to_bytes(4, "big"), 54: PEER, 1: b"\xff\xff\xff\x00"}
    for kind in (OFFER, ACK):
        (out,) = client.messages_to_send()
        request = DhcpMessage.parse(out.payload)
        answer = DhcpMessage(
            BOOTREPLY, request.xid, request.chaddr, {53: bytes((kind,)), **options}, yiaddr=US
        )
        client.receive(answer.serialize(), 0.0)
    assert client.state == BOUND
    return client


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
def test_dhcp_arbitrary_bytes_parse_or_raise_typed_error(data: bytes) -> None:
    try:
        DhcpMessage.parse(data)
    except DhcpError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=120))
def test_dhcp_options_after_a_valid_header(tail: bytes) -> None:
    head = DhcpMessage(BOOTREPLY, 1, MAC, {}).serialize()[:240]
    client = bound_client()
    client.receive(head + tail, 1.0)  # never raises
    try:
        DhcpMessage.parse(head + tail)
    except DhcpError:
        pass


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_dns_arbitrary_bytes_parse_or_raise_typed_error(data: bytes) -> None:
    try:
        parse_response(data, 7, "www.example.org")
    except DnsError:
        pass


def _dnspython_reply(query: bytes, *records: str) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(query))
    for text in records:
        name, ttl, rdtype, value = text.split(maxsplit=3)
        response.answer.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, value))
    return response.to_wire()


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 60))
def test_dns_real_replies_overwritten_anywhere(junk: bytes, at: int) -> None:
    query = build_query("www.example.org", 7)
    wire = _dnspython_reply(
        query, "www.example.org. 60 CNAME a.example.org.", "a.example.org. 1 A 192.0.2.1"
    )
    mutated = wire[:at] + junk + wire[at + len(junk) :]
    try:
        parse_response(mutated, 7, "www.example.org")
    except DnsError:
        pass
