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

All the receive buffers of one TCP layer also draw on one ReceiveBudget, so the total stays
bounded however many connections there are (each alone is bounded by its capacity, but 400
connections whose app never reads held 100 MB): a buffer's free space (its window) is at most
what the budget has left, and out-of-order bytes, which nobody can read until a hole fills,
may take only `ooo_limit` of it (so they cannot shut every window), each run charged
RUN_OVERHEAD more (2,000 connections of 64 one-byte runs each held 14.9 MiB of objects for
125 KiB of payload). Out-of-order data was never acknowledged (no SACK), so dropping it when
the budget is short is allowed; the sender sends it again. A buffer's window counts its own
out-of-order bytes as paid for, so filling its hole can take the total past `limit` by at
most that buffer's capacity.

The send buffers draw on a SendBudget the same way: past a floor each may always hold, a
buffer takes only what the budget has left, so peers that read nothing (a slow-reader attack)
hold the budget plus a floor each, not a full buffer each.
"""

from __future__ import annotations

from summon.net.tcp.seq import MASK, seq_le

# What a send buffer may hold whatever the budget has left: a small response goes out whole.
SEND_FLOOR = 16 * 1024


class SendBudget:
    """The bytes all send buffers of one TCP layer hold, against `limit`. A buffer may hold
    `floor` bytes whatever the others hold (Linux's tcp_wmem[0]): a connection always makes
    progress, however many slow readers keep the rest."""

    __slots__ = ("floor", "limit", "used")

    def __init__(self, limit: int, floor: int = 0) -> None:
        self.limit = limit
        self.floor = floor
        self.used = 0


class SendBuffer:
    """Bytes the app wrote and the peer has not acknowledged; byte 0 has sequence `start`.

    It takes at most `capacity`, and past the budget's floor only what the budget has left:
    400 connections to peers that read nothing held a full buffer each (100 MB, a 128 MB
    guest's whole memory) before the budget."""

    __slots__ = ("budget", "capacity", "data", "start")

    def __init__(self, capacity: int, start: int, budget: SendBudget | None = None) -> None:
        self.capacity = capacity
        self.data = bytearray()
        self.start = start
        # Alone, a buffer's budget never binds.
        self.budget = budget if budget is not None else SendBudget(capacity, capacity)

    @property
    def space(self) -> int:
        held = len(self.data)
        budget = self.budget
        shared = max(budget.limit - budget.used, budget.floor - held)
        return max(0, min(self.capacity - held, shared))

    @property
    def budget_bound(self) -> bool:
        """Whether the budget, not the buffer's own capacity, keeps it from taking more."""
        return self.space == 0 and len(self.data) < self.capacity

    def release(self) -> None:
        """The connection is gone: its bytes go back to the budget."""
        self.budget.used -= len(self.data)
        self.data = bytearray()

    @property
    def end(self) -> int:
        """Sequence number one past the last byte queued."""
        return (self.start + len(self.data)) & MASK

    def write(self, data: bytes) -> int:
        """Queue what fits of data; returns how many bytes were taken."""
        n = min(len(data), self.space)
        if n:
            self.data += data[:n]
            self.budget.used += n
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
            self.budget.used -= n
        return n


# What a run costs beyond its bytes: the _Run object, its bytearray's header, its list slot
# (tracemalloc: ~124 bytes for a one-byte run).
RUN_OVERHEAD = 128


class ReceiveBudget:
    """The bytes all receive buffers of one TCP layer hold, against `limit`; `ooo` of them
    out of order (with RUN_OVERHEAD per run), against `ooo_limit`."""

    __slots__ = ("limit", "ooo", "ooo_limit", "used")

    def __init__(self, limit: int, ooo_limit: int | None = None) -> None:
        self.limit = limit
        self.ooo_limit = limit if ooo_limit is None else ooo_limit
        self.used = 0
        self.ooo = 0


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

    __slots__ = ("budget", "capacity", "max_runs", "out_of_order", "readable", "runs")

    def __init__(
        self, capacity: int, max_runs: int = 64, budget: ReceiveBudget | None = None
    ) -> None:
        self.capacity = capacity
        self.max_runs = max_runs
        # Alone, a buffer holds at most `capacity` in max_runs runs: a budget of its own
        # never binds.
        if budget is None:
            budget = ReceiveBudget(capacity + max_runs * RUN_OVERHEAD)
        self.budget = budget
        self.readable = bytearray()
        self.runs: list[_Run] = []  # sorted, disjoint, not touching
        self.out_of_order = 0  # bytes in runs

    def __del__(self) -> None:
        # A connection dropped with bytes unread gives them back to the budget.
        self.clear()

    @property
    def free(self) -> int:
        """Receive window: what the peer may still send beyond RCV.NXT; the budget's share
        when it has less left (its out-of-order bytes in the window are paid for already)."""
        local = self.capacity - len(self.readable)
        budget = self.budget
        shared = budget.limit - budget.used + self.out_of_order
        if local <= shared:
            return local
        return shared if shared > 0 else 0

    def take(self, n: int) -> bytes:
        """Read up to n in-order bytes (this is what opens the window again)."""
        with memoryview(self.readable) as view:
            out = bytes(view[:n])
        del self.readable[:n]
        self.budget.used -= len(out)
        return out

    def drop_out_of_order(self) -> None:
        """Forget the runs (the connection is closed: no hole will fill)."""
        if self.runs:
            cost = self.out_of_order + RUN_OVERHEAD * len(self.runs)
            self.runs = []
            self.budget.used -= cost
            self.budget.ooo -= cost
            self.out_of_order = 0

    def clear(self) -> None:
        """Forget everything held (an aborted connection: nobody will read it)."""
        self.drop_out_of_order()
        if self.readable:
            self.budget.used -= len(self.readable)
            self.readable = bytearray()

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> tuple[int, str]:
        """Take a segment's data, already trimmed to [rcv_nxt, rcv_nxt + free).

        Returns (new RCV.NXT, what happened): "in_order", "filled" (a queued run joined too),
        "queued" (kept out of order), "dropped" (too many runs already) or "over_budget"
        (out of order, and the budget's out-of-order share is spent).
        """
        if seq == rcv_nxt:
            self.readable += data
            budget = self.budget
            budget.used += len(data)
            rcv_nxt = (rcv_nxt + len(data)) & MASK
            if not self.runs:
                return rcv_nxt, "in_order"
            filled = False
            while self.runs and seq_le(self.runs[0].seq, rcv_nxt):
                run = self.runs.pop(0)
                size = len(run)
                self.out_of_order -= size
                budget.ooo -= size + RUN_OVERHEAD
                skip = (rcv_nxt - run.seq) & MASK
                if skip < size:
                    with memoryview(run.buf) as view:
                        self.readable += view[run.head + skip :]
                    rcv_nxt = (rcv_nxt + size - skip) & MASK
                # The run's overhead, and its bytes the segment brought again, are gone.
                budget.used -= min(skip, size) + RUN_OVERHEAD
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
            if not self._charge(len(data), RUN_OVERHEAD):
                return "over_budget"
            runs.insert(at, _Run(seq, data))
            return "queued"
        base = runs[first]
        end = ((base.seq - rcv_nxt) & MASK) + len(base)
        joined = [base]
        held = len(base)
        if last > first:  # it bridges holes: the runs it joins go into the largest of them
            joined = runs[first : last + 1]
            base = max(joined, key=len)
            end = ((joined[-1].seq - rcv_nxt) & MASK) + len(joined[-1])
            held = sum(len(run) for run in joined)
        start = min(lo, (joined[0].seq - rcv_nxt) & MASK)
        end = max(hi, end)
        if end - start > held and not self._charge(end - start - held, 0):
            return "over_budget"
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
            merged = RUN_OVERHEAD * (len(joined) - 1)  # runs that are one now
            budget = self.budget
            budget.used -= merged
            budget.ooo -= merged
        return "queued"

    def _charge(self, n: int, overhead: int) -> bool:
        """Take n more out-of-order bytes (and a new run's overhead) from the budget, if its
        share has them."""
        budget = self.budget
        cost = n + overhead
        if budget.ooo + cost > budget.ooo_limit or budget.used + cost > budget.limit:
            return False
        budget.ooo += cost
        budget.used += cost
        self.out_of_order += n
        return True
