"""Restart policies (`--restart no|on-failure[:N]|always`) and the backoff between attempts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from summon.errors import UserError

# A run at least this long clears the backoff: the app was up, not crash-looping.
STEADY_SECONDS = 10.0
FIRST_DELAY = 0.1
MAX_DELAY = 30.0

_POLICY = re.compile(r"^(no|always|on-failure)(?::(\d+))?\Z", re.ASCII)


@dataclass(frozen=True)
class RestartPolicy:
    mode: str = "no"  # "no" | "on-failure" | "always"
    max_restarts: int | None = None  # on-failure only; None: no limit

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        m = _POLICY.match(text)
        if not m:
            raise UserError(f"--restart {text}: expected no, on-failure, on-failure:N or always")
        mode, count = m[1], m[2]
        if count is not None and mode != "on-failure":
            raise UserError(f"--restart {text}: only on-failure takes a count (on-failure:N)")
        return cls(mode, int(count) if count is not None else None)

    def __str__(self) -> str:
        return self.mode if self.max_restarts is None else f"{self.mode}:{self.max_restarts}"

    def should_restart(self, exit_code: int | None, restarts: int) -> bool:
        """Whether to start again after a run that ended with exit_code (None: it never ran).

        restarts: how many restarts there were already. A stop asked for by the user is no
        exit to restart after; the caller does not ask then.
        """
        if self.mode == "always":
            return True
        if self.mode == "on-failure":
            failed = exit_code != 0
            return failed and (self.max_restarts is None or restarts < self.max_restarts)
        return False


def backoff(quick_failures: int) -> float:
    """Seconds to wait before the next start, after this many short runs in a row.

    Doubles from 0.1 s up to 30 s, so a crash loop costs little; a steady run resets it.
    """
    delay: float = FIRST_DELAY * 2.0 ** max(quick_failures - 1, 0)
    return min(delay, MAX_DELAY)
