"""The stack-wide send budget: however many peers stop reading (a slow-reader attack on a
served app), what TCP holds for them stays within config.send_memory plus a floor each, the
app's writes wait instead, and every byte still arrives once the peers read."""

from __future__ import annotations

import random

from tcp_path import IP_B, IPPath, drain

from summon.net.tcp import Connection, TCPConfig
from summon.net.tcp.buffers import SEND_FLOOR, SendBudget, SendBuffer

START = 1000


def test_buffers_sharing_a_budget_take_what_it_has_left_past_their_floor() -> None:
    budget = SendBudget(10_000, floor=2_000)
    a, b, c = (SendBuffer(8_000, START, budget) for _ in range(3))
    assert a.write(bytes(9_000)) == 8_000  # its own capacity first
    assert b.space == 2_000 and b.write(bytes(5_000)) == 2_000
    assert b.budget_bound and not a.budget_bound  # b could hold more; a is full
    # The budget is spent, but c may still hold its floor: it is never shut out.
    assert c.space == 2_000 and c.write(bytes(3_000)) == 2_000
    assert budget.used == 12_000 == len(a.data) + len(b.data) + len(c.data)
    # ACKs give bytes back: past the floors, the room goes to whoever writes next.
    assert a.acknowledge((START + 5_000) & 0xFFFFFFFF) == 5_000
    assert budget.used == 7_000 and b.space == 3_000
    c.release()  # the connection is gone
    assert budget.used == 5_000 and c.data == b""


def test_a_buffer_alone_is_bounded_by_its_capacity_only() -> None:
    buf = SendBuffer(4_000, START)
    assert buf.write(bytes(5_000)) == 4_000 and buf.space == 0 and not buf.budget_bound
    buf.acknowledge((START + 1_000) & 0xFFFFFFFF)
    assert buf.space == 1_000


def test_budget_matches_what_is_held_under_random_writes_and_acks() -> None:
    rng = random.Random(3)
    budget = SendBudget(30_000, floor=4_000)
    buffers = [SendBuffer(16_000, START, budget) for _ in range(5)]
    for _ in range(5_000):
        buf = rng.choice(buffers)
        if rng.random() < 0.6:
            buf.write(bytes(rng.randrange(1, 6_000)))
        else:
            buf.acknowledge((buf.start + rng.randrange(0, len(buf.data) + 1)) & 0xFFFFFFFF)
        held = sum(len(b.data) for b in buffers)
        assert budget.used == held <= budget.limit + len(buffers) * budget.floor
    for buf in buffers:
        buf.release()
    assert budget.used == 0


READERS = 12
EACH = 96 * 1024


def test_peers_that_read_nothing_hold_the_budget_then_everything_arrives() -> None:
    """Twelve 64 KiB send buffers would be 768 KiB: the connections hold the 128 KiB budget
    and a floor each. Once the peers read, the connections the budget stopped are told at
    once (no wait for a timer), and every byte arrives."""
    server_config = TCPConfig(send_buffer=64 * 1024, send_memory=128 * 1024)
    # The peers' windows are what stops the bytes: they read nothing at first.
    client_config = TCPConfig(receive_buffer=32 * 1024)
    path = IPPath(5, config_a=client_config, config_b=server_config)
    listener = path.b.listen(80)
    clients = [path.a.connect(IP_B, 80) for _ in range(READERS)]
    servers: list[Connection] = []
    payloads = [random.Random(i).randbytes(EACH) for i in range(READERS)]
    sent = [0] * READERS
    woken: list[Connection] = []

    def serve() -> None:
        """The app: writes as much as TCP takes, and again once a connection is ready."""
        while (conn := listener.accept()) is not None:
            servers.append(conn)
        woken.extend(c for c in path.b.ready() if isinstance(c, Connection))
        for i, conn in enumerate(servers):
            if conn.state == "ESTABLISHED" and sent[i] < EACH:
                sent[i] += path.b.send(conn, payloads[i][sent[i] :])
                if sent[i] < EACH:
                    path.b.wants_send_space(conn)

    budget = path.b.send_budget

    def stalled() -> bool:
        return len(servers) == READERS and all(
            c.snd_wnd == 0 or c.sndbuf.space == 0 for c in servers
        )

    path.run(stalled, 60.0, serve)
    held = sum(len(c.sndbuf.data) for c in servers)
    assert budget.used == held
    assert held <= server_config.send_memory + READERS * SEND_FLOOR
    assert held < READERS * server_config.send_buffer // 2
    stopped = [c for c in servers if c.sndbuf.budget_bound]
    assert stopped and path.b.counters["tcp__send_memory__wait"] >= len(stopped)

    got = [bytearray() for _ in clients]
    woken.clear()

    def read_and_serve() -> None:
        for i, client in enumerate(clients):
            got[i] += drain(path.a, client)[0]
        serve()

    # Reading frees the budget: a connection it stopped is woken without a timer's wait.
    first = path.clock.now
    path.run(lambda: any(c in woken for c in stopped), first + 0.5, read_and_serve)
    # Every byte arrives, and once the last ACKs are in the budget is whole again.
    path.run(lambda: all(len(g) == EACH for g in got) and budget.used == 0, 600.0, read_and_serve)
    by_port = {c.local_port: bytes(g) for c, g in zip(clients, got, strict=True)}
    assert [by_port[s.remote_port] for s in servers] == [payloads[i] for i in range(READERS)]


def test_an_aborted_connection_gives_its_send_bytes_back() -> None:
    config = TCPConfig(send_memory=64 * 1024)
    path = IPPath(2, config_b=config, config_a=TCPConfig(receive_buffer=8 * 1024))
    _client, server = path.handshake()
    path.b.send(server, bytes(200 * 1024))
    assert path.b.send_budget.used == len(server.sndbuf.data) > 0
    path.b.abort(server)
    assert path.b.send_budget.used == 0
