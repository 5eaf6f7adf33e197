"""Freezing a container through its cgroup: its processes stop where they are, memory stays.

cgroup v1's freezer (freezer.state: FROZEN / THAWED; FREEZING while the kernel gets every
task to stop) or cgroup v2's cgroup.freeze (1 / 0; cgroup.events says "frozen 1" once
done). Written directly rather than through `runc pause`/`resume`: starting runc takes
milliseconds, a write to the cgroup file microseconds, and a thaw is on the path of the
request that woke the instance. runc's own commands still work on the container (they read
the same files).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from summon.errors import SummonError
from summon.targets.sandbox.cgroups import cgroup_mounts

FREEZE_TIMEOUT = 5.0  # seconds for every task to stop (one in a long system call may delay)
_POLL = 0.001


class FreezeFailed(SummonError):
    """The container's tasks did not all stop in time; it has been thawed again."""


def _files(cgroup: str) -> tuple[Path, str, str, Path | None, str] | None:
    """(file, frozen value, thawed value, events file, frozen line) for the cgroup."""
    mounts = cgroup_mounts()
    rel = cgroup.lstrip("/")
    if "freezer" in mounts:
        state = mounts["freezer"] / rel / "freezer.state"
        return state, "FROZEN", "THAWED", None, "FROZEN"
    if "unified" in mounts and (mounts["unified"] / rel / "cgroup.freeze").exists():
        folder = mounts["unified"] / rel
        return folder / "cgroup.freeze", "1", "0", folder / "cgroup.events", "frozen 1"
    return None


def freeze(cgroup: str, timeout: float = FREEZE_TIMEOUT) -> None:
    """Stop every task of the cgroup; return once all have stopped (FreezeFailed if not)."""
    files = _files(cgroup)
    if files is None:
        raise FreezeFailed(f"no freezer for cgroup {cgroup}: mount cgroup v1's freezer or use v2")
    path, frozen, thawed, events, done = files
    path.write_text(frozen)
    check = events if events is not None else path
    deadline = time.monotonic() + timeout
    while done not in check.read_text().splitlines():
        if time.monotonic() > deadline:
            path.write_text(thawed)
            raise FreezeFailed(f"cgroup {cgroup} did not freeze within {timeout:g}s")
        time.sleep(_POLL)


def thaw(cgroup: str) -> None:
    """Let the cgroup's tasks run again (at once: the kernel wakes them as it returns)."""
    files = _files(cgroup)
    if files is not None:
        with contextlib.suppress(FileNotFoundError):  # the container is gone: nothing frozen
            files[0].write_text(files[2])


def is_frozen(cgroup: str) -> bool:
    files = _files(cgroup)
    if files is None:
        return False
    path, _frozen, _thawed, events, done = files
    try:
        return done in (events if events is not None else path).read_text().splitlines()
    except OSError:
        return False
