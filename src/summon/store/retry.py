"""A registry's "too many requests" (429) and "unavailable" (503): waited out, within bounds.

The request is sent again after the wait the registry asks for in Retry-After (seconds, or an
HTTP date), else after 1, 2, then 4 seconds; at most MAX_TRIES times in all and TOTAL_WAIT
seconds of waiting. A registry that asks for a longer wait than MAX_WAIT is not waited on:
the user is told at once how long it asked for, rather than left looking at a silent command.
Each wait is said on a line of its own, as it starts.
"""

from __future__ import annotations

import email.utils
import math
import sys
import time
from collections.abc import Callable

from summon.store.reference import RegistryError

RETRIED = {429: "too many requests", 503: "service unavailable"}
MAX_TRIES = 4  # the first try and three more
MAX_WAIT = 60.0  # seconds: a Retry-After longer than this fails at once
TOTAL_WAIT = 120.0  # seconds of waiting in all, for one request
BACKOFF = (1.0, 2.0, 4.0)  # without Retry-After: the waits before the second, third... try

Notice = Callable[[str], None]


def stderr_notice(line: str) -> None:
    print(f"summon: {line}", file=sys.stderr, flush=True)


def retry_after(value: str | None, now: float) -> float | None:
    """The seconds a Retry-After header asks for (delay-seconds or an HTTP date, RFC 9110
    10.2.3); None when there is none or it is neither."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is read so too
        return None
    return max(when.timestamp() - now, 0.0)


class Retries:
    """The tries of one request: after each reply, again() says whether to send it again
    (having waited) or to use the reply, and raises when the registry asks too much."""

    def __init__(
        self,
        registry: str,
        what: str,
        notice: Notice = stderr_notice,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.what = what
        self.notice = notice
        self.sleep = sleep
        self.clock = clock
        self.tries = 1
        self.waited = 0.0

    def again(self, status: int, retry_after_header: str | None) -> bool:
        if status not in RETRIED:
            return False
        answered = f"registry {self.registry} answered {status} ({RETRIED[status]})"
        asked = retry_after(retry_after_header, self.clock())
        if asked is not None and asked > MAX_WAIT:
            raise RegistryError(
                f"{answered} while {self.what} and asks to wait {_seconds(asked)}, longer than "
                f"summon waits ({_seconds(MAX_WAIT)}); try again later"
            )
        if self.tries >= MAX_TRIES:
            raise RegistryError(
                f"{answered} while {self.what}, {self.tries} times over "
                f"{_seconds(self.waited)}; try again later"
            )
        wait = asked if asked is not None else BACKOFF[min(self.tries - 1, len(BACKOFF) - 1)]
        if self.waited + wait > TOTAL_WAIT:
            raise RegistryError(
                f"{answered} while {self.what}, {self.tries} times; waiting "
                f"{_seconds(wait)} more would pass {_seconds(TOTAL_WAIT)} in all; "
                "try again later"
            )
        self.tries += 1
        self.notice(
            f"{answered} while {self.what}: trying again in {_seconds(wait)} "
            f"(try {self.tries} of {MAX_TRIES})"
        )
        self.sleep(wait)
        self.waited += wait
        return True


def _seconds(s: float) -> str:
    return f"{math.ceil(s)}s" if s <= 300 else f"{math.ceil(s / 60)} minutes"
