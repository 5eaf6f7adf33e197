"""The bounded send and receive buffers, with reassembly of out-of-order segments.

Both buffers are sized once; the receive window a connection advertises is the receive buffer's
free space, so a peer can never make us hold more than `capacity` bytes of its data, in order or
not. Out-of-order data is kept as coalesced runs, at most `max_runs` of them (each run is one hole
more to track; bounding them bounds the bookkeeping, not just the bytes).

A segment that lands on queued runs costs its own length, not theirs: it is written into the
largest run it touches, in place (a run keeps room before its first byte to grow backwards into,
at most as much as it holds), and only the smaller runs it joins are copied into that one. So a
byte is copied O(log capacity) times at most however the peer cuts, repeats or reorders its
segments, and the memory a run takes is at most twice the bytes it holds.
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


class _Run:
    """Out-of-order bytes from sequence number `seq` on: `buf[head:]`; `buf[:head]` is room
    for bytes that come before them."""

    __slots__ = ("buf", "head", "seq")

    def __init__(self, seq: int, data: bytes) -> None:
        self.seq = seq
        self.buf = bytearray(data)
        self.head = 0

    def __len__(self) -> int:
        return len(self.buf) - self.head

    def grow_front(self, n: int, limit: int) -> None:
        """Make the run start n bytes earlier (those bytes to be written by the caller), with
        at most `limit` bytes of room before it in all (it never reaches back past RCV.NXT)."""
        if n > self.head:
            size = len(self)
            room = min(limit, max(n, size))
            grown = bytearray(room + size)
            with memoryview(self.buf) as view:
                grown[room:] = view[self.head :]
            self.buf, self.head = grown, room
        self.head -= n
        self.seq = (self.seq - n) & MASK


class ReceiveBuffer:
    """In-order bytes the app has not read yet, plus out-of-order runs waiting for the gap."""

    __slots__ = ("capacity", "max_runs", "readable", "runs")

    def __init__(self, capacity: int, max_runs: int = 64) -> None:
        self.capacity = capacity
        self.max_runs = max_runs
        self.readable = bytearray()
        self.runs: list[_Run] = []  # sorted, disjoint, not touching

    @property
    def free(self) -> int:
        """Receive window: what the peer may still send beyond RCV.NXT."""
        return self.capacity - len(self.readable)

    @property
    def out_of_order(self) -> int:
        return sum(len(run) for run in self.runs)

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
            while self.runs and seq_le(self.runs[0].seq, rcv_nxt):
                run = self.runs.pop(0)
                skip = (rcv_nxt - run.seq) & MASK
                if skip < len(run):
                    with memoryview(run.buf) as view:
                        self.readable += view[run.head + skip :]
                    rcv_nxt = (rcv_nxt + len(run) - skip) & MASK
                filled = True
            return rcv_nxt, "filled" if filled else "in_order"
        return rcv_nxt, self._queue(seq, data, rcv_nxt)

    def _queue(self, seq: int, data: bytes, rcv_nxt: int) -> str:
        # Offsets from rcv_nxt make the modular numbers plain integers for the merge.
        lo = (seq - rcv_nxt) & MASK
        hi = lo + len(data)
        runs = self.runs
        first = last = -1  # the runs the segment overlaps or touches: runs[first:last+1]
        at = len(runs)  # where a run of its own would go
        for i, run in enumerate(runs):
            s = (run.seq - rcv_nxt) & MASK
            if s + len(run) < lo:
                continue
            if s > hi:
                at = i
                break
            if first < 0:
                first = i
            last = i
        if first < 0:
            if len(runs) + 1 > self.max_runs:
                return "dropped"
            runs.insert(at, _Run(seq, data))
            return "queued"
        base = runs[first]
        end = ((base.seq - rcv_nxt) & MASK) + len(base)
        joined = [base]
        if last > first:  # it bridges holes: the runs it joins go into the largest of them
            joined = runs[first : last + 1]
            base = max(joined, key=len)
            end = ((joined[-1].seq - rcv_nxt) & MASK) + len(joined[-1])
        start = min(lo, (joined[0].seq - rcv_nxt) & MASK)
        end = max(hi, end)
        base_start = (base.seq - rcv_nxt) & MASK
        if start < base_start:
            base.grow_front(base_start - start, base_start)
        grow = end - start - len(base)
        if grow:
            base.buf += bytes(grow)
        buf, head = base.buf, base.head
        for run in joined:
            if run is not base:
                pos = head + ((run.seq - rcv_nxt) & MASK) - start
                with memoryview(run.buf) as view:
                    buf[pos : pos + len(run)] = view[run.head :]
        # The segment last: where it overlaps what was queued, its bytes are kept.
        buf[head + lo - start : head + hi - start] = data
        if last > first:
            runs[first : last + 1] = [base]
        return "queued"
