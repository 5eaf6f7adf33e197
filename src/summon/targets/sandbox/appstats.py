"""The app's own figures, asked from a sandboxed instance: SIGQUIT, then a file in its /tmp.

The runtime writes them (summon.runtime.stats) to STATS_PATH inside the container when it
gets SIGQUIT, and only then; summon reads the file through /proc/PID/root and waits for a
line newer than the one there before (its seq figure).
"""

from __future__ import annotations

import os
import signal
import time

from summon.runtime.stats import parse
from summon.targets.sandbox.procroot import read_file

STATS_PATH = "/tmp/summon-stats"  # in the container: its /tmp tmpfs
MAX_STATS = 4096  # one line of figures is about 120 bytes
_POLL = 0.002


def _read(pid: int) -> dict[str, float]:
    """The figures the file holds; {} for none, or for anything but a small regular file (the
    app may put a link there: procroot.py)."""
    data = read_file(pid, STATS_PATH, MAX_STATS)
    return {} if data is None else parse(data.decode("utf-8", "replace"))


def ask(pid: int, timeout: float) -> dict[str, float]:
    """The app's figures now; {} if it did not answer within timeout (not started yet, busy
    in one long call, frozen, or an app that took SIGQUIT for itself)."""
    before = _read(pid).get("seq")
    try:
        os.kill(pid, signal.SIGQUIT)
    except OSError:
        return {}
    deadline = time.monotonic() + timeout
    while True:
        figures = _read(pid)
        if figures and figures.get("seq") != before:
            return figures
        if time.monotonic() > deadline:
            return {}
        time.sleep(_POLL)
