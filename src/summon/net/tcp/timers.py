"""TCP's clocks: the RFC 6298 retransmission timeout, and a connection's named deadlines.

A connection has four timers (retransmit, delayed ACK, zero-window persist, TIME_WAIT), each a
deadline in the caller's time base (seconds, float) or None. Nothing here reads a clock: times
come in as arguments, so tests run on virtual time.
"""

from __future__ import annotations


class RTOEstimator:
    """RFC 6298's smoothed RTT, RTT variance and retransmission timeout, with backoff.

    Karn's algorithm is the caller's half: it must not feed `sample` an RTT measured on a
    segment that was retransmitted (the ACK could be for either copy). The backed-off RTO is
    kept until a fresh sample arrives (RFC 6298 section 5.7 and Karn).
    """

    __slots__ = ("backoff", "granularity", "max_rto", "min_rto", "rto", "rttvar", "srtt")

    ALPHA = 0.125  # RFC 6298 section 2: 1/8
    BETA = 0.25  # 1/4
    K = 4

    def __init__(
        self,
        initial: float = 1.0,
        min_rto: float = 1.0,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = min(max(initial, min_rto), max_rto)  # (2.1) before any measurement
        self.backoff = 0  # how many times the timer expired since the last fresh sample

    def sample(self, rtt: float) -> None:
        """A round-trip time measured on a segment sent once."""
        if self.srtt is None:  # (2.2) first measurement
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:  # (2.3) RTTVAR first, with the old SRTT
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt
        rto = self.srtt + max(self.granularity, self.K * self.rttvar)
        self.rto = min(max(rto, self.min_rto), self.max_rto)  # (2.4), (2.5)
        self.backoff = 0

    def expired(self) -> None:
        """The retransmission timer went off: double the timeout (5.5), up to the maximum."""
        self.backoff += 1
        self.rto = min(self.rto * 2, self.max_rto)

    def reset_after_syn_loss(self) -> None:
        """RFC 6298 (5.7): a SYN was lost and no sample came, so start data at 3 s."""
        if self.srtt is None:
            self.rto = min(max(3.0, self.min_rto), self.max_rto)
            self.backoff = 0


class Timers:
    """A connection's deadlines by name; `next` is the earliest, `due` those that passed."""

    __slots__ = ("delayed_ack", "persist", "retransmit", "time_wait")

    NAMES = ("retransmit", "persist", "delayed_ack", "time_wait")

    def __init__(self) -> None:
        self.retransmit: float | None = None
        self.persist: float | None = None
        self.delayed_ack: float | None = None
        self.time_wait: float | None = None

    def next(self) -> float | None:
        best: float | None = None
        for deadline in (self.retransmit, self.persist, self.delayed_ack, self.time_wait):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def due(self, now: float) -> list[str]:
        """Names of the timers whose deadline is at or before now, cleared, in NAMES order."""
        fired = []
        for name in self.NAMES:
            deadline = getattr(self, name)
            if deadline is not None and deadline <= now:
                setattr(self, name, None)
                fired.append(name)
        return fired

    def clear(self) -> None:
        self.retransmit = self.persist = self.delayed_ack = self.time_wait = None


def persist_interval(rto: float, probes: int, max_rto: float) -> float:
    """Delay before the next zero-window probe: RTO-based, doubling per probe, capped."""
    return min(rto * (1 << min(probes, 16)), max_rto)
