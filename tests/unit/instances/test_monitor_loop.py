"""The monitor's loop against a fake target: restarts per policy, stop, stats, start failures.

The fake's instances exit with scripted statuses; the monitor's real console pipe, control
socket and state files are used, in a throw-away state folder.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FOREVER, FakeTarget

from summon.errors import TargetUnavailable
from summon.instances import control, state
from summon.instances.console import read_all
from summon.instances.monitor import Monitor
from summon.targets.base import RunSpec


def new_instance(restart: str) -> state.InstanceFolder:
    spec = RunSpec(name="x", image="fake:1", rootfs=Path("/"), app_config={})
    doc = {"target": "fake", "restart": restart, "run": state.encode_run_spec(spec)}
    folder, lock_fd = state.create(doc, None, "fake")
    os.close(lock_fd)
    return folder


def run_monitor(
    folder: state.InstanceFolder, target: FakeTarget
) -> tuple[Monitor, threading.Thread, list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []
    monitor = Monitor(folder, target, reports.append)
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    return monitor, thread, reports


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_on_failure_restarts_up_to_the_count() -> None:
    folder = new_instance("on-failure:2")
    _monitor, thread, reports = run_monitor(folder, FakeTarget([3, 3, 3, 3]))
    thread.join(10)
    assert not thread.is_alive()
    st = folder.state()
    assert (st["status"], st["exit_code"], st["restarts"]) == ("exited", 3, 2)
    assert st["reason"] == "exited"
    assert reports == [{"ok": True}]
    assert read_all(folder.logs) == b"run 1\nrun 2\nrun 3\n"
    assert st["finished_at"] and st["pid"] is None


def test_on_failure_does_not_restart_a_clean_exit() -> None:
    folder = new_instance("on-failure")
    _m, thread, _r = run_monitor(folder, FakeTarget([3, 0, 3]))
    thread.join(10)
    st = folder.state()
    assert (st["exit_code"], st["restarts"]) == (0, 1)


def test_always_restarts_after_success_until_stopped() -> None:
    folder = new_instance("always")
    target = FakeTarget([0, 0, FOREVER])
    _m, thread, _r = run_monitor(folder, target)
    wait_for(lambda: target.starts == 3 and folder.state()["status"] == "running")
    assert folder.state()["restarts"] == 2
    reply = control.request(folder.path, {"op": "stop", "grace": 1}, timeout=10)
    assert reply == {"ok": True, "exit_code": 143}
    thread.join(5)
    st = folder.state()
    assert (st["status"], st["exit_code"], st["reason"], st["restarts"]) == (
        "exited", 143, "stopped", 2
    )  # fmt: skip
    assert not (folder.path / control.SOCKET_NAME).exists()


def test_stats_over_the_control_socket() -> None:
    folder = new_instance("no")
    monitor, thread, _r = run_monitor(folder, FakeTarget([FOREVER]))
    wait_for(lambda: folder.state()["status"] == "running")
    # The folder is deep in pytest's tmp: past sun_path's limit, reached through /proc/self/fd.
    reply = control.request(folder.path, {"op": "stats"}, timeout=5)
    assert reply["ok"] and reply["running"]
    assert (reply["memory_bytes"], reply["cpu_seconds"]) == (1234, 0.5)
    assert reply["network"] == {"tcp__retransmit": 2}
    assert control.request(folder.path, {"op": "dance"}, timeout=5)["ok"] is False
    monitor.request_stop(0)
    thread.join(5)
    assert folder.state()["reason"] == "stopped"


def test_a_failed_first_start_is_reported_and_recorded() -> None:
    folder = new_instance("always")
    _m, thread, reports = run_monitor(folder, FakeTarget([TargetUnavailable("runc not found")]))
    thread.join(5)
    assert reports == [{"ok": False, "error": "runc not found", "exit_status": 2}]
    st = folder.state()
    assert (st["status"], st["reason"], st["exit_code"]) == (
        "exited", "start failed: runc not found", None
    )  # fmt: skip


def test_a_failed_restart_counts_as_a_failure() -> None:
    folder = new_instance("on-failure:1")
    _m, thread, reports = run_monitor(folder, FakeTarget([3, RuntimeError("disk full")]))
    thread.join(10)
    assert reports == [{"ok": True}]
    st = folder.state()
    assert (st["status"], st["restarts"], st["exit_code"]) == ("exited", 1, None)
    assert st["reason"] == "restart failed: disk full"


def test_stop_during_the_backoff_ends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("summon.instances.monitor.backoff", lambda quick_runs: 600.0)
    folder = new_instance("always")
    target = FakeTarget([0, 0])
    monitor, thread, _r = run_monitor(folder, target)
    wait_for(lambda: folder.state()["status"] == "restarting")
    monitor.request_stop(5)
    thread.join(10)  # far less than the 600 s backoff
    assert not thread.is_alive()
    st = folder.state()
    assert (st["status"], st["reason"]) == ("exited", "stopped")
    assert (st["restarts"], target.starts) == (0, 1)


@pytest.fixture(autouse=True)
def _no_threads_left_behind() -> Any:
    before = set(threading.enumerate())
    yield
    wait_for(lambda: not [
        t for t in set(threading.enumerate()) - before
        if t.name.startswith("summon-") and t.is_alive()
    ])  # fmt: skip


def test_a_full_disk_does_not_take_the_instance_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording the restart on a full disk raised in the monitor, which died, and its init
    killed the app it had just restarted: a full disk stopped a --restart always service.
    The state waits in memory until it can be written."""
    import errno

    folder = new_instance("always")
    target = FakeTarget([3, FOREVER])
    write = folder.write_state
    full = threading.Event()

    def write_state(doc: dict[str, Any]) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        write(doc)

    monkeypatch.setattr(folder, "write_state", write_state)
    full.set()
    _m, thread, _r = run_monitor(folder, target)
    wait_for(lambda: target.starts == 2)
    time.sleep(0.2)
    assert thread.is_alive()
    full.clear()  # room again: the stop's record is written, with what came before it
    reply = control.request(folder.path, {"op": "stop", "grace": 1}, timeout=10)
    assert reply == {"ok": True, "exit_code": 143}
    thread.join(5)
    st = folder.state()
    assert (st["status"], st["reason"], st["restarts"]) == ("exited", "stopped", 1)


