"""Tiered idle: what an idle service becomes, and after how long without a connection.

    up ──freeze_after──▶ frozen ──snapshot_after──▶ snapshotted ──idle_timeout──▶ down

- frozen: the instance's CPU stops and its memory stays (Instance.freeze, capability FREEZE:
  the sandbox's cgroup freezer, a stopped QEMU); a connection thaws it in milliseconds;
- snapshotted: the instance's state is in a snapshot on disk and the instance is stopped,
  its memory released (Instance.snapshot names the snapshot, capability SNAPSHOT); a
  connection starts it again, which restores the snapshot rather than booting;
- down: stopped; a connection boots it.

Each tier is taken only if its timeout is set in the service's config (config.py checks
that the target can) and only in this order; idle time counts from the last connection, so
a service idle for longer than several timeouts goes straight to the deepest one due. This
table is the one place the order and the keys are spelled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from summon.targets.base import FREEZE, SNAPSHOT

UP = "up"
FROZEN = "frozen"
SNAPSHOTTED = "snapshotted"
DOWN = "down"

# (tier, config key of its timeout, the capability its target needs; None: any target)
TIERS: tuple[tuple[str, str, str | None], ...] = (
    (FROZEN, "freeze_after", FREEZE),
    (SNAPSHOTTED, "snapshot_after", SNAPSHOT),
    (DOWN, "idle_timeout", None),
)
DEPTH = {UP: 0, **{tier: i + 1 for i, (tier, _key, _cap) in enumerate(TIERS)}}


@dataclass(frozen=True)
class Ladder:
    """The tiers one service takes, each with its timeout (seconds idle), shallowest first."""

    steps: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, timeouts: dict[str, float | None]) -> Ladder:
        """From config keys to timeouts (None or missing: the tier is not taken)."""
        steps = []
        for tier, key, _capability in TIERS:
            after = timeouts.get(key)
            if after is not None:
                steps.append((tier, after))
        return cls(tuple(steps))

    def due(self, current: str, idle: float, skip: tuple[str, ...] = ()) -> str | None:
        """The deepest tier idle seconds call for that is deeper than current (and not in
        skip: tiers that failed for this instance); None if none is."""
        found = None
        for tier, after in self.steps:
            if idle >= after and DEPTH[tier] > DEPTH.get(current, 0) and tier not in skip:
                found = tier
        return found

    def timeouts(self) -> dict[str, float]:
        return dict(self.steps)


def kill_pending(pid: int) -> bool:
    """Whether a SIGKILL waits for process pid (a frozen task's: it dies when it next runs),
    from /proc/PID/status; False when that cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return False
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("SigPnd", "ShdPnd"):
            with contextlib.suppress(ValueError):
                if int(value.strip(), 16) & (1 << (9 - 1)):  # SIGKILL is signal 9
                    return True
    return False
