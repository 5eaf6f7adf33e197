"""The system calls that keep an instance from outliving its monitor (tree.py uses them).

With root, the launcher unshares a pid namespace and a mount namespace before it forks init.
When init dies, however it dies, the kernel SIGKILLs every process left in that namespace:
the app, runc, the container (its pid namespace nests in ours) and QEMU. When the monitor dies,
init notices (it is the monitor's parent), kills what is left and cleans up. So nothing the
monitor started can outlive it, whichever of the two is killed, and no target needs to know.

The mount namespace is there for one reason: a procfs of the new pid namespace on /proc, since
runc and the seccomp exec gate look pids they are given up in /proc. Mounts made in it (the
sandbox's netns bind mount too) stay in it, so they also vanish with the last process.

Without root (the unix target), init is a child subreaper instead: orphans of a dead monitor
come to it and it kills them; and the unix target's app carries PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import time
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REC = 0x4000
_MS_SLAVE = 1 << 19
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_namespaces() -> bool:
    """Unshare a pid and a mount namespace for the children to come; False where not allowed.

    Our own pid namespace does not change: the next child forked is pid 1 of the new one.
    """
    if os.geteuid() != 0:
        return False
    try:
        _check(_LIBC.unshare(_CLONE_NEWNS | _CLONE_NEWPID), "unshare")
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS):
            return False
        raise
    # Slave, not private: the host's later mounts still reach us, and ours never reach it.
    _check(_LIBC.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "mount --make-rslave /")
    return True


def mount_proc() -> None:
    """Mount a procfs of the calling process's pid namespace over /proc (in our mount ns)."""
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(_LIBC.mount(b"proc", b"/proc", b"proc", flags, None), "mount /proc")


def open_proc() -> int:
    """An fd on the /proc mounted now; keeps the host's procfs reachable after mount_proc()."""
    return os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def own_pid(proc_fd: int) -> int:
    """The caller's pid as the procfs behind proc_fd numbers it (the host's, for ours)."""
    return int(os.readlink("self", dir_fd=proc_fd))


def fd_path(proc_fd: int) -> Path:
    """A path to the procfs behind proc_fd, whichever procfs is on /proc now."""
    return Path(f"/proc/self/fd/{proc_fd}")


def die_with_parent(parent: int) -> None:
    """SIGKILL us when the thread that forked us dies; at once if parent is gone already.

    PR_SET_PDEATHSIG is tied to the forking thread, so the parent must fork from the thread
    that lives as long as it does (its main thread).
    """
    _check(_LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before we armed: nobody would kill us later
        os.kill(os.getpid(), signal.SIGKILL)


def set_child_subreaper() -> None:
    """Orphaned descendants come to us rather than to the host's init."""
    _check(_LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def _read(proc_fd: int, rel: str) -> str:
    fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        return os.read(fd, 65536).decode(errors="replace")
    finally:
        os.close(fd)


def children(pid: int | str = "self", proc: Path = Path("/proc")) -> list[int]:
    """Direct children of pid (every thread's), from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (proc / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    return found


def start_time(pid: int, proc: Path = Path("/proc")) -> int | None:
    """When pid started (clock ticks since boot): with the pid, names one process for good."""
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def host_pid(proc_fd: int, ancestor: int, ns_pid: int) -> int | None:
    """The host pid of a descendant of ancestor (a host pid) known to us as ns_pid.

    Walks ancestor's descendants in the host's procfs (proc_fd) and matches the second
    NSpid column: the pid in the namespace one level below the host's, which is ours.
    """
    todo = [ancestor]
    seen = 0
    while todo and seen < 4096:
        pid = todo.pop()
        seen += 1
        with contextlib.suppress(OSError, ValueError):
            for line in _read(proc_fd, f"{pid}/status").splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) > 1 and int(ids[1]) == ns_pid and pid != ancestor:
                        return pid
        todo.extend(_host_children(proc_fd, pid))
    return None


def _host_children(proc_fd: int, pid: int) -> list[int]:
    found: list[int] = []
    try:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        task_fd = os.open(f"{pid}/task", flags, dir_fd=proc_fd)
    except OSError:
        return found
    try:
        for tid in os.listdir(task_fd):
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(p) for p in _read(task_fd, f"{tid}/children").split())
    finally:
        os.close(task_fd)
    return found


def kill_descendants(deadline: float = 10.0) -> None:
    """SIGKILL every descendant and reap them all; for init, after the monitor is gone.

    Killing a parent hands its children to us (pid 1, or a subreaper), so this loops until
    nothing is left. Orphans are also reaped here, whatever their parent was.
    """
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for pid in children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)
