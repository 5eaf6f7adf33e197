"""An in-memory pair of links with seeded faults on virtual time: the test wire.

Each direction has its own random.Random seeded from (seed, direction), so a run replays
exactly from its seed whatever the other direction did. Frames travel on a VirtualClock
the test advances: a frame sent at t arrives at t + latency (+ delay_time if delayed).
"""

from __future__ import annotations

import heapq
import random

from summon.net.counters import Counters
from summon.net.links import Link


class VirtualClock:
    """The time both ends of a memory link share; only the test moves it."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Faults:
    """Per-frame fault probabilities (each 0..1) and the times they use.

    drop       the frame never arrives
    duplicate  it arrives twice
    reorder    it is held back and arrives right after the next frame sent (or after
               reorder_hold seconds if none follows)
    delay      it arrives delay_time seconds late (later frames overtake it)
    corrupt    one random bit of it is flipped
    latency    seconds every frame takes
    """

    __slots__ = ("corrupt", "delay", "delay_time", "drop", "duplicate", "latency", "reorder",
                 "reorder_hold")  # fmt: skip

    def __init__(
        self,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        delay: float = 0.0,
        corrupt: float = 0.0,
        latency: float = 0.0,
        delay_time: float = 0.05,
        reorder_hold: float = 0.01,
    ) -> None:
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder),
                        ("delay", delay), ("corrupt", corrupt)):  # fmt: skip
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {name}={p} outside 0..1")
        self.drop = drop
        self.duplicate = duplicate
        self.reorder = reorder
        self.delay = delay
        self.corrupt = corrupt
        self.latency = latency
        self.delay_time = delay_time
        self.reorder_hold = reorder_hold


class _Wire:
    """One direction: frames in flight, ordered by (arrival time, send order)."""

    __slots__ = ("_held", "_in_flight", "_seq", "clock", "counters", "faults", "rng")

    def __init__(self, rng: random.Random, faults: Faults, clock: VirtualClock) -> None:
        self.rng = rng
        self.faults = faults
        self.clock = clock
        self.counters = Counters()
        self._in_flight: list[tuple[float, int, bytes]] = []
        self._seq = 0
        # The frame held back for reordering, and when it goes anyway.
        self._held: tuple[float, bytes] | None = None

    def put(self, frame: bytes) -> None:
        faults = self.faults
        rng = self.rng
        counters = self.counters
        counters.inc("link__frame__send")
        # One draw per fault per frame, always in this order, so a seed replays exactly.
        drop, dup, reorder, delay, corrupt = (rng.random() for _ in range(5))
        if drop < faults.drop:
            counters.inc("link__fault__drop")
            return
        if corrupt < faults.corrupt and frame:
            bit = rng.randrange(len(frame) * 8)
            damaged = bytearray(frame)
            damaged[bit >> 3] ^= 1 << (bit & 7)
            frame = bytes(damaged)
            counters.inc("link__fault__corrupt")
        at = self.clock.now + faults.latency
        if delay < faults.delay:
            at += faults.delay_time
            counters.inc("link__fault__delay")
        copies = 2 if dup < faults.duplicate else 1
        if copies == 2:
            counters.inc("link__fault__duplicate")
        held = self._held
        if reorder < faults.reorder and held is None:
            self._held = (self.clock.now + faults.reorder_hold, frame)
            counters.inc("link__fault__reorder")
            copies -= 1
        for _ in range(copies):
            self._push(at, frame)
        if held is not None:
            # The held frame goes right after the one that overtook it.
            self._held = None
            self._push(at, held[1])

    def _push(self, at: float, frame: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._in_flight, (at, self._seq, frame))

    def take(self) -> list[bytes]:
        now = self.clock.now
        if self._held is not None and self._held[0] <= now:
            self._push(self._held[0], self._held[1])
            self._held = None
        frames = []
        while self._in_flight and self._in_flight[0][0] <= now:
            frames.append(heapq.heappop(self._in_flight)[2])
        return frames

    def next_arrival(self) -> float | None:
        times = [self._in_flight[0][0]] if self._in_flight else []
        if self._held is not None:
            times.append(self._held[0])
        return min(times, default=None)


class MemoryLink(Link):
    """One end of a memory link pair."""

    __slots__ = ("_inbound", "_outbound", "closed")

    COUNTERS = (
        "link__frame__send",
        "link__fault__drop",
        "link__fault__corrupt",
        "link__fault__delay",
        "link__fault__duplicate",
        "link__fault__reorder",
    )

    def __init__(self, outbound: _Wire, inbound: _Wire) -> None:
        self._outbound = outbound
        self._inbound = inbound
        self.closed = False

    @property
    def counters(self) -> Counters:
        """What happened to the frames this end sent (link__fault__drop, ...)."""
        return self._outbound.counters

    def count_into(self, counters: Counters) -> None:
        """Kept apart: the faults the wire injected are the test's to read, not the stack's."""

    def send(self, frame: bytes) -> None:
        if not self.closed:
            self._outbound.put(frame)

    def receive(self) -> list[bytes]:
        return [] if self.closed else self._inbound.take()

    def next_arrival(self) -> float | None:
        """When receive() next has a frame, on the virtual clock; None if none in flight."""
        return self._inbound.next_arrival()

    def close(self) -> None:
        self.closed = True


def memory_link_pair(
    seed: int = 0,
    faults: Faults | None = None,
    *,
    clock: VirtualClock | None = None,
    faults_back: Faults | None = None,
) -> tuple[MemoryLink, MemoryLink, VirtualClock]:
    """Two connected ends (a, b) and their clock. `faults` apply a->b, `faults_back` b->a
    (default: the same as faults)."""
    clock = clock if clock is not None else VirtualClock()
    forward = faults if faults is not None else Faults()
    back = faults_back if faults_back is not None else forward
    a_to_b = _Wire(random.Random(f"{seed}:a->b"), forward, clock)
    b_to_a = _Wire(random.Random(f"{seed}:b->a"), back, clock)
    return MemoryLink(a_to_b, b_to_a), MemoryLink(b_to_a, a_to_b), clock
