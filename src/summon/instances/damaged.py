"""`summon rm -f` of an instance whose spec.json cannot be read (state.DamagedInstance).

Nothing here reads the spec. The monitor has its own copy in memory: asked over its control
socket it stops the app and releases everything as it always does. A monitor that cannot be
asked is killed by the pids of state.json, or else as whichever processes hold the
instance's lock. What a target made outside the folder is found by the one thing the spec
was never needed for, the instance's short ID (its runc container, its netns); each thing
still there afterwards is named to the user rather than forgotten.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from summon import targets
from summon.errors import UserError
from summon.instances import lifecycle, state
from summon.instances.state import InstanceFolder
from summon.targets.base import RunSpec


def remove(folder: InstanceFolder, force: bool) -> list[str]:
    """Stop (with force) and remove a damaged instance; what could not be cleaned up."""
    if folder.supervised():
        if not force:
            raise UserError(
                f"instance {folder.short_id} is damaged ({folder.spec_path} cannot be read) "
                f"and still running: `summon rm -f {folder.short_id}` stops it and removes it"
            )
        _stop(folder)
    left: list[str] = []
    run = RunSpec(name=folder.short_id, image="", rootfs=Path(), app_config={},
                  state_dir=folder.path)  # fmt: skip
    # Which target ran it is in the damaged spec: each target's leftovers are looked for by
    # the short ID, which only this instance ever had.
    for name in targets.names():
        with contextlib.suppress(Exception):
            target = targets.get(name)
            target.clean_up(run)
            left += target.leftovers(run)
    mounts = _mounts_under(folder.path)
    if mounts:
        # Deleting the folder would delete what is mounted in it: it stays, and says why.
        left += [f"a mount at {where}" for where in mounts]
        return left
    state.remove(folder)
    return left


def _stop(folder: InstanceFolder) -> None:
    """Stop the instance's monitor and init, however much of state.json can be read."""
    reply = lifecycle._ask_to_stop(folder, 0.0)
    if reply.get("ok") and lifecycle._wait_unsupervised(folder, lifecycle.SETTLE_SECONDS):
        return
    lifecycle.kill(folder)
    if not folder.supervised():
        return
    # Another summon command checks the lock by opening it for a moment: only a process
    # holding it still a little later is the instance's.
    first = _lock_holders(folder)
    time.sleep(0.2)
    for pid in set(first) & set(_lock_holders(folder)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not lifecycle._wait_unsupervised(folder, 5.0):
        raise UserError(f"instance {folder.short_id}: its monitor could not be stopped")


def _lock_holders(folder: InstanceFolder) -> list[int]:
    """The processes with the instance's monitor.lock open: its init and monitor."""
    lock = str(folder.lock_path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == lock for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return found


def _mounts_under(folder: Path) -> list[str]:
    """Mount points inside folder (a secrets tmpfs, an /etc file), from this mount namespace."""
    inside = []
    prefix = str(folder) + "/"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            where = line.split()[4].encode().decode("unicode_escape")
            if where.startswith(prefix) or where == str(folder):
                inside.append(where)
    return inside
