"""Recording which syscalls an image makes: run it under the recording profile and listen.

runc 1.1 refuses SCMP_ACT_NOTIFY as a profile's default action, and seccomp's log action is
rate-limited and host-wide, so the recording profile (seccomp.profile(record=True)) names
every call of the ceiling explicitly: the base set is allowed outright (runc's init calls it
before summon's gate holds the notify fd, and must not wait on a gate that is not there yet),
every other call is handed to the gate (gate.py), which notes its name and lets it through
(SECCOMP_USER_NOTIF_FLAG_CONTINUE). What the instance never calls stays unnoted.

The ceiling is the static allowlist plus the calls a manifest adds, so a recording run is
held as tightly as an instance of an image without a recorded list: the derived list can only
narrow what such an image could do, never widen it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from summon import targets
from summon.instances import scratch
from summon.targets.base import RunSpec
from summon.targets.sandbox import seccomp
from summon.targets.sandbox.instance import SandboxInstance

Drive = Callable[[SandboxInstance], None]


class Recordable(Protocol):
    """The sandbox target (found through the registry: the build imports this module)."""

    def start(self, spec: RunSpec, *, record: bool = False) -> SandboxInstance: ...


@dataclass(frozen=True)
class Recording:
    """What one recording run saw."""

    syscalls: frozenset[str]  # the calls the gate let through (the base set is never seen)
    status: int  # the instance's exit status (128+15 if it was stopped with SIGTERM)
    refused: dict[str, int]  # what the gate refused even so (other socket families, execs)
    network: str = "socket"

    def allowlist(self, extra: Collection[str] = ()) -> frozenset[str]:
        """The image's derived allowlist: the base set, what was seen, the manifest's extra."""
        return seccomp.derived_allowlist(self.syscalls, extra, self.network)


def record_syscalls(
    spec: RunSpec,
    drive: Drive,
    *,
    extra: Collection[str] = (),
    target: Recordable | None = None,
    grace: float = 5.0,
) -> Recording:
    """Start spec in the sandbox under the recording profile, drive it, stop it, report.

    drive(instance) exercises the running instance and returns when it has seen enough (it
    may wait for the app to exit on its own); the instance is then stopped (SIGTERM, so the
    runtime's shutdown is recorded too; SIGKILL after `grace` seconds). extra names calls
    beyond the static allowlist the app may make (the manifest's `syscalls`).
    """
    if target is None:
        target = targets.get("sandbox")  # type: ignore[assignment]
    assert target is not None
    names = seccomp.check_names(extra)
    run = dataclasses.replace(spec, syscalls=tuple(names))
    # Leased: a build killed outright leaves this run to the next build to release.
    with scratch.lease("sandbox", run, remove=spec.state_dir):
        instance = target.start(run, record=True)
        try:
            drive(instance)
        finally:
            status = instance.stop(grace=grace)
    gate = instance.gate
    assert gate is not None  # _start made it before runc ran
    return Recording(frozenset(gate.recorded), status, dict(gate.refused), spec.network)
