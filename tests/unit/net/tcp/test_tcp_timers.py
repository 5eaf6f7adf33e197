"""RFC 6298's retransmission timeout, its bounds and backoff, and the named deadlines."""

from __future__ import annotations

import pytest

from summon.net.tcp.timers import RTOEstimator, Timers, persist_interval


def test_first_and_second_samples_follow_rfc6298() -> None:
    rto = RTOEstimator(min_rto=0.2)
    assert rto.rto == 1.0  # (2.1) before any sample
    rto.sample(0.5)  # (2.2): SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR)
    assert (rto.srtt, rto.rttvar, rto.rto) == (0.5, 0.25, 1.5)
    rto.sample(1.0)  # (2.3): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|, then SRTT = 7/8 SRTT + 1/8 R'
    assert rto.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.5)
    assert rto.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 1.0)
    assert rto.rto == pytest.approx(0.5625 + 4 * 0.3125)


@pytest.mark.parametrize(
    ("samples", "min_rto", "max_rto", "expected"),
    [
        ([0.010], 1.0, 60.0, 1.0),  # (2.4): rounded up to the 1 s floor
        ([0.010], 0.2, 60.0, 0.2),  # a lower floor, as Linux uses
        ([100.0], 1.0, 60.0, 60.0),  # (2.5): capped
        ([0.1] * 50, 0.0, 60.0, pytest.approx(0.1, abs=0.002)),  # variance decays; G bounds it
    ],
)
def test_bounds(samples: list[float], min_rto: float, max_rto: float, expected: float) -> None:
    rto = RTOEstimator(min_rto=min_rto, max_rto=max_rto)
    for s in samples:
        rto.sample(s)
    assert rto.rto == expected


def test_backoff_doubles_to_the_cap_and_a_sample_clears_it() -> None:
    rto = RTOEstimator(min_rto=1.0, max_rto=60.0)
    rto.sample(0.1)
    seen = []
    for _ in range(8):
        rto.expired()  # (5.5)
        seen.append(rto.rto)
    assert seen == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert rto.backoff == 8
    rto.sample(0.1)
    assert rto.backoff == 0 and rto.rto == 1.0


def test_lost_syn_without_sample_starts_data_at_three_seconds() -> None:
    rto = RTOEstimator()
    rto.expired()
    rto.reset_after_syn_loss()  # (5.7)
    assert rto.rto == 3.0 and rto.backoff == 0
    measured = RTOEstimator()
    measured.sample(0.1)
    measured.reset_after_syn_loss()  # a sample was taken: nothing to reset
    assert measured.rto == 1.0


def test_timers_report_what_is_due_in_order_and_clear_it() -> None:
    timers = Timers()
    assert timers.next() is None and timers.due(100.0) == []
    timers.delayed_ack = 0.2
    timers.retransmit = 1.0
    timers.time_wait = 60.0
    assert timers.next() == 0.2
    assert timers.due(1.0) == ["retransmit", "delayed_ack"]
    assert timers.next() == 60.0
    timers.clear()
    assert timers.next() is None


@pytest.mark.parametrize(
    ("rto", "probes", "expected"),
    [(1.0, 0, 1.0), (1.0, 1, 2.0), (1.0, 3, 8.0), (1.5, 10, 60.0), (1.0, 500, 60.0)],
)
def test_persist_interval_backs_off_to_the_cap(rto: float, probes: int, expected: float) -> None:
    assert persist_interval(rto, probes, 60.0) == expected
