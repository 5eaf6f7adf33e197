"""The monitor of one instance: owns the target Instance for its whole life.

It starts the instance (with the console on a pipe it copies into logs/console.log, or, for an
attached run, on the terminal summon was started from), waits for it, applies the restart
policy with backoff, answers `stop` and `stats` on its control socket, and records every
transition in state.json. tree.py makes the process it runs in. It tells whoever started it
how the first start went through a report callback: {"ok": true} or {"ok": false, "error":
"...", "exit_status": N}, with "notices": [...] when the target said lines of its own while
it started (Target.hear_notices; a detached run's only, which `summon run -d` prints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from summon.errors import SummonError
from summon.instances.console import ConsoleLog
from summon.instances.control import ControlServer
from summon.instances.restart import STEADY_SECONDS, RestartPolicy, backoff
from summon.instances.state import InstanceFolder, now
from summon.targets.base import Instance, RunSpec, Target

DEFAULT_GRACE = 10.0
_TARGET_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")

Report = Callable[[dict[str, Any]], None]


# Where log() writes: logs/monitor.log. A detached monitor's stderr is that file already; an
# attached one keeps the terminal as stderr (a target's notices are for the user) and tree.py
# points this at the file.
log_stream: IO[str] | None = None


def log(message: str) -> None:
    """A line in logs/monitor.log (none on a full disk: the monitor must go on)."""
    with contextlib.suppress(OSError):
        print(f"{now()} {message}", file=log_stream or sys.stderr, flush=True)


class Monitor:
    """Owns one instance for its whole life: start, wait, restart per policy, stop, record.

    The target is started on the thread that calls run(), which must live as long as the
    monitor: targets tie their children's PR_SET_PDEATHSIG to the thread that forked them.
    """

    def __init__(
        self,
        folder: InstanceFolder,
        target: Target,
        report: Report = lambda message: None,
        host_pid: Callable[[int], int | None] = lambda pid: pid,
        attached: bool = False,
    ) -> None:
        """attached: the app's console is the terminal the monitor inherited, not a log."""
        self.folder = folder
        self.target = target
        self.spec = folder.spec()
        self.policy = RestartPolicy.parse(str(self.spec.get("restart", "no")))
        self.state = folder.state()
        self._report = report
        self._host_pid = host_pid
        self._attached = attached
        self._grace = float(self.spec.get("stop_grace", DEFAULT_GRACE))
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._instance: Instance | None = None

    # --- asked from other threads ----------------------------------------------------------

    def request_stop(self, grace: float | None = None) -> None:
        if grace is not None and not self._stop.is_set():
            self._grace = max(grace, 0.0)
        self._stop.set()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control request (control.py): stats or stop."""
        op = request.get("op")
        if op == "stats":
            with self._lock:
                instance = self._instance
            if instance is None:
                return {"ok": True, "running": False}
            stats = instance.stats()
            return {
                "ok": True,
                "running": True,
                "memory_bytes": stats.memory_bytes,
                "memory_limit": stats.memory_limit,
                "cpu_seconds": stats.cpu_seconds,
                "network": dict(stats.network),
                # The app's own figures (GC, blocks, connections...), asked of it now.
                "runtime": instance.runtime_stats(),
                "clock": time.monotonic(),
            }
        if op == "stop":
            grace = request.get("grace")
            self.request_stop(float(grace) if isinstance(grace, int | float) else None)
            self._done.wait()
            return {"ok": True, "exit_code": self.state.get("exit_code")}
        return {"ok": False, "error": f"unknown request {op!r}"}

    # --- the monitor's own thread ---------------------------------------------------------

    def run(self) -> None:
        server = ControlServer(self.folder.path, self.handle)
        if self._attached:
            try:
                self._supervise(None)
            finally:
                self._done.set()
                server.close()
            return
        console = ConsoleLog(self.folder.logs)
        read_end, write_end = os.pipe()
        pump = console.pump(read_end)
        try:
            self._say_notices(write_end)
            self._supervise(write_end)
        finally:
            self._done.set()
            os.close(write_end)
            server.close()
            pump.join(2)  # the app and its children are gone: the pipe drains and ends
            console.close()

    def _say_notices(self, console_fd: int) -> None:
        """The warnings `summon run -d` printed before the instance existed (lifecycle.start's
        notices), on its console ahead of the app's output: `summon logs` shows them too."""
        notices = self.spec.get("notices")
        if not isinstance(notices, list):
            return
        text = "".join(f"summon: {line}\n" for line in notices if isinstance(line, str))
        with contextlib.suppress(OSError):
            os.write(console_fd, text.encode(errors="replace"))

    def _record(self, **changes: Any) -> None:
        self.state.update(changes)
        try:
            self.folder.write_state(self.state)
        except OSError as e:
            # A full disk must not take the instance down with its monitor: the state stays
            # here, and the next record that can be written brings the file up to date.
            log(f"cannot record the state ({e.strerror or e}); kept until it can be")

    def _finish(self, exit_code: int | None, reason: str) -> None:
        self._record(
            status="exited", exit_code=exit_code, reason=reason, finished_at=now(), pid=None
        )
        log(f"exited: {reason} (exit status {exit_code})")

    def _supervise(self, console_fd: int | None) -> None:
        # restarts counts the restarts made, as `ps` shows them: a stop during the backoff
        # leaves it where it was.
        restarts = int(self.state.get("restarts") or 0)
        quick_runs = 0
        first = True
        while True:
            began = time.monotonic()
            spec = dataclasses.replace(self.folder.run_spec(), stdout=console_fd)
            # What the target says while it starts (a snapshot refused, saved or not): on the
            # terminal of an attached run already; `run -d` prints it from the report.
            said: list[str] = []
            try:
                instance = self._start(spec, said if first and not self._attached else None)
            except Exception as e:
                message = str(e) or type(e).__name__
                if not isinstance(e, SummonError):
                    traceback.print_exc()
                if first:
                    self._finish(None, f"start failed: {message}")
                    status = e.exit_status if isinstance(e, SummonError) else 1
                    self._report(
                        {"ok": False, "error": message, "exit_status": status, **_told(said)}
                    )
                    return
                code: int | None = None
                reason = f"restart failed: {message}"
                log(reason)
            else:
                with self._lock:
                    self._instance = instance
                self._record(
                    status="running",
                    pid=self._host_pid(instance.pid),
                    restarts=restarts,
                    started_at=now(),
                    finished_at=None,
                    exit_code=None,
                    reason="",
                )
                log(f"running: pid {self.state['pid']}")
                if first:
                    self._report({"ok": True, **_told(said)})
                code = self._wait(instance)
                with self._lock:
                    self._instance = None
                reason = instance.exit_reason() or "exited"
                if reason != "exited":
                    log(reason)
            first = False
            if self._stop.is_set():
                self._finish(code, "stopped")
                return
            quick_runs = 0 if time.monotonic() - began >= STEADY_SECONDS else quick_runs + 1
            if not self.policy.should_restart(code, restarts):
                self._finish(code, reason)
                return
            delay = backoff(quick_runs)
            self._record(
                status="restarting",
                restarts=restarts,
                exit_code=code,
                finished_at=now(),
                pid=None,
                reason=reason,
            )
            log(f"restarting in {delay:.1f}s (exit status {code})")
            if self._stop.wait(delay):
                self._finish(code, "stopped")
                return
            restarts += 1
            self.state["restarts"] = restarts  # written with the next transition

    def _start(self, spec: RunSpec, said: list[str] | None) -> Instance:
        """The target's start of spec; said (if given) gets what the target says meanwhile."""
        if said is None:
            return self.target.start(spec)
        self.target.hear_notices(said.append)
        try:
            return self.target.start(spec)
        finally:
            self.target.hear_notices(None)

    def _wait(self, instance: Instance) -> int:
        while not self._stop.is_set():
            code = instance.wait(0.2)
            if code is not None:
                # The app is gone; stop() releases what the target still holds for it.
                instance.stop(0)
                return code
        log(f"stopping (grace {self._grace:g}s)")
        return instance.stop(self._grace)


def _told(said: list[str]) -> dict[str, Any]:
    """The report's notices (the target's lines of the first start), if it said any."""
    return {"notices": list(said)} if said else {}
