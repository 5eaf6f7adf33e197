"""A build stopped in its recording run leaves nothing running: not by SIGTERM (it unwinds,
stopping the run's container), not by SIGKILL (the next build releases what it left)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from summon_cli import EXAMPLES, Summon, needs_sandbox

pytestmark = [needs_sandbox, pytest.mark.slow]


def _recording_started(summon: Summon, runc_root: Path, proc: subprocess.Popen[str]) -> str:
    """The container id of the build's recording run, once runc runs it."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the build ended first: {proc.communicate()}"
        for folder in runc_root.glob("summon-record-*"):
            if _status(runc_root, folder.name) == "running":
                return folder.name
        time.sleep(0.05)
    raise AssertionError("the build never started its recording run")


def _status(runc_root: Path, container: str) -> str | None:
    r = subprocess.run(
        ["runc", "--root", str(runc_root), "state", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(r.stdout)["status"] if r.returncode == 0 else None


def _netns(name: str) -> bool:
    return Path("/run/netns", name).exists()


def test_a_killed_builds_recording_run_is_stopped_and_released(
    tmp_path: Path,
) -> None:
    summon = Summon(tmp_path / "home")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    runc_root = summon.home / "state" / "summon" / "runc"

    # SIGKILL: nothing can unwind; the recording run's container is left behind (running,
    # or stopped once the app finds the build's seccomp gate gone), its network namespace,
    # mounts and folder too...
    first = summon.popen("build", str(EXAMPLES / "http"), "-t", "killed", env=env)
    killed = _recording_started(summon, runc_root, first)
    first.kill()
    first.communicate()
    assert _status(runc_root, killed) in ("running", "stopped")
    assert _netns(killed)
    assert list(tmp.glob("summon-record-*"))

    # ...until the next build, which releases it before its own runs. That one is stopped
    # by SIGTERM in its own recording run, and unwinds: one line, 128 + 15, nothing left.
    second = summon.popen("build", str(EXAMPLES / "http"), "-t", "termed", env=env)
    termed = _recording_started(summon, runc_root, second)
    assert _status(runc_root, killed) is None, "the killed build's run was not released"
    assert not _netns(killed)
    second.send_signal(signal.SIGTERM)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 128 + signal.SIGTERM
    assert "summon: error: stopped by SIGTERM" in stderr
    assert _status(runc_root, termed) is None
    assert not _netns(termed)
    assert not list(tmp.glob("summon-record-*")), "a run's temporary folder was left"
    assert not list(runc_root.glob("summon-record-*"))
