"""The bounded send and receive buffers, with reassembly of out-of-order segments.

Both buffers are sized once; the receive window a connection advertises is the receive buffer's
free space, so a peer can never make us hold more than `capacity` bytes of its data, in order or
not. Out-of-order data is kept as coalesced runs, at most `max_runs` of them (each run is one hole
more to track; bounding them bounds the bookkeeping, not just the bytes).
"""

from __future__ import annotations

from summon.net.tcp.seq import MASK, seq_le


class SendBuffer:
    """Bytes the app wrote and the peer has not acknowledged; byte 0 has sequence `start`."""

    __slots__ = ("capacity", "data", "start")

    def __init__(self, capacity: int, start: int) -> None:
        self.capacity = capacity
        self.data = bytearray()
        self.start = start

    @property
    def space(self) -> int:
        return self.capacity - len(self.data)

    @property
    def end(self) -> int:
        """Sequence number one past the last byte queued."""
        return (self.start + len(self.data)) & MASK

    def write(self, data: bytes) -> int:
        """Queue what fits of data; returns how many bytes were taken."""
        n = min(len(data), self.capacity - len(self.data))
        if n:
            self.data += data[:n]
        return n

    def read(self, seq: int, n: int) -> bytes:
        """Up to n queued bytes from sequence number seq on."""
        offset = (seq - self.start) & MASK
        with memoryview(self.data) as view:  # one copy, not a bytearray slice and then bytes
            return bytes(view[offset : offset + n])

    def acknowledge(self, ack: int) -> int:
        """Drop the bytes before ack (which lies in [start, end]); returns how many."""
        n = min((ack - self.start) & MASK, len(self.data))
        if n:
            del self.data[:n]
            self.start = (self.start + n) & MASK
        return n


class ReceiveBuffer:
    """In-order bytes the app has not read yet, plus out-of-order runs waiting for the gap."""

    __slots__ = ("capacity", "max_runs", "readable", "runs")

    def __init__(self, capacity: int, max_runs: int = 64) -> None:
        self.capacity = capacity
        self.max_runs = max_runs
        self.readable = bytearray()
        self.runs: list[tuple[int, bytearray]] = []  # (seq, bytes), sorted, disjoint, not touching

    @property
    def free(self) -> int:
        """Receive window: what the peer may still send beyond RCV.NXT."""
        return self.capacity - len(self.readable)

    @property
    def out_of_order(self) -> int:
        return sum(len(run) for _, run in self.runs)

    def take(self, n: int) -> bytes:
        """Read up to n in-order bytes (this is what opens the window again)."""
        with memoryview(self.readable) as view:
            out = bytes(view[:n])
        del self.readable[:n]
        return out

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> tuple[int, str]:
        """Take a segment's data, already trimmed to [rcv_nxt, rcv_nxt + free).

        Returns (new RCV.NXT, what happened): "in_order", "filled" (a queued run joined too),
        "queued" (kept out of order), or "dropped" (too many runs already).
        """
        if seq == rcv_nxt:
            self.readable += data
            rcv_nxt = (rcv_nxt + len(data)) & MASK
            if not self.runs:
                return rcv_nxt, "in_order"
            filled = False
            while self.runs and seq_le(self.runs[0][0], rcv_nxt):
                start, run = self.runs.pop(0)
                skip = (rcv_nxt - start) & MASK
                if skip < len(run):
                    self.readable += run[skip:]
                    rcv_nxt = (rcv_nxt + len(run) - skip) & MASK
                filled = True
            return rcv_nxt, "filled" if filled else "in_order"
        return rcv_nxt, self._queue(seq, data, rcv_nxt)

    def _queue(self, seq: int, data: bytes, rcv_nxt: int) -> str:
        # Offsets from rcv_nxt make the modular numbers plain integers for the merge.
        lo = (seq - rcv_nxt) & MASK
        hi = lo + len(data)
        merged = bytearray(data)
        kept: list[tuple[int, bytearray]] = []
        at = 0  # where the merged run goes in `kept`
        for start, run in self.runs:
            s = (start - rcv_nxt) & MASK
            e = s + len(run)
            if e < lo:
                kept.append((start, run))
                at = len(kept)
            elif s > hi:
                kept.append((start, run))
            else:  # overlapping or touching: one run covering both
                new_lo, new_hi = min(s, lo), max(e, hi)
                joined = bytearray(new_hi - new_lo)
                joined[s - new_lo : e - new_lo] = run
                joined[lo - new_lo : hi - new_lo] = merged
                lo, hi, merged = new_lo, new_hi, joined
        if len(kept) + 1 > self.max_runs and len(kept) + 1 > len(self.runs):
            return "dropped"
        kept.insert(at, ((rcv_nxt + lo) & MASK, merged))
        self.runs = kept
        return "queued"
