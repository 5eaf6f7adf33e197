"""The stack-wide receive budget: however many connections an app leaves unread, and however
a peer scatters out-of-order bytes over them, what TCP holds stays within
config.receive_memory (plus at most one receive buffer), windows close instead, and the
data still all arrives once the app reads."""

from __future__ import annotations

import random
import tracemalloc

from tcp_path import IP_B, IPPath, drain

from summon.net.tcp import Connection, TCPConfig
from summon.net.tcp.buffers import RUN_OVERHEAD, ReceiveBudget, ReceiveBuffer


def held(buffers: list[ReceiveBuffer]) -> int:
    """What the buffers hold, as the budget counts it: bytes, and RUN_OVERHEAD a run."""
    return sum(len(b.readable) + sum(len(run) + RUN_OVERHEAD for run in b.runs) for b in buffers)


def test_buffers_sharing_a_budget_close_their_windows_when_it_is_spent() -> None:
    budget = ReceiveBudget(10_000, ooo_limit=3_000)
    a, b = ReceiveBuffer(8_000, budget=budget), ReceiveBuffer(8_000, budget=budget)
    assert a.free == b.free == 8_000
    a.add(0, bytes(7_000), 0)
    assert a.free == 1_000 and b.free == 3_000  # b's window is what the budget has left
    b.add(0, bytes(3_000), 0)
    assert a.free == b.free == 0 and budget.used == 10_000
    # Reading gives the budget back: both windows open again.
    assert len(a.take(5_000)) == 5_000
    assert a.free == 5_000 and b.free == 5_000 and budget.used == 5_000


def test_out_of_order_bytes_take_only_their_share_and_are_dropped_past_it() -> None:
    budget = ReceiveBudget(100_000, ooo_limit=3_000 + 2 * RUN_OVERHEAD)
    a, b = ReceiveBuffer(50_000, budget=budget), ReceiveBuffer(50_000, budget=budget)
    assert a.add(1_000, bytes(2_000), 0) == (0, "queued")
    assert b.add(1_000, bytes(1_000), 0) == (0, "queued")
    assert budget.ooo == budget.ooo_limit
    # A new hole elsewhere, and a run grown further, are both past the share: dropped.
    assert b.add(5_000, b"x", 0) == (0, "over_budget")
    assert a.add(3_000, b"x", 0) == (0, "over_budget")
    # Bytes on what is held cost nothing more, and are taken.
    assert a.add(1_500, bytes(100), 0) == (0, "queued")
    # In-order bytes are not out of order: they fill the hole and move the run to readable.
    nxt, what = a.add(0, bytes(1_000), 0)
    assert (nxt, what) == (3_000, "filled")
    assert budget.ooo == 1_000 + RUN_OVERHEAD and budget.used == 4_000 + RUN_OVERHEAD
    assert budget.used == held([a, b])
    # The window of a buffer with a run includes the run (it is paid for already).
    assert b.free == 50_000


def test_budget_matches_what_is_held_under_random_segments() -> None:
    """Whatever the peers send (overlaps, repeats, holes, in order), the budget's count is
    the bytes the buffers hold, and closing or dropping a buffer gives them back."""
    rng = random.Random(7)
    budget = ReceiveBudget(40_000, ooo_limit=10_000)
    buffers = [ReceiveBuffer(16_000, max_runs=8, budget=budget) for _ in range(4)]
    nxt = [0] * 4
    for _ in range(5_000):
        i = rng.randrange(4)
        buf = buffers[i]
        op = rng.random()
        if op < 0.1:
            buf.take(rng.randrange(1, 4_000))
        elif op < 0.12:
            buf.drop_out_of_order()
        else:
            offset = 0 if op < 0.4 else rng.randrange(0, 6_000)
            room = buf.free - offset
            if room > 0:
                size = min(rng.randrange(1, 1_500), room)
                nxt[i], _ = buf.add(nxt[i] + offset, bytes(size), nxt[i])
        assert budget.used == held(buffers) <= budget.limit + 16_000
        runs = sum(len(b.runs) for b in buffers)
        ooo = sum(b.out_of_order for b in buffers)
        assert budget.ooo == ooo + RUN_OVERHEAD * runs <= budget.ooo_limit
    buffers[0].clear()
    del buffers[1]  # a connection dropped with bytes unread
    assert budget.used == held(buffers)
    for b in buffers:
        b.clear()
    assert budget.used == budget.ooo == 0


