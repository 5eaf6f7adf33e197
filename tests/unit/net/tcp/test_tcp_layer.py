"""The layer: public surface, imports, demultiplexing, readiness, ICMP errors, IPv4 failures."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tcp_path import IP_A, IP_B, IPPath, drain

import summon.net.tcp as tcp_package
from summon.net.icmp import IcmpErrorEvent
from summon.net.ipv4 import NoRoute
from summon.net.tcp import (
    TCP,
    ConnectionClosed,
    ConnectionEstablished,
    ConnectionStateError,
    DataReceived,
    EndOfStream,
    Segment,
    TCPConfig,
)
from summon.net.tcp.wire import SYN


def test_public_names() -> None:
    assert sorted(tcp_package.__all__) == sorted([
        "TCP", "Connection", "ConnectionClosed", "ConnectionEstablished", "ConnectionStateError",
        "DataReceived", "EndOfStream", "Event", "Listener", "Segment", "TCPConfig",
        "TCPIntegrityError", "TCPSanityError", "parse_segment",
    ])  # fmt: skip


def test_import_pulls_in_no_heavy_stdlib_modules() -> None:
    # summon.net is copied into images: every import costs size and start time.
    code = (
        "import sys; before = set(sys.modules); import summon.net.tcp; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stdlib = {m for m in out.stdout.split() if not m.startswith("summon")}
    assert stdlib <= {"__future__", "heapq", "_heapq"}, stdlib


def test_two_connections_to_one_port_are_kept_apart() -> None:
    path = IPPath(3)
    listener = path.b.listen(80)
    one = path.a.connect(IP_B, 80)
    two = path.a.connect(IP_B, 80)
    assert one.local_port != two.local_port
    path.run(lambda: len(listener.accept_queue) == 2, 10.0)
    servers = {c.remote_port: c for c in (listener.accept(), listener.accept()) if c}
    path.a.send(one, b"one")
    path.a.send(two, b"two")
    path.run(lambda: all(c.readable for c in servers.values()), 10.0)
    assert drain(path.b, servers[one.local_port])[0] == b"one"
    assert drain(path.b, servers[two.local_port])[0] == b"two"


def test_ready_reports_what_changed_once() -> None:
    path = IPPath(4)
    listener = path.b.listen(80)
    client = path.a.connect(IP_B, 80)
    path.run(lambda: client.state == "ESTABLISHED" and bool(listener.accept_queue), 10.0)
    assert client in path.a.ready()
    assert path.a.ready() == []
    assert listener in path.b.ready()
    server = listener.accept()
    assert server is not None
    path.a.send(client, b"x")
    path.run(lambda: server.readable > 0, 10.0)
    assert server in path.b.ready()
    assert path.b.next_event(server) == ConnectionEstablished()
    assert path.b.next_event(server) == DataReceived(b"x")
    assert path.b.next_event(server) is None


def test_events_come_in_order_and_close_is_final() -> None:
    path = IPPath(5)
    client, server = path.handshake()
    path.b.send(server, b"bye")
    path.b.close(server)
    path.run(lambda: client.state == "CLOSE_WAIT", 10.0)
    assert path.a.next_event(client) == ConnectionEstablished()
    assert path.a.next_event(client) == DataReceived(b"bye")
    assert path.a.next_event(client) == EndOfStream()
    assert path.a.next_event(client) is None
    path.a.close(client)
    path.run(lambda: client.state == "CLOSED", 10.0)
    assert path.a.next_event(client) == ConnectionClosed("closed")
    assert path.a.next_event(client) is None
    with pytest.raises(ConnectionStateError):
        path.a.send(client, b"late")
    path.a.close(client)  # idempotent
    path.a.abort(client)


def test_send_takes_only_what_fits() -> None:
    path = IPPath(6, config_a=TCPConfig(send_buffer=1000))
    client, _ = path.handshake()
    assert path.a.send(client, b"x" * 5000) == 1000
    assert client.send_space == 0 and path.a.send(client, b"y") == 0


def test_segments_for_another_address_are_dropped() -> None:
    sent: list[bytes] = []
    tcp = TCP(IP_B, lambda p, d, data: sent.append(data))
    tcp.listen(80)
    other = bytes((192, 0, 2, 255))
    tcp.receive(IP_A, other, Segment(1, 80, 0, 0, SYN, 100).encode(IP_A, other), 0.0)
    assert tcp.counters["tcp__not_local__drop"] == 1 and sent == []


def test_listen_twice_is_refused_and_close_frees_the_port() -> None:
    tcp = TCP(IP_B, lambda p, d, data: None)
    listener = tcp.listen(80)
    with pytest.raises(ValueError):
        tcp.listen(80)
    tcp.unlisten(listener)
    assert listener.state == "CLOSED"
    tcp.listen(80)


def test_no_route_is_counted_not_raised() -> None:
    def send_ip(proto: int, dst: bytes, payload: bytes) -> None:
        raise NoRoute("no gateway")

    tcp = TCP(IP_A, send_ip, config=TCPConfig(syn_retries=1))
    conn = tcp.connect(IP_B, 80, now=0.0)
    tcp.timers(10.0)
    tcp.timers(20.0)
    assert tcp.counters["tcp__send_failed_noroute__drop"] == 2
    assert tcp.next_event(conn) == ConnectionClosed("timeout")


def icmp(
    kind_type: int, code: int, conn_seq: int, local_port: int, mtu: int = 0, remote_port: int = 80
) -> IcmpErrorEvent:
    """An ICMP error as IPv4 hands it up: quoting our header's ports and sequence number."""
    quote = local_port.to_bytes(2, "big") + remote_port.to_bytes(2, "big")
    quote += conn_seq.to_bytes(4, "big")
    return IcmpErrorEvent(kind_type, code, IP_B, IP_A, IP_B, 6, mtu, quote)


