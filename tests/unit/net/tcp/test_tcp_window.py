"""Segment acceptability, RFC 5961's ACK and RST ranges, window scaling and advertising."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.net.tcp.window import acceptable, ack_in_range, advertise, rst_action, scale_for

NXT = 0xFFFFFFF0  # near the wrap, so every case crosses it


@pytest.mark.parametrize(
    ("seq_off", "length", "wnd", "ok"),
    [
        # RFC 9293's four cases
        (0, 0, 0, True),
        (1, 0, 0, False),
        (0, 0, 100, True),
        (99, 0, 100, True),
        (100, 0, 100, False),
        (-1, 0, 100, False),
        (0, 10, 0, False),
        (0, 10, 100, True),
        (-5, 10, 100, True),  # its last bytes are new
        (-10, 10, 100, False),  # all old
        (95, 10, 100, True),  # its first bytes fit
        (100, 10, 100, False),
    ],
)
def test_acceptability(seq_off: int, length: int, wnd: int, ok: bool) -> None:
    assert acceptable((NXT + seq_off) & 0xFFFFFFFF, length, NXT, wnd) is ok


@pytest.mark.parametrize(
    ("ack_off", "ok"),
    [(0, True), (500, True), (1000, True), (1001, False), (-65535, True), (-65536, False)],
)
def test_ack_range_rfc5961(ack_off: int, ok: bool) -> None:
    una, snd_max, max_wnd = NXT, (NXT + 1000) & 0xFFFFFFFF, 65535
    assert ack_in_range((una + ack_off) & 0xFFFFFFFF, una, snd_max, max_wnd) is ok


@pytest.mark.parametrize(
    ("seq_off", "wnd", "action"),
    [(0, 1000, "reset"), (1, 1000, "challenge"), (999, 1000, "challenge"), (1000, 1000, "drop"),
     (-1, 1000, "drop"), (0, 0, "reset"), (1, 0, "drop")],
)  # fmt: skip
def test_rst_rfc5961(seq_off: int, wnd: int, action: str) -> None:
    assert rst_action((NXT + seq_off) & 0xFFFFFFFF, NXT, wnd) == action


@pytest.mark.parametrize(
    ("buffer", "shift"),
    [(0, 0), (65535, 0), (65536, 1), (131071, 1), (262144, 3), (1 << 20, 5), (1 << 40, 14)],
)
def test_scale_for(buffer: int, shift: int) -> None:
    assert scale_for(buffer) == shift


def test_advertise_full_buffer_and_scaling() -> None:
    field, right = advertise(262144, NXT, NXT, 3, 1460, 262144)
    assert field == 32768 and right == (NXT + 262144) & 0xFFFFFFFF


def test_advertise_holds_back_small_openings_but_never_shrinks() -> None:
    buf, mss = 100000, 1460
    # promised 10000 bytes earlier; 500 more became free: too little to move the edge (SWS)
    field, right = advertise(10500, NXT, (NXT + 10000) & 0xFFFFFFFF, 0, mss, buf)
    assert (field, right) == (10000, (NXT + 10000) & 0xFFFFFFFF)
    # a full MSS more: the edge moves
    field, _ = advertise(11460, NXT, (NXT + 10000) & 0xFFFFFFFF, 0, mss, buf)
    assert field == 11460


def test_advertise_rounds_up_rather_than_shrink_when_space_allows() -> None:
    # promised 1001 bytes with shift 3: 1001 >> 3 << 3 = 1000 would pull the edge left
    field, right = advertise(2000, NXT, (NXT + 1001) & 0xFFFFFFFF, 3, 1460, 1 << 20)
    assert field << 3 >= 1001 and right == (NXT + (field << 3)) & 0xFFFFFFFF


def test_advertise_shrinks_to_what_the_receive_budget_left() -> None:
    """The stack-wide budget took space already promised: the edge moves left to what is
    free (an MSS or more), or the window closes (less), rather than invite bytes that would
    be dropped; it never promises more than is free."""
    promised = (NXT + 10000) & 0xFFFFFFFF
    assert advertise(3000, NXT, promised, 0, 1460, 100000) == (3000, (NXT + 3000) & 0xFFFFFFFF)
    assert advertise(1000, NXT, promised, 0, 1460, 100000) == (0, NXT)
    field, right = advertise(3000, NXT, promised, 3, 1460, 100000)
    assert field << 3 <= 3000 and right == (NXT + (field << 3)) & 0xFFFFFFFF


@given(
    shift=st.integers(0, 14),
    steps=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), max_size=40),
)
def test_advertised_edge_never_retreats_and_never_overpromises(
    shift: int, steps: list[tuple[int, int]]
) -> None:
    """Data arrives (taking window) and the app reads (freeing buffer), in any order."""
    buffer, mss = 1 << 20, 1460
    nxt, readable = NXT, 0
    field, adv = advertise(buffer, nxt, nxt, shift, mss, buffer)
    for arrive, read in steps:
        window = (adv - nxt) & 0xFFFFFFFF
        arrive = min(arrive, window)  # a peer may fill what we advertised, no more
        nxt, readable = (nxt + arrive) & 0xFFFFFFFF, readable + arrive
        readable -= min(read, readable)
        free = buffer - readable
        field, right = advertise(free, nxt, adv, shift, mss, buffer)
        assert field << shift <= free  # never promise space we do not have
        assert right == (nxt + (field << shift)) & 0xFFFFFFFF
        retreat = (adv - right) & 0xFFFFFFFF
        assert retreat == 0 or retreat >= 0x80000000 or retreat < (1 << shift)  # rounding only
        adv = right
