"""The monitor of one detached instance: `python -m summon.instances.monitor ID`.

Started by `summon run -d`, it becomes the process tree supervise.py describes (launcher,
init, monitor). The monitor owns the target Instance: it starts it (with the console on a
pipe it copies into logs/console.log), waits for it, applies the restart policy with
backoff, answers `stop` and `stats` on its control socket, and records every transition in
state.json. It tells the CLI how the first start went on the --ready-fd pipe, one JSON line:
{"ok": true} or {"ok": false, "error": "...", "exit_status": N}.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from summon.errors import SummonError, UserError
from summon.instances import supervise
from summon.instances.console import ConsoleLog
from summon.instances.control import ControlServer
from summon.instances.restart import STEADY_SECONDS, RestartPolicy, backoff
from summon.instances.state import InstanceFolder, now, root
from summon.targets.base import Instance, Target

DEFAULT_GRACE = 10.0
_TARGET_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Report = Callable[[dict[str, Any]], None]


def target_for(name: str, options: dict[str, Any] | None = None) -> Target:
    """The Target called name, made with options (constructor keywords, such as accel)."""
    if not _TARGET_NAME.match(name):
        raise UserError(f"unknown target {name!r}")
    try:
        module = importlib.import_module(f"summon.targets.{name}")
    except ImportError:
        raise UserError(f"unknown target {name!r}") from None
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Target)
            and getattr(value, "name", None) == name
        ):
            target: Target = value(**(options or {}))
            return target
    raise UserError(f"unknown target {name!r}")


def log(message: str) -> None:
    """A line in logs/monitor.log (the monitor's stderr)."""
    print(f"{now()} {message}", file=sys.stderr, flush=True)


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
    ) -> None:
        self.folder = folder
        self.target = target
        self.spec = folder.spec()
        self.policy = RestartPolicy.parse(str(self.spec.get("restart", "no")))
        self.state = folder.state()
        self._report = report
        self._host_pid = host_pid
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
                "cpu_seconds": stats.cpu_seconds,
                "network": dict(stats.network),
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
        console = ConsoleLog(self.folder.logs)
        read_end, write_end = os.pipe()
        pump = console.pump(read_end)
        server = ControlServer(self.folder.path, self.handle)
        try:
            self._supervise(write_end)
        finally:
            self._done.set()
            os.close(write_end)
            server.close()
            pump.join(2)  # the app and its children are gone: the pipe drains and ends
            console.close()

    def _record(self, **changes: Any) -> None:
        self.state.update(changes)
        self.folder.write_state(self.state)

    def _finish(self, exit_code: int | None, reason: str) -> None:
        self._record(
            status="exited", exit_code=exit_code, reason=reason, finished_at=now(), pid=None
        )
        log(f"exited: {reason} (exit status {exit_code})")

    def _supervise(self, console_fd: int) -> None:
        # restarts counts the restarts made, as `ps` shows them: a stop during the backoff
        # leaves it where it was.
        restarts = int(self.state.get("restarts") or 0)
        quick_runs = 0
        first = True
        while True:
            began = time.monotonic()
            spec = dataclasses.replace(self.folder.run_spec(), stdout=console_fd)
            try:
                instance = self.target.start(spec)
            except Exception as e:
                message = str(e) or type(e).__name__
                if not isinstance(e, SummonError):
                    traceback.print_exc()
                if first:
                    self._finish(None, f"start failed: {message}")
                    status = e.exit_status if isinstance(e, SummonError) else 1
                    self._report({"ok": False, "error": message, "exit_status": status})
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
                    self._report({"ok": True})
                code = self._wait(instance)
                with self._lock:
                    self._instance = None
                reason = "exited"
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

    def _wait(self, instance: Instance) -> int:
        while not self._stop.is_set():
            code = instance.wait(0.2)
            if code is not None:
                # The app is gone; stop() releases what the target still holds for it.
                instance.stop(0)
                return code
        log(f"stopping (grace {self._grace:g}s)")
        return instance.stop(self._grace)


