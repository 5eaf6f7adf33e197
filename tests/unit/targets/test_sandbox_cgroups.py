"""The cgroup move a sandbox start pays once, as `summon doctor` measures and explains it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from summon.targets.sandbox import cgroups
from summon.targets.sandbox.target import _attach_check

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root")


@needs_root
def test_the_probe_times_a_real_move_and_leaves_no_cgroup_or_child_behind() -> None:
    base = cgroups.cgroup_mounts().get("pids") or cgroups.cgroup_mounts()["unified"]
    before = {p.name for p in base.iterdir()}
    children = _children()
    took = cgroups.attach_seconds()
    assert took is not None and 0 < took < 5
    assert {p.name for p in base.iterdir()} == before
    assert _children() == children  # the probe's child was killed and reaped


def _children() -> set[int]:
    """This process's children, zombies included, from each process's parent pid."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(stat.parent.name))
    return found


def test_a_move_that_waits_for_rcu_gets_the_favordynmods_tip_and_is_no_failure() -> None:
    slow = _attach_check(0.018)
    assert slow.ok and "18.0 ms" in slow.what
    assert "favordynmods" in slow.tip and "mount -o remount,favordynmods" in slow.tip
    fast = _attach_check(0.0003)
    assert fast.ok and fast.tip == "" and "0.3 ms" in fast.what


@needs_root
def test_doctor_says_what_the_move_costs_as_text_and_json() -> None:
    r = subprocess.run([sys.executable, "-m", "summon.cli.main", "doctor", "--json"],
                       capture_output=True, text=True, check=True)  # fmt: skip
    checks = json.loads(r.stdout)
    moves = [c for c in checks if "moving a process into a cgroup" in c["what"]]
    assert len(moves) == 1 and moves[0]["ok"] is True and "tip" in moves[0]
    assert all("tip" in c for c in checks)


def _warmers() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "summon-attach-warm"]


def test_the_start_moves_this_process_into_its_own_cgroup_while_it_runs_and_then_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    monkeypatch.setattr(cgroups, "_own_procs", lambda: procs)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with cgroups.attach_kept_fast():
        deadline = time.monotonic() + 5
        while procs.read_text() != "0" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert procs.read_text() == "0"  # "0": the writer's own process, where it already is
        assert _warmers() == ["summon-attach-warm"]
    assert _warmers() == []
    procs.write_text("")
    time.sleep(0.05)
    assert procs.read_text() == ""  # nothing moves once the container is made


def test_a_start_that_fails_stops_the_moves_and_one_that_may_not_write_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(cgroups, "_own_procs", lambda: tmp_path / "gone" / "cgroup.procs")
    with pytest.raises(RuntimeError, match="runc failed"):
        with cgroups.attach_kept_fast():
            raise RuntimeError("runc failed")
    assert _warmers() == []
    monkeypatch.setattr(cgroups, "_own_procs", lambda: None)  # no pids or unified hierarchy
    with cgroups.attach_kept_fast():
        assert _warmers() == []


@needs_root
def test_the_moves_leave_this_process_in_the_cgroups_it_was_in() -> None:
    before = Path("/proc/self/cgroup").read_text()
    own = cgroups._own_procs()
    assert own is not None and str(os.getpid()) in own.read_text().split()
    with cgroups.attach_kept_fast():
        import time

        time.sleep(0.05)
    assert Path("/proc/self/cgroup").read_text() == before
