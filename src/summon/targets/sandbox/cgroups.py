"""cgroup figures of a container: memory, CPU and OOM kills, on cgroup v1 (hybrid) or v2; and
the kernel's cgroup-attach path kept warm while runc starts a container (attach_kept_fast)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# How often the warming thread moves this process into its own cgroup: well inside the kernel's
# window (one RCU grace period, several ms) in which the next move needs no new grace period.
WARM_INTERVAL = 0.001


def cgroup_mounts() -> dict[str, Path]:
    """Controller (or "unified") -> mount point, from /proc/self/mounts."""
    found: dict[str, Path] = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, where, fstype, options = line.split()[:4]
            if fstype == "cgroup2":
                found.setdefault("unified", Path(where))
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("memory", "pids", "cpuacct", "cpu", "freezer"):
                        found.setdefault(opt, Path(where))
    return found


def _read_stat(path: Path) -> dict[str, int]:
    try:
        pairs = (line.split() for line in path.read_text().splitlines())
        return {k: int(v) for k, v in pairs}
    except (OSError, ValueError):
        return {}


def memory_bytes(cgroup: str) -> int:
    mounts = cgroup_mounts()
    rel = cgroup.lstrip("/")
    if "memory" in mounts:  # v1: anonymous memory plus tmpfs, not the image's page cache
        stat = _read_stat(mounts["memory"] / rel / "memory.stat")
        return stat.get("total_rss", 0) + stat.get("total_shmem", 0)
    if "unified" in mounts:
        stat = _read_stat(mounts["unified"] / rel / "memory.stat")
        return stat.get("anon", 0) + stat.get("shmem", 0)
    return 0


def cpu_seconds(cgroup: str) -> float:
    mounts = cgroup_mounts()
    rel = cgroup.lstrip("/")
    with contextlib.suppress(OSError, ValueError):
        if "cpuacct" in mounts:
            return int((mounts["cpuacct"] / rel / "cpuacct.usage").read_text()) / 1e9
        if "unified" in mounts:
            return _read_stat(mounts["unified"] / rel / "cpu.stat").get("usage_usec", 0) / 1e6
    return 0.0


def oom_kills(cgroup: str) -> int:
    """How many processes the kernel's OOM killer took in the cgroup (which must still exist:
    read it before the container is deleted)."""
    mounts = cgroup_mounts()
    rel = cgroup.lstrip("/")
    if "memory" in mounts:  # v1: memory.oom_control has "oom_kill N" (Linux 4.13+)
        return _read_stat(mounts["memory"] / rel / "memory.oom_control").get("oom_kill", 0)
    if "unified" in mounts:
        return _read_stat(mounts["unified"] / rel / "memory.events").get("oom_kill", 0)
    return 0


def attach_seconds() -> float | None:
    """How long the kernel takes to move a process into a cgroup, as runc does once per
    start: a sleeping child moved into a fresh cgroup of its own, timed, then removed.

    On cgroup v1 and v2 alike the first move after a quiet spell waits out an RCU grace period
    (tens of ms on a VM) unless a hierarchy is mounted with favordynmods. None when this
    process cannot make cgroups (not root, no pids or unified hierarchy)."""
    mounts = cgroup_mounts()
    base = mounts.get("pids") or mounts.get("unified")
    if base is None or os.geteuid() != 0:
        return None
    probe = base / f"summon-attach-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return None
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only waits to be moved and killed
        try:
            while True:
                signal.pause()
        finally:
            os._exit(0)  # whatever interrupts it, never this process's code after the fork
    try:
        began = time.perf_counter()
        (probe / "cgroup.procs").write_text(str(child))
        return time.perf_counter() - began
    except OSError:
        return None
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        with contextlib.suppress(OSError):
            probe.rmdir()


def _own_procs() -> Path | None:
    """The cgroup.procs file of this process's own cgroup: in the unified hierarchy if one is
    mounted, else in the pids one. None when neither is found."""
    mounts = cgroup_mounts()
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if controllers == "" and "unified" in mounts:
            base = mounts["unified"]
        elif "pids" in controllers.split(",") and "pids" in mounts:
            base = mounts["pids"]
        else:
            continue
        procs = base / path.lstrip("/") / "cgroup.procs"
        if procs.exists():
            return procs
    return None


@contextlib.contextmanager
def attach_kept_fast(limit: float = 5.0) -> Iterator[None]:
    """While the body runs (at most limit seconds), keep moving this process into the cgroup
    it is already in: a move that changes nothing, made every WARM_INTERVAL.

    Every move of a process into a cgroup takes a lock whose first taking after a quiet spell
    waits out an RCU grace period (8-20 ms on this host; see attach_seconds), unless a
    hierarchy is mounted with favordynmods. runc makes one such move per start, late, with the
    app waiting on it. The first move here pays that wait while summon and runc do their other
    work; the later ones keep the lock's fast path open until runc's move is made. This is not a
    setting: nothing of the host's changes, and it lasts only while a container starts. Where
    this process may not write its cgroup (not root, a read-only cgroupfs), it does nothing."""
    procs = _own_procs() if os.geteuid() == 0 else None
    if procs is None:
        yield
        return
    done = threading.Event()

    def keep() -> None:
        end = time.monotonic() + limit
        try:
            while not done.is_set() and time.monotonic() < end:
                fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, b"0")  # 0: the writer's own process
                finally:
                    os.close(fd)
                done.wait(WARM_INTERVAL)
        except OSError:
            return  # not ours to write: the start goes on at its usual speed

    thread = threading.Thread(target=keep, name="summon-attach-warm", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(0.1)  # a move in flight ends within a grace period