def test_tiny_out_of_order_segments_cost_their_share_in_real_memory() -> None:
    """Each run is charged what Python spends to hold it, not only its bytes: 2,000
    connections of 64 one-byte runs each (a peer sending every other byte) held 14.9 MiB
    of objects for 125 KiB of payload, all within a 4 MiB out-of-order share."""
    budget = ReceiveBudget(16 << 20, ooo_limit=1 << 20)
    tracemalloc.start()
    try:
        buffers = [ReceiveBuffer(256 * 1024, budget=budget) for _ in range(500)]
        before = tracemalloc.get_traced_memory()[0]
        outcomes = [b.add(i * 2, b"x", 0)[1] for b in buffers for i in range(1, 64)]
        held_memory = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert "over_budget" in outcomes
    assert budget.ooo <= budget.ooo_limit
    assert held_memory < 1.25 * budget.ooo_limit
    # The share spent, in-order bytes still go through (they are not out of order).
    assert buffers[-1].add(0, b"y", 0) == (1, "in_order")


SENDERS = 12
EACH = 64 * 1024


class Stalled:
    """Twelve connections into b, each sent 64 KiB, none read: with a 256 KiB budget the
    windows close once it is spent, and what the peers sent waits with them."""

    def __init__(self) -> None:
        self.config = TCPConfig(receive_buffer=EACH, receive_memory=256 * 1024)
        self.path = path = IPPath(3, config_b=self.config)
        listener = path.b.listen(80)
        self.clients = clients = [path.a.connect(IP_B, 80) for _ in range(SENDERS)]
        self.servers: list[Connection] = []
        self.payloads = [random.Random(i).randbytes(EACH) for i in range(SENDERS)]
        sent = [0] * SENDERS

        def send() -> None:
            while (conn := listener.accept()) is not None:
                self.servers.append(conn)
            for i, client in enumerate(clients):
                if client.state == "ESTABLISHED" and sent[i] < EACH:
                    sent[i] += path.a.send(client, self.payloads[i][sent[i] :])

        def stalled() -> bool:
            """Every sender has all its bytes out; those not delivered wait on a shut window."""
            return sent == [EACH] * SENDERS and all(
                c.snd_una == c.snd_max or c.snd_wnd == 0 for c in clients
            )

        path.run(lambda: len(self.servers) == SENDERS and stalled(), 120.0, send)
        self.fullest = max(self.servers, key=lambda s: len(s.rcvbuf.readable))
        others = [c for c in clients if c.local_port != self.fullest.remote_port]
        self.waiting = [c for c in others if c.snd_wnd == 0 and c.snd_una != c.snd_max]

    def reopened_at_once(self) -> bool:
        """Whether a window the budget shut opens within 50 ms (a zero-window probe is a
        second or more away, minutes after a long stall)."""
        try:
            self.path.run(
                lambda: any(c.snd_wnd > 0 for c in self.waiting), self.path.clock.now + 0.05
            )
        except AssertionError:
            return False
        return True


def test_unread_connections_hold_the_budget_not_a_buffer_each_then_all_arrives() -> None:
    """Twelve 64 KiB buffers would be 768 KiB: the connections hold the 256 KiB budget. Once
    the app reads one, the windows the budget shut reopen at once; once it reads all, every
    byte arrives."""
    stall = Stalled()
    path, config, servers, clients = stall.path, stall.config, stall.servers, stall.clients
    budget = path.b.receive_budget
    buffers = [s.rcvbuf for s in servers]
    assert budget.used == held(buffers)
    assert budget.used <= config.receive_memory + config.receive_buffer
    assert budget.used < SENDERS * EACH
    assert sum(c.snd_wnd == 0 for c in clients) >= SENDERS - 256 // 64
    assert path.b.counters["tcp__receive_memory__trim"] + path.a.counters["tcp__window_probe"]
    assert stall.waiting

    first_read = drain(path.b, stall.fullest)[0]
    assert stall.reopened_at_once()

    got = [bytearray(first_read if s is stall.fullest else b"") for s in servers]

    def read() -> None:
        for i, conn in enumerate(servers):
            got[i] += drain(path.b, conn)[0]

    path.run(lambda: all(len(g) == EACH for g in got), 600.0, read)
    by_port = {s.remote_port: bytes(g) for s, g in zip(servers, got, strict=True)}
    assert [by_port[c.local_port] for c in clients] == stall.payloads
    assert budget.used == 0


def test_an_aborted_connection_gives_its_bytes_back_and_reopens_the_shut_windows() -> None:
    stall = Stalled()
    budget = stall.path.b.receive_budget
    before = budget.used
    held_by_fullest = len(stall.fullest.rcvbuf.readable)
    stall.path.b.abort(stall.fullest)  # the app's abort: nobody will read those bytes
    assert budget.used == before - held_by_fullest
    assert stall.reopened_at_once()
