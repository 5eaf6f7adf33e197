"""The process tree of one instance: launcher, init and monitor, detached or attached.

    summon run [-d] (CLI)
      └─ launcher      detached: `python -m summon.instances.tree ID`, exits once init runs
                       attached: forked by the CLI, lives as long as init (it is its parent)
           init        pid 1 of a new pid namespace; reaps, and clears up after a death
             └─ monitor    owns the target Instance (monitor.py)
                  └─ runc / app / qemu ...

With root, the launcher unshares a pid namespace and a mount namespace before it forks init.
When init dies, however it dies, the kernel SIGKILLs every process left in that namespace
(the app, runc, the container, whose pid namespace nests in ours, and QEMU). When the monitor
dies, init kills what is left and cleans up. supervise.py has the system calls.

An attached instance (a foreground `summon run`) is tied to the CLI: the launcher dies with the
CLI and init with the launcher (PR_SET_PDEATHSIG, set by each on itself right after the fork,
which ties it to the forking thread: the main thread of a single-threaded parent), so a SIGKILL
of `summon run` takes the whole tree down within the kernel's own time. What a killed tree
leaves outside its processes (runc's record, a cgroup, the netns file, the bundle) is released
by the next summon command that reconciles the instance (lifecycle.reconcile_all).

Without root (the unix target) init is a child subreaper instead, and each process of the
chain carries PR_SET_PDEATHSIG, down to the app.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

from summon import targets
from summon.errors import UserError
from summon.instances import monitor as monitor_module
from summon.instances import supervise
from summon.instances.monitor import Monitor, log
from summon.instances.state import InstanceFolder, now, root

# Exit status of an attached launcher whose instance never recorded one (a start failure, a
# monitor that died): docker run's "the container could not be run".
NO_STATUS = 125


def launch(
    folder: InstanceFolder, ready_fd: int, lock_fd: int, attached: bool, parent: int = 0
) -> NoReturn:
    """The launcher, in a process of its own: namespaces, fork init, then exit or wait.

    attached: the launcher was forked by the CLI (pid parent) and dies with it.
    """
    if attached:
        supervise.die_with_parent(parent)
        # Ctrl-C, and a SIGTERM or SIGHUP sent to the whole process group (`timeout`, `kill
        # %1`, a closed terminal), are the CLI's to act on: by default they ended this process,
        # whose death SIGKILLs init and the monitor, and the app was never asked to stop.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    in_namespace = supervise.enter_namespaces()
    sys.stdout.flush()
    sys.stderr.flush()
    launcher = os.getpid()
    init_pid = os.fork()
    if init_pid == 0:
        if attached:
            supervise.die_with_parent(launcher)
        _init(folder, in_namespace, ready_fd, lock_fd, attached)
    if not attached:
        os._exit(0)
    os.close(ready_fd)
    os.close(lock_fd)
    _, status = os.waitpid(init_pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else NO_STATUS)


def _init(
    folder: InstanceFolder, in_namespace: bool, ready_fd: int, lock_fd: int, attached: bool
) -> NoReturn:
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
        supervise.die_with_parent(os.getppid())
        _monitor_process(folder, ready_fd, host_proc, init_pid, init_start, in_namespace, attached)
    os.close(ready_fd)  # so the CLI sees EOF if the monitor dies before it reports
    status = _reap_until(monitor_pid)
    died = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    reason = _death(status)
    if died:
        log(reason)
    supervise.kill_descendants()
    code = NO_STATUS
    try:
        spec = folder.spec()
        if died:
            with contextlib.suppress(Exception):
                target = targets.get(str(spec["target"]), **(spec.get("target_options") or {}))
                target.clean_up(folder.run_spec())
            if folder.state()["status"] != "exited":
                folder.update_state(status="exited", reason=reason, finished_at=now(), pid=None)
        recorded = folder.state().get("exit_code")
        if isinstance(recorded, int):
            code = recorded & 0xFF
        if spec.get("remove"):
            from summon.instances.state import remove

            # The CLI of a foreground run says an OOM kill from the instance's state, which
            # goes now: say it here (this process has the terminal's stderr too).
            why = str(folder.state().get("reason") or "")
            if attached and why.startswith("killed:"):
                print(f"summon: {folder.name} ({folder.short_id}) {why}", file=sys.stderr)
            remove(folder)
    except Exception:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(code)


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
    attached: bool,
) -> NoReturn:
    """The monitor, forked by init: record who we are, then Monitor.run()."""
    code = 1
    try:
        if attached:
            # The app's console and the target's notices stay on the terminal (inherited
            # fds 1 and 2); the monitor's own lines go to its log.
            monitor_module.log_stream = open(folder.logs / "monitor.log", "a", buffering=1)
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
            target = targets.get(str(spec["target"]), **(spec.get("target_options") or {}))
        except UserError as e:
            folder.update_state(status="exited", reason=f"start failed: {e}", finished_at=now())
            report({"ok": False, "error": str(e), "exit_status": e.exit_status})
            _exit(0)
        monitor = Monitor(folder, target, report, host_pid, attached=attached)

        def on_term(signum: int, frame: object) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """`python -m summon.instances.tree ID`: the launcher of a detached instance."""
    import argparse  # here: an attached run imports this module and never parses

    parser = argparse.ArgumentParser(prog="python -m summon.instances.tree")
    parser.add_argument("id")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    args = parser.parse_args(argv)
    folder = InstanceFolder(root() / args.id)
    os.chdir(folder.path)
    launch(folder, args.ready_fd, args.lock_fd, attached=False)


if __name__ == "__main__":
    main()
