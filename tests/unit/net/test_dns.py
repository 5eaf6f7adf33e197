"""The stub resolver's wire format, checked against dnspython both ways, and its parser's
two steps (integrity, then sanity) on broken and hostile replies (fuzzed in tests/fuzz)."""

from __future__ import annotations

import struct
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from summon.net.dns import (
    MAX_POINTERS,
    DnsError,
    DnsIntegrityError,
    DnsSanityError,
    build_query,
    encode_name,
    parse_response,
)


def dnspython_reply(query: bytes, *records: str, rcode: int = dns.rcode.NOERROR) -> bytes:
    message = dns.message.from_wire(query)
    response = dns.message.make_response(message)
    response.set_rcode(rcode)
    for text in records:
        name, ttl, rdtype, value = text.split(maxsplit=3)
        response.answer.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, value))
    return response.to_wire()


def test_our_query_is_what_dnspython_reads() -> None:
    wire = build_query("www.Example.org", 0x1234)
    message = dns.message.from_wire(wire)
    assert message.id == 0x1234
    assert message.flags & dns.flags.RD
    (question,) = message.question
    assert question.name.to_text() == "www.Example.org."
    assert question.rdtype == dns.rdatatype.A
    # ... and the same bytes dnspython would make for that question (no EDNS).
    theirs = dns.message.make_query("www.Example.org", "A", use_edns=False)
    theirs.id = 0x1234
    assert theirs.to_wire() == wire


def test_dnspython_replies_parse_with_cname_chains_and_smallest_ttl() -> None:
    query = build_query("web.example.org", 7)
    wire = dnspython_reply(
        query,
        "web.example.org. 300 CNAME www.example.org.",
        "www.example.org. 60 A 192.0.2.10",
        "www.example.org. 60 A 192.0.2.11",
        "other.example.org. 5 A 192.0.2.99",  # not in the chain: ignored
    )
    answer = parse_response(wire, 7, "WEB.example.org.")
    assert answer.addresses == [bytes((192, 0, 2, 10)), bytes((192, 0, 2, 11))]
    assert answer.ttl == 60 and answer.rcode == 0 and not answer.truncated


def test_nxdomain_and_nodata() -> None:
    query = build_query("nobody.example.org", 9)
    nx = parse_response(dnspython_reply(query, rcode=dns.rcode.NXDOMAIN), 9, "nobody.example.org")
    assert (nx.addresses, nx.rcode) == ([], dns.rcode.NXDOMAIN)
    empty = parse_response(dnspython_reply(query), 9, "nobody.example.org")
    assert (empty.addresses, empty.rcode) == ([], 0)


def test_a_truncated_reply_keeps_what_is_whole() -> None:
    query = build_query("big.example.org", 3)
    records = [f"big.example.org. 60 A 192.0.2.{i}" for i in range(1, 40)]
    full = dnspython_reply(query, *records)
    cut = bytearray(full[:300])
    cut[2] |= 0x02  # TC
    answer = parse_response(bytes(cut), 3, "big.example.org")
    assert answer.truncated and 0 < len(answer.addresses) < 39


@pytest.mark.parametrize(
    ("mutate", "error", "reason"),
    [
        (lambda w: w[:11], DnsIntegrityError, "too_short"),
        (lambda w: w[:20], DnsIntegrityError, "truncated_name"),
        (lambda w: w[:12] + b"\xc0\x0c" + w[-4:], DnsIntegrityError, "bad_pointer"),  # itself
        (lambda w: w[:12] + b"\xc0\x40" + w[-4:], DnsIntegrityError, "bad_pointer"),  # forward
        (lambda w: w[:12] + b"\x80abc" + w[-4:], DnsIntegrityError, "bad_label"),
        (lambda w: w[:2] + bytes((w[2] & 0x7F,)) + w[3:], DnsSanityError, "not_a_response"),
        (lambda w: b"\x00\x08" + w[2:], DnsSanityError, "wrong_id"),
        (lambda w: w.replace(b"\x03org", b"\x03net"), DnsSanityError, "wrong_question"),
    ],
)
def test_broken_replies_raise_the_typed_error(
    mutate: object, error: type[DnsError], reason: str
) -> None:
    query = build_query("www.example.org", 7)
    wire = dnspython_reply(query, "www.example.org. 60 A 192.0.2.10")
    assert callable(mutate)
    with pytest.raises(error) as e:
        parse_response(mutate(wire), 7, "www.example.org")
    assert e.value.reason == reason
    assert str(e.value).startswith("dns: ")


