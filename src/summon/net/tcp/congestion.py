"""Congestion control: RFC 5681 slow start and congestion avoidance, RFC 6582 NewReno recovery.

NewReno is pure arithmetic on byte counts: the connection reports ACKs, duplicate ACKs and
timeouts, and asks `cwnd`. The answers it returns ("retransmit snd_una now") are the only actions.
"""

from __future__ import annotations

from summon.net.tcp.seq import seq_ge, seq_gt


def initial_window(mss: int) -> int:
    """RFC 5681 section 3.1's IW: 4 segments for small MSS, down to 2 for large."""
    if mss > 2190:
        return 2 * mss
    if mss > 1095:
        return 3 * mss
    return 4 * mss


class NewReno:
    """cwnd/ssthresh bookkeeping for one connection's send side."""

    __slots__ = ("acked_bytes", "cwnd", "dupacks", "in_recovery", "mss", "recover", "ssthresh")

    DUPACK_THRESHOLD = 3

    def __init__(self, mss: int, iss: int, initial: int | None = None) -> None:
        self.mss = mss
        self.cwnd = initial if initial is not None else initial_window(mss)
        self.ssthresh = 0x7FFFFFFF  # "arbitrarily high" (RFC 5681 section 3.1)
        self.dupacks = 0
        self.in_recovery = False
        # RFC 6582 section 3.2 step 1: recover starts at the initial send sequence number.
        # Kept one past the highest byte sent, so "ack covers more than recover" is ack > recover.
        self.recover = iss
        self.acked_bytes = 0  # congestion-avoidance byte counter (RFC 5681, eq. 3 note)

    def on_ack(self, acked: int, ack: int, flight: int) -> bool:
        """A new cumulative ACK for `acked` bytes, ending at `ack`; `flight` is what is left.

        Returns True when it is a partial ACK in recovery: retransmit the first unacked segment.
        """
        self.dupacks = 0
        if self.in_recovery:
            if seq_ge(ack, self.recover):
                # Full acknowledgment (RFC 6582 3.2 step 3): deflate, "option (1)" bounded by
                # what is in flight so a burst cannot follow.
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)
                self.acked_bytes = 0
                return False
            # Partial acknowledgment (step 4): deflate by the amount acked, add back one MSS if
            # at least one MSS was acked, and retransmit the next hole.
            self.cwnd = max(self.cwnd - acked, self.mss)
            if acked >= self.mss:
                self.cwnd += self.mss
            return True
        if self.cwnd < self.ssthresh:
            # Slow start, appropriate byte counting with L = 1 SMSS (RFC 5681 eq. 2).
            self.cwnd += min(acked, self.mss)
        else:
            # Congestion avoidance: one SMSS per cwnd of bytes acknowledged.
            self.acked_bytes += acked
            if self.acked_bytes >= self.cwnd:
                self.acked_bytes -= self.cwnd
                self.cwnd += self.mss
        return False

    def on_dup_ack(self, snd_una: int, snd_max: int, flight: int) -> bool:
        """A duplicate ACK (RFC 5681's definition, checked by the caller).

        Returns True on the one that starts fast retransmit: retransmit snd_una now.
        """
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss  # step 3 of RFC 6582 3.2: inflate for the segment that left
            return False
        if self.dupacks != self.DUPACK_THRESHOLD:
            return False
        # RFC 6582 3.2 step 2: only when the duplicate ACKs cover more than recover; else they
        # may be echoes of a recovery that already ended, and retransmitting again is wrong.
        if not seq_gt(snd_una, self.recover):
            return False
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.recover = snd_max
        self.cwnd = self.ssthresh + self.DUPACK_THRESHOLD * self.mss
        self.in_recovery = True
        return True

    def on_timeout(self, flight: int, snd_max: int, first: bool) -> None:
        """The retransmission timer expired (RFC 5681 eq. 4, RFC 6582 section 4)."""
        if first:  # a segment resent by the timer again does not halve ssthresh again
            self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss  # loss window
        self.recover = snd_max
        self.in_recovery = False
        self.dupacks = 0
        self.acked_bytes = 0