class SayingTarget(FakeTarget):
    """A fake that says a notice during every start, as the qemu target says a refused or
    unsaved snapshot, to whoever hears it (Target.hear_notices)."""

    def __init__(self, script: list[int | BaseException | None]) -> None:
        super().__init__(script)
        self.heard: Any = None

    def hear_notices(self, listener: Any) -> None:
        self.heard = listener

    def start(self, spec: RunSpec) -> Any:
        if self.heard is not None:
            self.heard(f"warning: start {self.starts + 1} said this")
        return super().start(spec)


def test_a_detached_first_starts_notices_are_in_its_report() -> None:
    """Before: a detached run's target notices (a snapshot refused, not saved) went only to
    monitor.log and `summon run -d` printed nothing of them; now the first start's are in
    the report the CLI prints from, and a restart's are not (nobody waits for those)."""
    folder = new_instance("on-failure:1")
    target = SayingTarget([3, 0])
    _m, thread, reports = run_monitor(folder, target)
    thread.join(10)
    assert target.starts == 2
    assert reports == [{"ok": True, "notices": ["warning: start 1 said this"]}]
    assert target.heard is None  # heard only while the first start ran


def test_a_failed_first_starts_notices_come_with_its_error() -> None:
    folder = new_instance("no")
    _m, thread, reports = run_monitor(folder, SayingTarget([TargetUnavailable("no qemu")]))
    thread.join(5)
    assert reports == [
        {
            "ok": False,
            "error": "no qemu",
            "exit_status": 2,
            "notices": ["warning: start 1 said this"],
        }
    ]


def test_an_attached_monitor_reports_no_notices(tmp_path: Path) -> None:
    """A foreground run's target says its notices on the terminal itself: not twice."""
    folder = new_instance("no")
    target = SayingTarget([0])
    reports: list[dict[str, Any]] = []
    Monitor(folder, target, reports.append, attached=True).run()
    assert reports == [{"ok": True}] and target.starts == 1


def test_the_cli_prints_a_reports_notices_before_it_returns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What `summon run -d` and `summon start` do with the report: its notices on stderr, as
    summon's own lines, control characters shown (a line may quote QEMU's stderr)."""
    import json

    from summon.instances import lifecycle

    folder = new_instance("no")
    read_end, write_end = os.pipe()
    report = {"ok": True, "notices": ["warning: snapshot ab: refused\x1b[2J; booting instead"]}
    os.write(write_end, json.dumps(report).encode() + b"\n")
    os.close(write_end)
    lifecycle._await_start(folder, read_end)
    assert capsys.readouterr().err == (
        "summon: warning: snapshot ab: refused\\x1b[2J; booting instead\n"
    )
