"""The in-memory link: each fault does what it says, at about its rate, replayably."""

from __future__ import annotations

import itertools

import pytest

from summon.net.links.memory import Faults, VirtualClock, memory_link_pair


def send_all(n: int, faults: Faults, seed: int = 1, settle: float = 1.0) -> list[bytes]:
    a, b, clock = memory_link_pair(seed, faults)
    for i in range(n):
        a.send(i.to_bytes(4, "big") * 4)
    clock.advance(settle)
    return b.receive()


def numbers(frames: list[bytes]) -> list[int]:
    return [int.from_bytes(f[:4], "big") for f in frames]


def test_a_clean_link_delivers_in_order_after_its_latency() -> None:
    a, b, clock = memory_link_pair(0, Faults(latency=0.5))
    a.send(b"one")
    a.send(b"two")
    assert b.receive() == []
    assert b.next_arrival() == 0.5
    clock.advance(0.5)
    assert b.receive() == [b"one", b"two"]
    assert b.next_arrival() is None


def test_the_two_directions_are_independent() -> None:
    a, b, _ = memory_link_pair(0)
    a.send(b"to b")
    b.send(b"to a")
    assert (a.receive(), b.receive()) == ([b"to a"], [b"to b"])


def test_drop_loses_about_its_share() -> None:
    got = send_all(2000, Faults(drop=0.3))
    assert 1200 < len(got) < 1600
    assert numbers(got) == sorted(numbers(got))


def test_duplicate_delivers_some_frames_twice_back_to_back() -> None:
    got = numbers(send_all(1000, Faults(duplicate=0.2)))
    twice = [n for n in set(got) if got.count(n) == 2]
    assert 150 < len(twice) < 250
    assert sorted(set(got)) == list(range(1000))


def test_reorder_swaps_a_frame_with_the_next() -> None:
    got = numbers(send_all(1000, Faults(reorder=0.1)))
    assert sorted(got) == list(range(1000))
    swaps = sum(1 for x, y in itertools.pairwise(got) if x > y)
    assert 50 < swaps < 150


def test_a_held_frame_goes_after_its_hold_time_when_nothing_follows() -> None:
    a, b, clock = memory_link_pair(0, Faults(reorder=1.0, reorder_hold=0.2))
    a.send(b"alone")
    clock.advance(0.1)
    assert b.receive() == []
    clock.advance(0.1)
    assert b.receive() == [b"alone"]


def test_delay_lets_later_frames_overtake() -> None:
    a, b, clock = memory_link_pair(0, Faults(delay=1.0, delay_time=1.0))
    a.send(b"late")
    assert b.receive() == []
    clock.advance(1.0)
    assert b.receive() == [b"late"]


def test_corrupt_flips_exactly_one_bit() -> None:
    frames = send_all(200, Faults(corrupt=1.0))
    for i, frame in enumerate(frames):
        original = i.to_bytes(4, "big") * 4
        diff = int.from_bytes(frame, "big") ^ int.from_bytes(original, "big")
        assert bin(diff).count("1") == 1


def test_same_seed_same_faults_other_seed_others() -> None:
    faults = Faults(drop=0.2, duplicate=0.1, reorder=0.1, delay=0.1, corrupt=0.1)
    assert send_all(300, faults, seed=5) == send_all(300, faults, seed=5)
    assert send_all(300, faults, seed=5) != send_all(300, faults, seed=6)


def test_fault_counters_say_what_happened() -> None:
    a, _, _ = memory_link_pair(9, Faults(drop=0.5))
    for _ in range(100):
        a.send(b"x")
    assert a.counters["link__frame__send"] == 100
    assert 30 < a.counters["link__fault__drop"] < 70


def test_faults_can_differ_per_direction() -> None:
    a, b, clock = memory_link_pair(0, Faults(drop=1.0), faults_back=Faults())
    a.send(b"lost")
    b.send(b"kept")
    clock.advance(1)
    assert (a.receive(), b.receive()) == ([b"kept"], [])


def test_probabilities_outside_0_1_are_refused() -> None:
    with pytest.raises(ValueError, match=r"drop=1\.5"):
        Faults(drop=1.5)


def test_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(3.0)
    assert clock.advance(0.5) == 3.5
    assert clock.now == 3.5
