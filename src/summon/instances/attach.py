"""A foreground run: the CLI waits on an attached instance's tree, and turns its signals into stops.

The instance runs under the same monitor as a detached one (tree.py); the CLI is only the
terminal's end of it. The first Ctrl-C (or SIGTERM, SIGHUP) asks the monitor to stop the app
with the usual grace period; a second one means now: the monitor is killed, and init takes
everything down and clears up. The exit status is the app's (128+N when a signal ended it),
or tree.NO_STATUS when none was recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

from summon.instances import lifecycle
from summon.instances.lifecycle import Started

STOP_GRACE = 10.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def wait_attached(started: Started, grace: float = STOP_GRACE) -> int:
    """Wait for an attached instance to end; its exit status. Call on the main thread."""
    folder = started.folder
    received = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received == 1:
            stopper = threading.Thread(
                target=lambda: _quietly(lifecycle.stop, folder, grace), daemon=True
            )
            stopper.start()
        else:
            _quietly(lifecycle.kill, folder)

    old = {s: signal.signal(s, on_signal) for s in _SIGNALS}
    try:
        _, status = os.waitpid(started.launcher, 0)  # retried after each handler (PEP 475)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + 9


def _quietly(action: object, *args: object) -> None:
    with contextlib.suppress(Exception):
        action(*args)  # type: ignore[operator]
