"""The bounded send buffer and the reassembling receive buffer."""

from __future__ import annotations

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
