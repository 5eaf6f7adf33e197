"""ARP: the recorded packet, parse failures, the cache's bounds and the resolver's queue."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.arp import (
    HELD_OVERHEAD,
    OP_REPLY,
    OP_REQUEST,
    ArpCache,
    ArpError,
    ArpPacket,
    ArpResolver,
)
from summon.net.counters import Counters
from summon.net.errors import IntegrityError, SanityError
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, parse_mac
from summon.net.ipv4 import parse_address

# The ARP part of Linux's request "who has 10.231.0.2? tell 10.231.0.1" (RFC 826 layout).
LINUX_REQUEST = bytes.fromhex("0001080006040001025a000000010ae700010000000000000ae70002")
OUR_MAC = parse_mac("02:5a:00:00:00:02")
OUR_IP = parse_address("10.231.0.2")
PEER_MAC = parse_mac("02:5a:00:00:00:01")
PEER_IP = parse_address("10.231.0.1")


def test_recorded_linux_request_parses() -> None:
    packet = ArpPacket.parse(LINUX_REQUEST)
    assert packet == ArpPacket(OP_REQUEST, PEER_MAC, PEER_IP, bytes(6), OUR_IP)
    assert packet.serialize() == LINUX_REQUEST
    # Link padding after the 28 bytes is ignored.
    assert ArpPacket.parse(LINUX_REQUEST + bytes(18)) == packet


def _with(offset: int, value: bytes) -> bytes:
    return LINUX_REQUEST[:offset] + value + LINUX_REQUEST[offset + len(value) :]


@pytest.mark.parametrize(
    ("data", "error", "reason", "message"),
    [
        (LINUX_REQUEST[:27], IntegrityError, "too_short", "arp: packet of 27 bytes < 28"),
        (_with(4, b"\x08"), IntegrityError, "bad_address_length", "address lengths 8/4 != 6/4"),
        (_with(5, b"\x10"), IntegrityError, "bad_address_length", "address lengths 6/16"),
        (_with(0, b"\x00\x06"), SanityError, "unsupported_type", "hardware/protocol type 6/"),
        (_with(2, b"\x86\xdd"), SanityError, "unsupported_type", "1/0x86dd != 1/0x0800"),
        (_with(6, b"\x00\x03"), SanityError, "bad_operation", "operation 3 is not request"),
        (_with(8, b"\x01"), SanityError, "sender_mac_multicast", "sender MAC 01:5a:00"),
        (_with(14, b"\xe0"), SanityError, "bad_sender_ip", "sender IP 224.231.0.1 cannot"),
        (_with(14, b"\x7f"), SanityError, "bad_sender_ip", "sender IP 127.231.0.1"),
    ],
)
def test_bad_packets_raise_the_typed_error_naming_the_condition(
    data: bytes, error: type[Exception], reason: str, message: str
) -> None:
    with pytest.raises(ArpError) as info:
        ArpPacket.parse(data)
    assert isinstance(info.value, error)
    assert info.value.reason == reason
    assert message in str(info.value)


ipv4 = st.binary(min_size=4, max_size=4).filter(lambda b: b[0] < 224 and b[0] != 127)
unicast_mac = st.binary(min_size=6, max_size=6).map(lambda b: bytes([b[0] & 0xFE]) + b[1:])


@given(
    op=st.sampled_from([OP_REQUEST, OP_REPLY]),
    sha=unicast_mac,
    spa=ipv4,
    tha=st.binary(min_size=6, max_size=6),
    tpa=st.binary(min_size=4, max_size=4),
)
def test_parse_inverts_serialize(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    packet = ArpPacket(op, sha, spa, tha, tpa)
    assert ArpPacket.parse(packet.serialize()) == packet


# --- the cache ---------------------------------------------------------------------------


def test_cache_entries_expire_after_their_lifetime() -> None:
    counters = Counters()
    cache = ArpCache(counters, lifetime=60.0)
    cache.put(PEER_IP, PEER_MAC, now=100.0)
    assert cache.get(PEER_IP, 159.9) == PEER_MAC
    assert cache.get(PEER_IP, 160.0) is None
    assert PEER_IP not in cache
    assert counters["arp__entry_expired__remove"] == 1


def test_full_cache_evicts_the_oldest_and_a_refresh_makes_an_entry_young() -> None:
    counters = Counters()
    cache = ArpCache(counters, max_entries=3)
    ips = [bytes([10, 0, 0, i]) for i in range(1, 5)]
    for ip in ips[:3]:
        cache.put(ip, PEER_MAC, 0.0)
    cache.put(ips[0], OUR_MAC, 1.0)  # refresh: now the youngest
    cache.put(ips[3], PEER_MAC, 2.0)  # evicts ips[1], the oldest now
    assert len(cache) == 3
    assert ips[1] not in cache
    assert cache.get(ips[0], 2.0) == OUR_MAC
    assert counters["arp__cache_full__evict"] == 1


def test_resolver_sweeps_the_cache_at_most_once_a_second() -> None:
    arp = resolver(lifetime=1.0)
    arp.cache.put(PEER_IP, PEER_MAC, 0.0)
    arp.timers(0.5)  # a sweep: nothing is stale yet; the next one is due at 1.5
    arp.timers(1.2)  # stale now, but no sweep is due
    assert len(arp.cache) == 1
    assert arp.cache.get(PEER_IP, 1.2) is None  # lookups never return it all the same
    arp.cache.put(PEER_IP, PEER_MAC, 0.2)
    arp.timers(1.5)
    assert len(arp.cache) == 0


def test_sweep_removes_every_expired_entry() -> None:
    counters = Counters()
    cache = ArpCache(counters, lifetime=10.0)
    cache.put(b"\x0a\0\0\x01", PEER_MAC, 0.0)
    cache.put(b"\x0a\0\0\x02", PEER_MAC, 5.0)
    cache.expire(12.0)
    assert len(cache) == 1
    assert counters["arp__entry_expired__remove"] == 1


# --- the resolver ------------------------------------------------------------------------


def resolver(**kwargs: float) -> ArpResolver:
    return ArpResolver(OUR_MAC, OUR_IP, Counters(), **kwargs)  # type: ignore[arg-type]


def test_request_for_us_is_answered_and_the_asker_learned() -> None:
    arp = resolver()
    out = arp.receive(ArpPacket.parse(LINUX_REQUEST), now=0.0)
    reply = ArpPacket(OP_REPLY, OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    assert out == [(PEER_MAC, ETHERTYPE_ARP, reply.serialize())]
    assert arp.cache.get(PEER_IP, 1.0) == PEER_MAC
    assert arp.counters["arp__request__reply"] == 1


def test_broadcasts_between_others_do_not_fill_the_cache() -> None:
    arp = resolver()
    other = ArpPacket(OP_REQUEST, PEER_MAC, PEER_IP, bytes(6), parse_address("10.231.0.9"))
    assert arp.receive(other, 0.0) == []
    assert PEER_IP not in arp.cache
    assert arp.counters["arp__not_for_us__ignore"] == 1
    # ...but refresh a sender already known (RFC 826's merge flag).
    arp.cache.put(PEER_IP, OUR_MAC, 0.0)
    arp.receive(other, 1.0)
    assert arp.cache.get(PEER_IP, 1.0) == PEER_MAC


def test_someone_claiming_our_address_is_counted_not_learned() -> None:
    arp = resolver()
    spoof = ArpPacket(OP_REPLY, PEER_MAC, OUR_IP, OUR_MAC, OUR_IP)
    assert arp.receive(spoof, 0.0) == []
    assert OUR_IP not in arp.cache
    assert arp.counters["arp__address_conflict__drop"] == 1


def test_datagrams_wait_for_resolution_and_go_out_in_order_on_reply() -> None:
    arp = resolver()
    first = arp.resolve(PEER_IP, b"one", now=0.0)
    assert first == [arp.request(PEER_IP)]
    assert first[0][0] == BROADCAST
    assert arp.resolve(PEER_IP, b"two", now=0.1) == []  # no second request while pending
    assert arp.pending(PEER_IP) == 2
    reply = ArpPacket(OP_REPLY, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)
    assert arp.receive(reply, 0.2) == [
        (PEER_MAC, ETHERTYPE_IPV4, b"one"),
        (PEER_MAC, ETHERTYPE_IPV4, b"two"),
    ]
    assert arp.pending(PEER_IP) == 0
    assert arp.resolve(PEER_IP, b"three", 0.3) == [(PEER_MAC, ETHERTYPE_IPV4, b"three")]


def test_pending_queue_keeps_the_newest_within_its_byte_bound() -> None:
    arp = resolver(queue_bytes=2 * (4 + HELD_OVERHEAD) + 5)  # room for two 4-byte datagrams
    for i in range(5):
        arp.resolve(PEER_IP, bytes([i]) * 4, now=0.0)
    assert arp.pending(PEER_IP) == 2
    assert arp.counters["arp__pending_full__drop"] == 3
    reply = ArpPacket(OP_REPLY, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)
    assert [p for _, _, p in arp.receive(reply, 0.1)] == [b"\3" * 4, b"\4" * 4]


def test_tiny_datagrams_held_for_unresolved_hops_cost_the_bound_in_real_memory() -> None:
    """Each held datagram is charged its bytes and what Python spends to hold it: counting
    bytes alone, 40-byte datagrams (our RSTs to spoofed on-link sources) for 64 next hops
    held 16.4 MiB within the 64 x 128 KiB bound."""
    arp = resolver()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for hop in range(16):
            for n in range(5000):
                arp.resolve(bytes((10, 0, 1, hop)), n.to_bytes(4, "big") * 10, 0.0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert arp.counters["arp__pending_full__drop"] > 0
    assert held < 1.1 * 16 * arp.queue_bytes


def test_number_of_next_hops_resolving_at_once_is_bounded() -> None:
    arp = resolver(max_pending=2)
    arp.resolve(b"\x0a\0\0\x01", b"a", 0.0)
    arp.resolve(b"\x0a\0\0\x02", b"b", 0.0)
    assert arp.resolve(b"\x0a\0\0\x03", b"c", 0.0) == []
    assert arp.counters["arp__too_many_pending__drop"] == 1
    assert arp.pending(b"\x0a\0\0\x03") == 0


def test_requests_are_retried_then_the_held_datagrams_given_up() -> None:
    arp = resolver(retry_interval=1.0, max_requests=3)
    arp.resolve(PEER_IP, b"lost", 0.0)
    assert arp.next_deadline() == 1.0
    assert arp.timers(0.5) == ([], [])
    assert arp.timers(1.0) == ([arp.request(PEER_IP)], [])
    assert arp.timers(2.0) == ([arp.request(PEER_IP)], [])
    # Three requests went out (the first and two retries): the third second gives up.
    assert arp.timers(3.0) == ([], [b"lost"])
    assert arp.counters["arp__request__retransmit"] == 2
    assert arp.counters["arp__unresolved__drop"] == 1
    assert arp.next_deadline() is None
