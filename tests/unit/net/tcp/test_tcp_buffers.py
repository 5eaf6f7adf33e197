"""The bounded send buffer and the reassembling receive buffer."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.tcp.buffers import ReceiveBuffer, SendBuffer

START = 0xFFFFFF00


def test_send_buffer_is_bounded_and_acknowledged_from_the_front() -> None:
    buf = SendBuffer(10, START)
    assert buf.write(b"abcdefghijkl") == 10
    assert buf.write(b"x") == 0 and buf.space == 0
    assert buf.read((START + 2) & 0xFFFFFFFF, 3) == b"cde"
    assert buf.acknowledge((START + 4) & 0xFFFFFFFF) == 4
    assert buf.start == (START + 4) & 0xFFFFFFFF and buf.space == 4
    assert buf.end == (START + 10) & 0xFFFFFFFF


def test_out_of_order_runs_are_merged_and_delivered_when_the_hole_fills() -> None:
    rb = ReceiveBuffer(100)
    nxt = START
    nxt, what = rb.add((START + 10) & 0xFFFFFFFF, b"K" * 10, nxt)
    assert what == "queued" and rb.readable == b"" and len(rb.runs) == 1
    nxt, what = rb.add((START + 20) & 0xFFFFFFFF, b"U" * 5, nxt)  # touching: merged
    assert what == "queued" and len(rb.runs) == 1 and rb.out_of_order == 15
    nxt, what = rb.add(START, b"A" * 10, nxt)
    assert what == "filled" and nxt == (START + 25) & 0xFFFFFFFF
    assert rb.take(100) == b"A" * 10 + b"K" * 10 + b"U" * 5 and rb.runs == []


def test_too_many_holes_drops_the_newcomer() -> None:
    rb = ReceiveBuffer(1000, max_runs=2)
    nxt = 0
    assert rb.add(10, b"a", nxt)[1] == "queued"
    assert rb.add(20, b"b", nxt)[1] == "queued"
    assert rb.add(30, b"c", nxt)[1] == "dropped"
    assert rb.add(11, b"x", nxt)[1] == "queued"  # joins a run: no new hole, so taken
    assert len(rb.runs) == 2


@given(
    data=st.binary(min_size=1, max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=30),
    order=st.randoms(use_true_random=False),
    duplicates=st.integers(0, 5),
)
def test_any_arrival_order_reassembles_the_stream(
    data: bytes, cuts: list[int], order: object, duplicates: int
) -> None:
    import random

    assert isinstance(order, random.Random)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [(bounds[i], data[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    pieces += [order.choice(pieces) for _ in range(duplicates)]
    order.shuffle(pieces)
    rb = ReceiveBuffer(len(data), max_runs=64)
    nxt = START
    for offset, piece in pieces:
        seq = (START + offset) & 0xFFFFFFFF
        # what a connection does first: trim to [rcv_nxt, rcv_nxt + free)
        skip = (nxt - seq) & 0xFFFFFFFF
        if skip < 0x80000000:
            if skip >= len(piece):
                continue
            piece, seq = piece[skip:], nxt
        nxt, _ = rb.add(seq, piece, nxt)
    assert bytes(rb.readable) == data and rb.runs == []


def _deliver(rb: ReceiveBuffer, nxt: int, offset: int, piece: bytes) -> int:
    """What a connection does with a segment: trim it to [rcv_nxt, rcv_nxt + free), add it."""
    seq = (START + offset) & 0xFFFFFFFF
    skip = (nxt - seq) & 0xFFFFFFFF
    if skip < 0x80000000:
        if skip >= len(piece):
            return nxt
        piece, seq = piece[skip:], nxt
    room = rb.free - ((seq - nxt) & 0xFFFFFFFF)
    piece = piece[: max(room, 0)]
    if not piece:
        return nxt
    nxt, _ = rb.add(seq, piece, nxt)
    return nxt


@pytest.mark.parametrize("seed", range(40))
def test_random_overlapping_segments_reassemble_byte_exact(seed: int) -> None:
    """Segments of any length at any offset, overlapping queued runs front, back, inside and
    across several at once, in any order and repeated: the stream comes out byte-exact."""
    rng = random.Random(seed)
    data = rng.randbytes(rng.choice([50, 700, 5000, 40000]))
    rb = ReceiveBuffer(len(data), max_runs=rng.choice([4, 64]))
    nxt = START
    taken = bytearray()
    for _ in range(4000):
        if len(taken) + len(rb.readable) == len(data):
            break
        offset = rng.randrange(len(data))
        length = rng.choice([1, 2, 3, 17, 536, 1460, rng.randrange(1, len(data) + 1)])
        nxt = _deliver(rb, nxt, offset, data[offset : offset + length])
        if rng.random() < 0.05:  # the app reads now and then, which moves the window on
            taken += rb.take(rng.randrange(1, 3000))
        assert len(rb.runs) <= rb.max_runs and rb.out_of_order + len(rb.readable) <= len(data)
    nxt = _deliver(rb, nxt, 0, data)  # the retransmission that fills whatever is left
    taken += rb.take(len(data))
    assert bytes(taken) == data and rb.runs == [] and nxt == (START + len(data)) & 0xFFFFFFFF


def _overlapping_segments(run: int, count: int) -> float:
    """Seconds to take `count` one-byte segments landing on, inside and just before a queued
    run of `run` bytes (each grows it backwards or repeats a byte of it)."""
    rb = ReceiveBuffer(run + 2 * count + 10)
    gap = count + 5
    rb.add((START + gap) & 0xFFFFFFFF, bytes(run), START)
    began = time.perf_counter()
    for i in range(count):
        front = (START + gap - 1 - i) & 0xFFFFFFFF
        assert rb.add(front, b"f", START)[1] == "queued"
        inside = (START + gap + i * 7 % run) & 0xFFFFFFFF
        assert rb.add(inside, b"x", START)[1] == "queued"
    elapsed = time.perf_counter() - began
    assert len(rb.runs) == 1 and rb.out_of_order == run + count
    return elapsed


def test_a_segment_on_a_queued_run_costs_its_own_length_not_the_runs() -> None:
    """A peer sending small segments onto a big out-of-order run must cost no more per
    segment than onto a small one: before, each such segment copied the whole run (with the
    default 256 KiB buffer, some 15 us of copying per byte sent; 4 MiB makes it plain)."""
    _overlapping_segments(1024, 200)  # warm up
    small = min(_overlapping_segments(1024, 1000) for _ in range(3))
    big = min(_overlapping_segments(4 << 20, 1000) for _ in range(3))
    assert big < small * 3 + 0.01, (small, big)
