"""runc started with summon's fds renumbered from 3 on, for --preserve-fds, without a shell.

runc passes its own fds 3, 4, ... into the container, so what the app is to find there (a
TAP, listening sockets, a gateway's channel) must have those numbers in runc. subprocess keeps
fds open but cannot renumber them; a shell can (`exec runc ... 3<&100`), at the cost of a
bash start in every sandbox start (about 1.2 ms here). os.posix_spawn's file actions do it in
the child between fork and exec: dup2 each fd to its number, stdout and stderr to the app's
console, a session of its own (setsid), SIGPIPE and SIGXFSZ back to their defaults as
subprocess does, then exec runc.

posix_spawn closes nothing else: fds this process made inheritable reach runc, which marks
every fd above the preserved ones close-on-exec before it execs the app (libcontainer's
CloseExecFrom), so they never reach the app. Python makes its fds non-inheritable anyway.

Spawned has the part of subprocess.Popen's interface the instance uses: pid, poll(), kill(),
wait(timeout) raising subprocess.TimeoutExpired, returncode (negative: killed by a signal).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time

FIRST_FD = 3  # runc's first preserved fd (SD_LISTEN_FDS_START)


class Spawned:
    """A child started by spawn(); waited for by one thread at a time."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _reap(self, flags: int, block: bool = False) -> int | None:
        """Its status if it has ended (waited for with `flags`). Only one thread waits at a
        time: unless `block`, a call while another thread waits returns what is known (a
        thread blocked in waitpid must not block another's poll(), which may be on its way
        to stopping the child), as Popen does."""
        if not self._lock.acquire(block):
            return self.returncode
        try:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, flags)
                except ChildProcessError:  # reaped elsewhere: nothing more to learn
                    pid, status = self.pid, 0
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        finally:
            self._lock.release()

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def kill(self) -> None:
        """SIGKILL it, unless it has been waited for (its pid may be another's by then; a
        thread blocked waiting for it holds no reaped status, so the pid is still its)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while (status := self._reap(0, block=True)) is None:
                pass
            return status
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while (status := self._reap(os.WNOHANG)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            delay = min(delay * 2, left, 0.05)
            time.sleep(delay)
        return status


def spawn(argv: list[str], fds: list[int], output: int | None, stdin: int | None = None) -> Spawned:
    """Start argv with fds[i] as its fd FIRST_FD + i, `output` (if given) as its stdout and
    stderr, `stdin` (if given; else inherited) as its stdin, in a new session. The fds stay
    open here (the caller closes them once it no longer needs them)."""
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if path is None:
        raise FileNotFoundError(f"{argv[0]}: not found on PATH")
    # Copies above every number moved to, so that no dup2 overwrites an fd still to be moved;
    # close-on-exec, so only the renumbered ones reach runc. The lowest free numbers above
    # those: a copy past the fd table's size (64 at first) makes the kernel grow the table,
    # and in a process with threads (the exec gate's) that waits out an RCU grace period,
    # 10-20 ms here, on every start.
    above = FIRST_FD + len(fds)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in fds]
    copies = list(high)
    try:
        # stdout and stderr first: `output` may itself have one of the numbers the fds
        # are moved to (a console file opened early is often fd 3).
        actions = []
        if output is not None:
            actions += [(os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
        if stdin is not None:  # from a copy of its own: it may be fd 1 or 2
            inp = fcntl.fcntl(stdin, fcntl.F_DUPFD_CLOEXEC, above)
            copies.append(inp)
            actions.append((os.POSIX_SPAWN_DUP2, inp, 0))
        actions += [(os.POSIX_SPAWN_DUP2, fd, FIRST_FD + i) for i, fd in enumerate(high)]
        # As subprocess's restore_signals: Python ignores SIGPIPE and SIGXFSZ; runc must not.
        default = (signal.SIGPIPE, signal.SIGXFSZ)
        pid = os.posix_spawn(
            path, argv, os.environ, file_actions=actions, setsid=True, setsigdef=default
        )
    finally:
        for fd in copies:
            os.close(fd)
    return Spawned(pid, argv)
