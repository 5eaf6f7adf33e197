"""A frozen instance killed meanwhile (SIGKILL from outside, the OOM killer) is booted anew,
not thawed: a cgroup-frozen task dies only once it runs again, and the connection that woke
it would have been handed to a dying app and reset."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_gateway_handoff import AppLauncher, fetch, run, served

from summon.gateway import tiers
from summon.gateway.config import ServiceConfig
from summon.gateway.service import State

FREEZER = Path("/sys/fs/cgroup/freezer")


def test_a_frozen_instance_killed_meanwhile_is_booted_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        config = ServiceConfig("web", "x", idle_timeout=30, freeze_after=0.1)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            first = launcher.instances[0]
            await svc.step_down(tiers.FROZEN)
            assert svc.state == State.FROZEN and first.frozen
            monkeypatch.setattr(tiers, "kill_pending", lambda pid: True)  # killed, frozen
            assert (await fetch(port)).endswith(b"by fd\n")  # served by a new boot
            assert launcher.calls == 2 and first.stopped  # (thawed only to be stopped)
            assert svc.state == State.UP and svc.thaws == 0 and svc.boots == 2

    run(main())


@pytest.mark.skipif(
    os.geteuid() != 0 or not FREEZER.is_dir(), reason="root and cgroup v1's freezer"
)
def test_a_kill_waiting_on_a_frozen_task_is_seen() -> None:
    group = FREEZER / f"summon-test-kill-{os.getpid()}"
    group.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert not tiers.kill_pending(sleeper.pid)  # running, nothing pending
        (group / "cgroup.procs").write_text(str(sleeper.pid))
        (group / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 5
        while (group / "freezer.state").read_text().strip() != "FROZEN":
            assert time.monotonic() < deadline, "the freezer did not freeze"
            time.sleep(0.01)
        os.kill(sleeper.pid, signal.SIGKILL)
        time.sleep(0.05)
        assert sleeper.poll() is None  # frozen: not dead yet
        assert tiers.kill_pending(sleeper.pid)
        (group / "freezer.state").write_text("THAWED")
        assert sleeper.wait(5) == -signal.SIGKILL
    finally:
        (group / "freezer.state").write_text("THAWED")
        sleeper.kill()
        sleeper.wait()
        group.rmdir()
    assert not tiers.kill_pending(sleeper.pid)  # gone: nothing to read