def test_a_pointer_loop_cannot_hang_the_parser() -> None:
    # Two names pointing at each other: only backward pointers are followed.
    wire = bytes(12) + b"\xc0\x0e\xc0\x0c"
    wire = b"\x00\x07\x81\x80\x00\x01" + wire[6:]
    with pytest.raises(DnsIntegrityError):
        parse_response(wire, 7, "x")


def chained_reply(query: bytes, hops: int, records: int) -> bytes:
    """A reply whose first record's rdata is a chain of `hops` pointers, each to the one
    before (the first to the question's name), and then `records` records whose owner is a
    pointer to the chain's last link."""
    chain_at = len(query) + 12  # after the first record's owner (2) and fixed part (10)
    chain = b"\xc0\x0c" + b"".join(
        (0xC000 | chain_at + 2 * i).to_bytes(2, "big") for i in range(hops - 1)
    )
    last = 0xC000 | chain_at + 2 * (hops - 1)
    first = struct.pack("!HHHIH", 0xC00C, 16, 1, 60, len(chain))  # TXT, not read
    rest = struct.pack("!HHHIH", last, 16, 1, 60, 0) * records
    counts = struct.pack("!HHHH", 1, records + 1, 0, 0)
    return query[:2] + b"\x81\x80" + counts + query[12:] + first + chain + rest


def test_long_pointer_chains_are_refused_before_they_cost_seconds() -> None:
    """Backward pointers cannot loop, but 8,000 of them in a row, read again by each of
    4,000 records after them, is a 64 KiB reply that held the event loop (every connection
    of the app) for 8 s of CPU. A name follows at most 127 pointers, as many as it can have
    labels."""
    query = build_query("a.test", 7)
    # The owner's own pointer and the chain's: MAX_POINTERS jumps.
    at_the_bound = parse_response(chained_reply(query, MAX_POINTERS - 1, 3), 7, "a.test")
    assert at_the_bound.addresses == []  # read; the TXT records answer nothing
    wire = chained_reply(query, 8000, 4000)
    assert len(wire) > 60000
    started = time.process_time()
    with pytest.raises(DnsIntegrityError) as e:
        parse_response(wire, 7, "a.test")
    assert e.value.reason == "pointer_chain"
    assert time.process_time() - started < 0.5


def test_a_reply_to_another_id_is_dropped_before_its_body_is_read() -> None:
    """A spoofer who does not know the query's ID (or a stale reply to an earlier query)
    must not make the resolver parse its body: the same 64 KiB pointer chain that is refused
    as pointer_chain under our ID is refused as wrong_id, unread, under another; so is a
    body that is nothing but garbage."""
    query = build_query("a.test", 7)
    wire = chained_reply(query, 8000, 4000)
    other = b"\x00\x08" + wire[2:]
    with pytest.raises(DnsSanityError) as e:
        parse_response(other, 7, "a.test")
    assert e.value.reason == "wrong_id"
    garbage = b"\x00\x08\x81\x80\xff\xff\xff\xff" + bytes(4) + b"\xff" * 200
    with pytest.raises(DnsSanityError) as e:
        parse_response(garbage, 7, "a.test")
    assert e.value.reason == "wrong_id"
    with pytest.raises(DnsIntegrityError):  # the same garbage under our ID is read, and fails
        parse_response(b"\x00\x07" + garbage[2:], 7, "a.test")
    query_back = b"\x00\x07\x01\x00" + garbage[4:]  # a query (QR clear), not a reply
    with pytest.raises(DnsSanityError) as e:
        parse_response(query_back, 7, "a.test")
    assert e.value.reason == "not_a_response"


def test_names_are_checked_before_any_query() -> None:
    assert encode_name("a.b.") == b"\x01a\x01b\x00"
    for bad in ("", "a..b", "x" * 64 + ".org", "é.org", ".".join(["abcdefgh"] * 40)):
        with pytest.raises(ValueError, match="not a host name"):
            encode_name(bad)


def test_a_records_of_the_wrong_size_are_refused() -> None:
    query = build_query("www.example.org", 7)
    wire = bytearray(dnspython_reply(query, "www.example.org. 60 A 192.0.2.10"))
    # Make the rdata 5 bytes (one junk byte appended).
    wire[-6:-4] = b"\x00\x05"
    wire += b"\x00"
    with pytest.raises(DnsSanityError) as e:
        parse_response(bytes(wire), 7, "www.example.org")
    assert e.value.reason == "bad_a_record"
