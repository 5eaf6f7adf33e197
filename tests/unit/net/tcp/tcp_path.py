"""A fake IP path between two TCP layers, on virtual time, with seeded faults.

Like h11's ConnectionPair: both endpoints live in one process, segments travel through a
priority queue keyed by delivery time, and a seeded RNG decides loss, duplication, reordering
(extra delay) and corruption (one byte changed, which the TCP checksum must catch).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from summon.net.tcp import (
    TCP,
    Connection,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    Event,
    TCPConfig,
)

IP_A = bytes((192, 0, 2, 1))  # TEST-NET-1 (RFC 5737): never routed; only ever in memory here
IP_B = bytes((192, 0, 2, 2))


class VirtualClock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class IPPath:
    """Endpoints `a` (IP_A) and `b` (IP_B) and the path between them."""

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.005,
        jitter: float = 0.0,
        config_a: TCPConfig | None = None,
        config_b: TCPConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.corrupt = corrupt
        self.delay = delay
        self.jitter = jitter
        self.clock = VirtualClock()
        self.a = TCP(
            IP_A,
            self._sender(IP_A),
            config=config_a,
            clock=self.clock,
            random_bytes=self.rng.randbytes,
        )
        self.b = TCP(
            IP_B,
            self._sender(IP_B),
            config=config_b,
            clock=self.clock,
            random_bytes=self.rng.randbytes,
        )
        self._by_ip = {IP_A: self.a, IP_B: self.b}
        self._queue: list[tuple[float, int, bytes, bytes, bytes, bool]] = []
        self._n = 0
        self.sent = self.lost = self.duplicated = self.reordered = self.corrupted = 0
        self.delivered = 0
        self.corrupted_delivered = 0  # every one of these must be dropped by the checksum
        self.blackholed = 0  # sent to an address no endpoint has (replies to spoofed SYNs)
        self.log: list[tuple[float, bytes, bytes]] | None = None  # set to [] to record

    def _sender(self, src: bytes) -> Callable[[int, bytes, bytes], None]:
        def send_ip(proto: int, dst: bytes, payload: bytes) -> None:
            assert proto == 6
            self._enqueue(src, dst, payload)

        return send_ip

    def _enqueue(self, src: bytes, dst: bytes, payload: bytes) -> None:
        rng = self.rng
        self.sent += 1
        if self.log is not None:
            self.log.append((self.clock.now, src, payload))
        if rng.random() < self.loss:
            self.lost += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            self.duplicated += 1
            copies = 2
        for _ in range(copies):
            delay = self.delay + rng.random() * self.jitter
            if rng.random() < self.reorder:
                self.reordered += 1
                delay += self.delay * (1 + 3 * rng.random())
            data = payload
            spoiled = rng.random() < self.corrupt
            if spoiled:  # one byte changed: always caught by the Internet checksum
                self.corrupted += 1
                i = rng.randrange(len(data))
                data = data[:i] + bytes((data[i] ^ rng.randrange(1, 256),)) + data[i + 1 :]
            self._n += 1
            heapq.heappush(self._queue, (self.clock.now + delay, self._n, src, dst, data, spoiled))

    def next_time(self) -> float | None:
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next delivery or timer and handle it; False when nothing is left."""
        when = self.next_time()
        if when is None:
            return False
        self.clock.now = max(self.clock.now, when)
        now = self.clock.now
        while self._queue and self._queue[0][0] <= now:
            _, _, src, dst, data, spoiled = heapq.heappop(self._queue)
            endpoint = self._by_ip.get(dst)
            if endpoint is None:
                self.blackholed += 1
                continue
            self.delivered += 1
            self.corrupted_delivered += spoiled
            endpoint.receive(src, dst, data, now)
        self.a.timers(now)
        self.b.timers(now)
        return True

    def run(
        self, until: Callable[[], bool], max_time: float, pump: Callable[[], None] = lambda: None
    ) -> None:
        """Step until `until()` holds; `pump` plays the apps between steps."""
        pump()
        while not until():
            if self.clock.now > max_time:
                raise AssertionError(f"not done after {max_time} s of virtual time")
            if not self.step():
                raise AssertionError("nothing left to do, and not done")
            pump()

    def handshake(self, port: int = 8080) -> tuple[Connection, Connection]:
        """A connected pair: (client on a, server on b)."""
        listener = self.b.listen(port)
        client = self.a.connect(IP_B, port)
        accepted: list[Connection] = []

        def pump() -> None:
            conn = listener.accept()
            if conn is not None:
                accepted.append(conn)

        self.run(lambda: bool(accepted) and client.state == "ESTABLISHED", 600.0, pump)
        return client, accepted[0]


def drain(tcp: TCP, conn: Connection, max_bytes: int = 65536) -> tuple[bytes, list[Event]]:
    """Every event conn (of layer tcp) has now: the data joined, and the other events in order."""
    data = bytearray()
    others: list[Event] = []
    while (event := tcp.next_event(conn, max_bytes)) is not None:
        if isinstance(event, DataReceived):
            data += event.data
        else:
            others.append(event)
    return bytes(data), others


class BulkApp:
    """An app on one connection: writes `outgoing` as fast as the send buffer takes it, then
    closes; reads everything; done once it saw EndOfStream and ConnectionClosed."""

    def __init__(self, tcp: TCP, conn: Connection, outgoing: bytes = b"") -> None:
        self.tcp = tcp
        self.conn = conn
        self.outgoing = outgoing
        self.offset = 0
        self.closed_sending = False
        self.received = bytearray()
        self.eof = False
        self.closed: str | None = None

    def pump(self) -> None:
        conn, tcp = self.conn, self.tcp
        while self.offset < len(self.outgoing) and conn.send_space:
            self.offset += tcp.send(conn, self.outgoing[self.offset : self.offset + 65536])
        if self.offset == len(self.outgoing) and not self.closed_sending:
            self.closed_sending = True
            tcp.close(conn)
        data, events = drain(tcp, conn)
        self.received += data
        for event in events:
            if isinstance(event, EndOfStream):
                self.eof = True
            elif isinstance(event, ConnectionClosed):
                self.closed = event.reason

    @property
    def done(self) -> bool:
        return self.eof and self.closed is not None


def exchange(
    path: IPPath, client: Connection, server: Connection, up: bytes, down: bytes, max_time: float
) -> tuple[BulkApp, BulkApp]:
    """client (on path.a) sends `up` while server (on path.b) sends `down`; both close; runs
    until both are done."""
    apps = BulkApp(path.a, client, up), BulkApp(path.b, server, down)

    def pump() -> None:
        for app in apps:
            app.pump()

    path.run(lambda: all(app.done for app in apps), max_time, pump)
    return apps
