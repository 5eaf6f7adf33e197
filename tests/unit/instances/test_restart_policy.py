"""Restart policies: what --restart accepts, when each policy starts an app again, the backoff."""

from __future__ import annotations

import itertools

import pytest

from summon.errors import UserError
from summon.instances.restart import MAX_DELAY, RestartPolicy, backoff


@pytest.mark.parametrize(
    ("text", "mode", "count"),
    [("no", "no", None), ("always", "always", None), ("on-failure", "on-failure", None),
     ("on-failure:2", "on-failure", 2), ("on-failure:0", "on-failure", 0)],
)  # fmt: skip
def test_parse(text: str, mode: str, count: int | None) -> None:
    policy = RestartPolicy.parse(text)
    assert (policy.mode, policy.max_restarts) == (mode, count)
    assert str(policy) == text


@pytest.mark.parametrize(
    ("text", "needle"),
    [("sometimes", "expected no, on-failure"), ("always:3", "only on-failure takes a count"),
     ("on-failure:-1", "expected"), ("on-failure:", "expected"), ("", "expected")],
)  # fmt: skip
def test_parse_refuses(text: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        RestartPolicy.parse(text)


# (policy, exit code, restarts so far) -> restart?
CASES = [
    ("no", 1, 0, False),
    ("no", 0, 0, False),
    ("always", 0, 0, True),
    ("always", 1, 100, True),
    ("on-failure", 0, 0, False),
    ("on-failure", 3, 50, True),
    ("on-failure", None, 0, True),  # a restart that could not even start counts as a failure
    ("on-failure:2", 3, 0, True),
    ("on-failure:2", 3, 1, True),
    ("on-failure:2", 3, 2, False),
    ("on-failure:2", 0, 0, False),
    ("on-failure:0", 3, 0, False),
]


@pytest.mark.parametrize(("text", "code", "restarts", "expected"), CASES)
def test_should_restart(text: str, code: int | None, restarts: int, expected: bool) -> None:
    assert RestartPolicy.parse(text).should_restart(code, restarts) is expected


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [backoff(n) for n in range(12)]
    assert delays[:4] == [0.1, 0.1, 0.2, 0.4]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == MAX_DELAY