def test_icmp_port_unreachable_fails_a_connect() -> None:
    tcp = TCP(IP_A, lambda p, d, data: None)
    conn = tcp.connect(IP_B, 80, now=0.0)
    tcp.receive_error(icmp(3, 3, (conn.iss + 5) & 0xFFFFFFFF, conn.local_port), 0.1)
    assert conn.state == "SYN_SENT"  # quoting a sequence number not in flight: ignored
    assert tcp.counters["tcp__icmp_seq_not_in_flight__drop"] == 1
    tcp.receive_error(icmp(3, 3, conn.iss, conn.local_port), 0.1)
    assert tcp.next_event(conn) == ConnectionClosed("unreachable")


def test_icmp_fragmentation_needed_lowers_the_mss_and_resends() -> None:
    path = IPPath(8)
    client, server = path.handshake()
    path.a.send(client, b"z" * 3000)  # three 1460-byte segments leave now
    sent_before = path.sent
    event = icmp(3, 4, client.snd_una, client.local_port, mtu=1000, remote_port=8080)
    path.a.receive_error(event, path.clock.now)
    assert client.mss == 960
    assert path.a.counters["tcp__icmp_fragmentation_needed__lower_mss"] == 1
    assert path.sent > sent_before  # resent at once, in smaller pieces
    path.run(lambda: server.readable == 3000 and client.snd_una == client.snd_max, 10.0)
    path.a.receive_error(event, path.clock.now)  # now quoting acknowledged data: ignored
    assert path.a.counters["tcp__icmp_seq_not_in_flight__drop"] == 1


def test_time_wait_gives_way_to_a_new_syn() -> None:
    path = IPPath(9)
    listener = path.b.listen(80)
    client = path.a.connect(IP_B, 80, local_port=5000)
    path.run(lambda: bool(listener.accept_queue), 10.0)
    server = listener.accept()
    assert server is not None
    path.b.close(server)  # the server closes first: it ends in TIME_WAIT
    path.run(lambda: client.state == "CLOSE_WAIT", 10.0)
    path.a.close(client)
    path.run(lambda: server.state == "TIME_WAIT" and client.state == "CLOSED", 10.0)
    again = path.a.connect(IP_B, 80, local_port=5000)
    # Either its ISN lies above the old RCV.NXT (the SYN reopens the pair at once), or it
    # draws an ACK, the client answers with an exact RST, and its next SYN gets through.
    path.run(lambda: again.state == "ESTABLISHED", 30.0)
    reopened = path.b.counters["tcp__time_wait__reopen"]
    challenged = path.b.counters["tcp__syn_in_synchronized__challenge_ack"]
    assert (reopened, challenged) in ((1, 0), (0, 1))


def test_a_thousand_connections_open_at_once_are_all_held() -> None:
    import gc
    import tracemalloc

    tracemalloc.start()
    path = IPPath(10)
    listener = path.b.listen(80)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    clients = [path.a.connect(IP_B, 80) for _ in range(1000)]
    servers: list[object] = []

    def pump() -> None:
        while (conn := listener.accept()) is not None:
            servers.append(conn)

    path.run(
        lambda: len(servers) == 1000 and all(c.state == "ESTABLISHED" for c in clients), 5.0, pump
    )
    for conn in clients:
        drain(path.a, conn)
    gc.collect()
    per_connection = (tracemalloc.get_traced_memory()[0] - base) / 2000
    tracemalloc.stop()
    assert len(path.a.connections) == len(path.b.connections) == 1000
    assert per_connection < 4096, per_connection  # idle: buffers are allocated as data comes