# --- the process tree -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """The launcher: make the namespaces, fork init, and exit (the CLI waits for this)."""
    parser = argparse.ArgumentParser(prog="python -m summon.instances.monitor")
    parser.add_argument("id")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    args = parser.parse_args(argv)
    folder = InstanceFolder(root() / args.id)
    os.chdir(folder.path)
    in_namespace = supervise.enter_namespaces()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        os._exit(0)
    _init(folder, in_namespace, args.ready_fd, args.lock_fd)


def _init(folder: InstanceFolder, in_namespace: bool, ready_fd: int, lock_fd: int) -> NoReturn:
    """Pid 1 of the instance's namespace: fork the monitor, reap, and clear up after it."""
    host_proc = supervise.open_proc()  # the host's procfs, still on /proc for a moment
    init_pid = supervise.own_pid(host_proc)
    init_start = supervise.start_time(init_pid)
    if in_namespace:
        supervise.mount_proc()
    supervise.set_child_subreaper()
    os.set_inheritable(lock_fd, False)  # the lock lives as long as init and monitor, no more
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # Only SIGKILL ends init; as pid 1 it ignores the rest anyway, and outside a pid
        # namespace this keeps a stray signal from taking the safety net away.
        signal.signal(sig, signal.SIG_IGN)
    monitor_pid = os.fork()
    if monitor_pid == 0:
        _monitor_process(folder, ready_fd, host_proc, init_pid, init_start, in_namespace)
    os.close(ready_fd)  # so the CLI sees EOF if the monitor dies before it reports
    status = _reap_until(monitor_pid)
    died = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    reason = _death(status)
    if died:
        log(reason)
    supervise.kill_descendants()
    try:
        spec = folder.spec()
        if died:
            with contextlib.suppress(Exception):
                target_for(str(spec["target"]), spec.get("target_options")).clean_up(
                    folder.run_spec()
                )
            if folder.state()["status"] != "exited":
                folder.update_state(status="exited", reason=reason, finished_at=now(), pid=None)
        if spec.get("remove"):
            from summon.instances.state import remove

            remove(folder)
    except Exception:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(0)


def _reap_until(monitor_pid: int) -> int:
    """Reap every child (orphans come to init) until the monitor exits; its wait status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == monitor_pid:
            return status


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"monitor died (killed by {signal.Signals(sig).name})"
        return f"monitor died (killed by signal {sig})"
    return f"monitor died (exit status {os.WEXITSTATUS(status)}; see logs/monitor.log)"


def _monitor_process(
    folder: InstanceFolder,
    ready_fd: int,
    host_proc: int,
    init_pid: int,
    init_start: int | None,
    in_namespace: bool,
) -> NoReturn:
    """The monitor, forked by init: record who we are, then Monitor.run()."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        monitor_pid = supervise.own_pid(host_proc)
        reported = False

        def report(message: dict[str, Any]) -> None:
            nonlocal reported
            if not reported:
                reported = True
                with contextlib.suppress(OSError):
                    os.write(ready_fd, json.dumps(message).encode() + b"\n")
                os.close(ready_fd)

        def host_pid(pid: int) -> int | None:
            if not in_namespace:
                return pid
            return supervise.host_pid(host_proc, monitor_pid, pid)

        folder.update_state(
            monitor_pid=monitor_pid,
            monitor_start=supervise.start_time(monitor_pid, supervise.fd_path(host_proc)),
            init_pid=init_pid,
            init_start=init_start,
            pid_namespace=in_namespace,
        )
        log(f"monitor {monitor_pid} (init {init_pid}, own pid namespace: {in_namespace})")
        spec = folder.spec()
        try:
            target = target_for(str(spec["target"]), spec.get("target_options"))
        except UserError as e:
            folder.update_state(status="exited", reason=f"start failed: {e}", finished_at=now())
            report({"ok": False, "error": str(e), "exit_status": e.exit_status})
            _exit(0)
        monitor = Monitor(folder, target, report, host_pid)

        def on_term(signum: int, frame: FrameType | None) -> None:
            monitor.request_stop()

        signal.signal(signal.SIGTERM, on_term)
        # No terminal, no session of ours to hang up: these mean nothing to a monitor.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        monitor.run()
        code = 0
    except BaseException:
        traceback.print_exc()
    _exit(code)


def _exit(code: int) -> NoReturn:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
