"""retry.py: how long a registry's 429 or 503 is waited out, and when it is not."""

from __future__ import annotations

import email.utils

import pytest

from summon.store import retry
from summon.store.reference import RegistryError

NOW = 1_700_000_000.0


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry.retry_after("7", NOW) == 7.0
    assert retry.retry_after(" 0 ", NOW) == 0.0
    assert retry.retry_after(email.utils.formatdate(NOW + 30, usegmt=True), NOW) == 30.0
    assert retry.retry_after(email.utils.formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    for junk in (None, "", "-3", "1.5", "soon", "Sun, 99 Foo 2026 00:00:00 GMT"):
        assert retry.retry_after(junk, NOW) is None, junk


def tries(statuses: list[tuple[int, str | None]]) -> tuple[list[float], list[str]]:
    slept: list[float] = []
    said: list[str] = []
    r = retry.Retries("reg.example", "fetching x", said.append, slept.append, lambda: NOW)
    for status, after in statuses:
        if not r.again(status, after):
            break
    return slept, said


def test_waits_as_asked_else_backs_off() -> None:
    slept, said = tries([(429, "5"), (503, None), (429, None), (200, None)])
    assert slept == [5.0, 2.0, 4.0]
    assert said[0] == (
        "registry reg.example answered 429 (too many requests) while fetching x: trying again "
        "in 5s (try 2 of 4)"
    )


def test_other_statuses_are_not_retried() -> None:
    assert tries([(500, "1"), (429, "1")]) == ([], [])


def test_a_wait_longer_than_the_cap_fails_at_once() -> None:
    with pytest.raises(RegistryError, match="asks to wait 61s, longer than summon waits"):
        tries([(429, "61")])


def test_too_many_tries_or_too_long_in_all_fail() -> None:
    with pytest.raises(RegistryError, match="4 times over 3s; try again later"):
        tries([(503, "1")] * 5)
    with pytest.raises(RegistryError, match="would pass 120s in all"):
        tries([(429, "60"), (429, "60"), (429, "60")])
