"""SYN flood: 10,000 SYNs from distinct source ports leave the listener's memory bounded, are
counted, and a real client still gets through (after the half-open entries expire, or at once
with SYN cookies)."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from tcp_path import IP_B, IPPath

from summon.net.tcp import TCP, Connection, Segment, TCPConfig
from summon.net.tcp.listener import Listener
from summon.net.tcp.wire import SYN

ATTACKER = bytes((203, 0, 113, 66))  # TEST-NET-3: spoofed, nothing answers there
FLOOD = 10_000
BACKLOG = 128


def flood(tcp: TCP, now: float, count: int = FLOOD, first_port: int = 1024) -> None:
    rng = random.Random(count)
    for i in range(count):
        syn = Segment(first_port + i, 80, rng.getrandbits(32), 0, SYN, 65535, mss=1460)
        tcp.receive(ATTACKER, IP_B, syn.encode(ATTACKER, IP_B), now)


def connect_client(path: IPPath, max_time: float) -> float:
    """Connect a to b:80 through the path; returns when it was established."""
    listener = path.b._listeners[80]
    client = path.a.connect(IP_B, 80)
    started = path.clock.now
    accepted = []
    path.run(
        lambda: client.state == "ESTABLISHED" and bool(accepted),
        max_time,
        lambda: accepted.extend(c for c in [listener.accept()] if c is not None),
    )
    assert accepted[0].remote_port == client.local_port
    return path.clock.now - started


def test_flood_is_bounded_counted_and_the_service_answers_afterwards() -> None:
    config = TCPConfig(syn_backlog=BACKLOG, synack_retries=3, syn_cookies=False)
    path = IPPath(1, config_b=config)
    listener = path.b.listen(80)

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    flood(path.b, 0.0, 1000)
    after_1k = tracemalloc.get_traced_memory()[0]
    flood(path.b, 0.0, FLOOD - 1000, first_port=1024 + 1000)
    after_10k = tracemalloc.get_traced_memory()[0]
    grown = sum(
        stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
    )
    tracemalloc.stop()

    assert len(listener.syn_queue) == BACKLOG
    assert len(path.b.connections) == BACKLOG
    assert path.b.counters["tcp__listen__syn_received"] == BACKLOG
    assert path.b.counters["tcp__syn_queue_full__drop"] == FLOOD - BACKLOG
    # 9,000 more SYNs after the first 1,000 cost (almost) nothing more: the queue was full.
    assert after_10k - after_1k < 64 * 1024
    assert grown < 1024 * 1024, f"{grown} bytes kept for {BACKLOG} half-open connections"

    # Half-open entries retransmit their SYN,ACK 3 times (1 + 2 + 4 + 8 s), then go.
    took = connect_client(path, max_time=200.0)
    assert path.clock.now > 15.0  # it did have to wait for the queue to drain
    assert took < 64.0
    assert path.b.counters["tcp__give_up"] == BACKLOG
    assert len(listener.syn_queue) == 0
    assert path.blackholed > 0  # SYN,ACKs to the spoofed address went nowhere


def test_with_syn_cookies_a_client_gets_through_during_the_flood() -> None:
    config = TCPConfig(syn_backlog=BACKLOG, syn_cookies=True)
    path = IPPath(2, config_b=config)
    listener = path.b.listen(80)
    flood(path.b, 0.0)
    assert len(listener.syn_queue) == BACKLOG
    assert path.b.counters["tcp__syn_cookie__sent"] == FLOOD - BACKLOG

    took = connect_client(path, max_time=5.0)
    assert took < 0.1  # one round trip: no waiting for the queue
    assert path.b.counters["tcp__syn_cookie__accepted"] == 1
    assert len(listener.syn_queue) == BACKLOG  # the cookie client took no SYN-queue slot


def test_by_default_a_client_gets_through_a_flood_that_fills_the_syn_queue() -> None:
    """3,000 SYNs from one Linux peer (scapy, in a namespace) filled the default SYN queue
    of an app in direct mode, and curl could not connect until the half-open entries gave
    up: SYN cookies were off unless a listener asked. They are the default now, as on
    Linux: used only while the SYN queue is full."""
    path = IPPath(3)  # the default TCPConfig
    listener = path.b.listen(80)
    flood(path.b, 0.0, TCPConfig().syn_backlog + 500)
    assert len(listener.syn_queue) == TCPConfig().syn_backlog
    connect_client(path, max_time=5.0)  # simulated time: well before any entry expires
    assert path.b.counters["tcp__syn_cookie__accepted"] == 1
    assert path.b.counters["tcp__syn_queue_full__drop"] == 0


@pytest.mark.parametrize("tamper", ["ack", "port", "late"])
def test_forged_or_stale_cookies_are_refused(tamper: str) -> None:
    sent: list[bytes] = []
    tcp = TCP(IP_B, lambda proto, dst, data: sent.append(data),
              config=TCPConfig(syn_backlog=0, syn_cookies=True))  # fmt: skip
    tcp.listen(80)
    from summon.net.tcp import parse_segment

    client = bytes((192, 0, 2, 1))
    tcp.receive(
        client, IP_B, Segment(5555, 80, 1000, 0, SYN, 65535, mss=1460).encode(client, IP_B), 0.0
    )
    synack = parse_segment(IP_B, client, sent[-1])
    ack, port, now = (synack.seq + 1) & 0xFFFFFFFF, 5555, 1.0
    if tamper == "ack":
        ack ^= 0x10
    elif tamper == "port":
        port = 5556
    else:
        now = 200.0  # cookies live one to two 64 s ticks
    tcp.receive(client, IP_B, Segment(port, 80, 1001, ack, 0x10, 65535).encode(client, IP_B), now)
    assert tcp.counters["tcp__syn_cookie__invalid"] == 1
    assert tcp.counters["tcp__listen_ack__respond_rst"] == 1
    assert tcp.connections == []


def served_and_closed_first(path: IPPath, listener: Listener) -> Connection:
    """One connection from a to b:80 that b closes first; b's side, now in TIME_WAIT."""
    client = path.a.connect(IP_B, 80)
    accepted: list[Connection] = []
    path.run(
        lambda: bool(accepted) and client.state == "ESTABLISHED",
        path.clock.now + 5,
        lambda: accepted.extend(c for c in [listener.accept()] if c is not None),
    )
    server = accepted[0]
    path.b.close(server)
    path.run(lambda: client.state == "CLOSE_WAIT", path.clock.now + 5)
    path.a.close(client)
    path.run(lambda: server.state == "TIME_WAIT", path.clock.now + 5)
    path.a.ready()  # what an app's event loop takes from the layers after each step
    path.b.ready()
    return server


