"""An app's last words: the last line of its console log that says why it ended.

Read when an app dies, on the gateway's event loop: only the log's tail (TAIL bytes), not
the whole of it (up to 10 MB, ~50 ms that every other service waited). The runtime's start
banner ("summon: serving the ASGI app ... on port 80") is no reason: an app that dies with
no words of its own showed it as its error ("app exited with status 3: summon: serving
..."); it is passed over, and with nothing else the error is the status alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from summon.instances.console import shown

TAIL = 8192  # bytes of the log read: a line longer than this shows its end
LONGEST = 300  # characters of the line shown
# What the runtime says on its way up (runtime/http/server.py, runtime/http/warmup.py).
_BANNER = re.compile(
    r"summon: (serving the \w+ app\b.* on port \d+.*|warm-up: GET .*before the seal)"
)


def last_line(log: Path) -> str:
    """The last line of log (or of its rotated-out part, log.1, when the log was just
    rotated) that is not the runtime's banner; "" if there is none."""
    for path in (log, log.with_name(log.name + ".1")):
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(size - TAIL, 0))
                tail = f.read(TAIL)
        except OSError:
            continue
        lines = tail.decode(errors="replace").splitlines()
        if size > TAIL and len(lines) > 1:
            lines = lines[1:]  # the first is cut
        for line in reversed(lines):
            line = line.strip()
            if line and not _BANNER.fullmatch(line):
                # The app's words, in the gateway's log (a terminal, often): escapes shown.
                return shown(line[:LONGEST])
        if size:
            return ""  # only the banner: not what the rotated-out part ended with
    return ""
