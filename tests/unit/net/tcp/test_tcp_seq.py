"""Sequence arithmetic: modular comparisons, table-driven, and their algebra under hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.tcp.seq import (
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in,
    seq_le,
    seq_lt,
    seq_max,
)

TOP = 0xFFFFFFFF

# (a, b, a - b as a signed distance)
CASES = [
    (0, 0, 0),
    (1, 0, 1),
    (0, 1, -1),
    (0, TOP, 1),  # wrapped: 0 comes right after 2**32 - 1
    (TOP, 0, -1),
    (5, TOP - 4, 10),
    (0x7FFFFFFF, 0, 0x7FFFFFFF),  # the farthest "after"
    (0x80000001, 0, -0x7FFFFFFF),  # one more and it is "before"
    (1000, 0xFFFFFF00, 1256),
]


@pytest.mark.parametrize(("a", "b", "distance"), CASES)
def test_comparisons_follow_the_signed_distance(a: int, b: int, distance: int) -> None:
    assert seq_diff(a, b) == distance
    assert seq_lt(a, b) == (distance < 0)
    assert seq_le(a, b) == (distance <= 0)
    assert seq_gt(a, b) == (distance > 0)
    assert seq_ge(a, b) == (distance >= 0)
    assert seq_max(a, b) == (a if distance >= 0 else b)


@pytest.mark.parametrize(
    ("x", "start", "size", "inside"),
    [
        (10, 10, 1, True),
        (11, 10, 1, False),
        (9, 10, 5, False),
        (0, TOP, 2, True),  # the window wraps
        (1, TOP, 2, False),
        (10, 10, 0, False),  # an empty window holds nothing
    ],
)
def test_seq_in(x: int, start: int, size: int, inside: bool) -> None:
    assert seq_in(x, start, size) == inside


seqs = st.integers(0, TOP)
offsets = st.integers(1, 0x7FFFFFFF)


@given(seqs, offsets)
def test_adding_moves_forward(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert seq_lt(a, b) and seq_gt(b, a) and not seq_lt(b, a)
    assert seq_diff(b, a) == n and seq_diff(a, b) == -n
    assert seq_add(b, -n) == a
    assert seq_in(seq_add(a, n - 1), a, n)
