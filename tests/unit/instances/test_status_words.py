"""What `summon ps` says in STATUS: docker's wording, with the reason when there is no status."""

from __future__ import annotations

import datetime

import pytest

from summon.cli.instances import human_duration, status_text

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def ago(seconds: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (119, "About a minute"), (180, "3 minutes"), (3600, "About an hour"), (3 * 3600, "3 hours"),
     (3 * 86400, "3 days"), (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
     (800 * 86400, "2 years")],
)  # fmt: skip
def test_human_duration(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


@pytest.mark.parametrize(
    ("st", "text"),
    [
        ({"status": "created"}, "Created"),
        ({"status": "running", "started_at": ago(180)}, "Up 3 minutes"),
        ({"status": "exited", "exit_code": 1, "finished_at": ago(5)}, "Exited (1) 5 seconds ago"),
        (
            {"status": "exited", "exit_code": None, "finished_at": ago(5),
             "reason": "monitor died (killed by SIGKILL)"},
            "Exited (monitor died) 5 seconds ago",
        ),
        (
            {"status": "exited", "exit_code": None, "finished_at": ago(2),
             "reason": "start failed: runc not found"},
            "Exited (start failed) 2 seconds ago",
        ),
        (
            {"status": "restarting", "exit_code": 3, "finished_at": ago(0)},
            "Restarting (3) Less than a second ago",
        ),
    ],
)  # fmt: skip
def test_status_text(st: dict[str, object], text: str) -> None:
    assert status_text(st, NOW) == text


@pytest.mark.parametrize(
    ("st", "text"),
    [
        ({"status": "exited", "exit_code": 0, "finished_at": 5}, "Exited (0) ? ago"),
        ({"status": "running", "started_at": "2026-01-02T03:00:00"}, "Up ?"),  # no zone
        ({"status": "running", "started_at": ["x"]}, "Up ?"),
    ],
)
def test_times_of_another_shape_are_unknown_not_an_error(st: dict[str, object], text: str) -> None:
    # state.json edited by hand: a number was TypeError from fromisoformat, a time without
    # its zone TypeError when subtracted from now; both internal errors of ps and inspect.
    assert status_text(st, NOW) == text
