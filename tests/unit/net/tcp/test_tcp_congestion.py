"""RFC 5681 slow start / congestion avoidance and RFC 6582 NewReno, step by step."""

from __future__ import annotations

import pytest

from summon.net.tcp.congestion import NewReno, initial_window

MSS = 1000
ISS = 0


@pytest.mark.parametrize(
    ("mss", "iw"),
    [(536, 2144), (1095, 4380), (1096, 3288), (1460, 4380), (2190, 6570), (4000, 8000)],
)
def test_initial_window_rfc5681(mss: int, iw: int) -> None:
    assert initial_window(mss) == iw


def test_slow_start_grows_by_at_most_one_mss_per_ack() -> None:
    cc = NewReno(MSS, ISS)
    assert cc.cwnd == 4 * MSS
    cc.on_ack(MSS, 1001, 3000)
    assert cc.cwnd == 5 * MSS
    cc.on_ack(3 * MSS, 4001, 2000)  # a stretch ACK: still one MSS (byte counting, L = 1)
    assert cc.cwnd == 6 * MSS
    cc.on_ack(100, 4101, 2000)
    assert cc.cwnd == 6 * MSS + 100


def test_congestion_avoidance_grows_one_mss_per_window() -> None:
    cc = NewReno(MSS, ISS)
    cc.ssthresh = cc.cwnd = 4 * MSS
    ack = 1
    for _ in range(3):
        ack += MSS
        cc.on_ack(MSS, ack, 0)
    assert cc.cwnd == 4 * MSS
    cc.on_ack(MSS, ack + MSS, 0)  # 4000 bytes acked = one cwnd
    assert cc.cwnd == 5 * MSS


def test_three_dup_acks_start_fast_recovery() -> None:
    cc = NewReno(MSS, ISS)
    cc.cwnd = 10 * MSS
    una, snd_max = 1001, 11001
    flight = snd_max - una
    assert cc.on_dup_ack(una, snd_max, flight) is False
    assert cc.on_dup_ack(una, snd_max, flight) is False
    assert cc.on_dup_ack(una, snd_max, flight) is True  # retransmit now
    assert cc.in_recovery
    assert cc.ssthresh == 5 * MSS  # flight / 2
    assert cc.cwnd == 8 * MSS  # ssthresh + 3 MSS
    assert cc.recover == snd_max
    assert cc.on_dup_ack(una, snd_max, flight) is False  # more: inflate only
    assert cc.cwnd == 9 * MSS


def test_partial_ack_deflates_and_asks_for_the_next_hole() -> None:
    cc = NewReno(MSS, ISS)
    cc.cwnd = 10 * MSS
    for _ in range(3):
        cc.on_dup_ack(1001, 11001, 10000)
    assert cc.on_ack(2000, 3001, 8000) is True  # partial: below recover
    assert cc.cwnd == 8 * MSS - 2000 + MSS  # deflate by acked, add back one MSS
    assert cc.in_recovery
    assert cc.on_ack(8000, 11001, 0) is False  # full ACK
    assert not cc.in_recovery
    assert cc.cwnd == min(cc.ssthresh, MSS + MSS)


def test_dup_acks_not_beyond_recover_do_not_restart_recovery() -> None:
    # RFC 6582 3.2 step 2: after a timeout, duplicates about old data are echoes.
    cc = NewReno(MSS, ISS)
    cc.on_timeout(10 * MSS, 11001, first=True)
    for _ in range(3):
        assert cc.on_dup_ack(5001, 11001, 6000) is False
    assert not cc.in_recovery
    cc.on_ack(7000, 12001, 8000)  # new data acknowledged past recover
    for _ in range(3):
        fired = cc.on_dup_ack(12001, 20001, 8000)
    assert fired and cc.in_recovery


def test_timeout_collapses_to_one_segment_and_halves_once() -> None:
    cc = NewReno(MSS, ISS)
    cc.cwnd = 20 * MSS
    cc.on_timeout(16 * MSS, 16001, first=True)
    assert (cc.cwnd, cc.ssthresh) == (MSS, 8 * MSS)
    cc.on_timeout(MSS, 16001, first=False)  # the same segment timed out again
    assert (cc.cwnd, cc.ssthresh) == (MSS, 8 * MSS)
    cc.on_timeout(MSS, 16001, first=True)
    assert cc.ssthresh == 2 * MSS  # floor: 2 MSS