def test_time_wait_is_bounded_the_oldest_going_first() -> None:
    """An HTTP/1.0 client (ab) making a thousand requests a second: the server closes first,
    so each connection stays in TIME_WAIT for 2*MSL (60 s), some 60,000 Connection objects
    in a direct-mode app's memory. Past max_time_wait the oldest goes at once, as Linux's
    tcp_max_tw_buckets; a new connection is served as before."""
    path = IPPath(4, config_b=TCPConfig(max_time_wait=8))
    listener = path.b.listen(80)
    closed = [served_and_closed_first(path, listener) for _ in range(20)]
    waiting = [c for c in path.b.connections if c.state == "TIME_WAIT"]
    assert waiting == closed[-8:]  # the newest eight; virtual time is well short of 2*MSL
    assert path.b.counters["tcp__time_wait_full__drop"] == 12
    assert path.clock.now < 2 * TCPConfig().msl
    connect_client(path, max_time=path.clock.now + 5)


def test_time_wait_connections_dropped_past_the_bound_are_freed() -> None:
    """Dropped from the layer but not from its timer heap, each dropped TIME_WAIT stayed in
    memory for 2*MSL all the same: ab's 60,000 requests took a direct-mode app from 40 to
    115 MB. 1,000 connections closed past a bound of 8 cost little more than the first 50."""
    import gc

    path = IPPath(5, config_b=TCPConfig(max_time_wait=8, msl=1000.0))  # none expire here
    listener = path.b.listen(80)
    for _ in range(50):
        served_and_closed_first(path, listener)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            served_and_closed_first(path, listener)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert path.b.counters["tcp__time_wait_full__drop"] == 1042
    assert path.clock.now < 2000.0
    # At most some 80 stale timer entries wait for a compaction, whatever the count.
    assert grown < 250_000, f"{grown} bytes kept for 1,000 dropped TIME_WAIT connections"
