"""The server's own lines on the console ("summon: ..."), apart from the access log.

Its own module (no imports of the server's) so that the protocol layer can speak too.
"""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """One line from the server itself on stderr ("summon: ...")."""
    try:
        sys.stdout.flush()
        sys.stderr.write(f"summon: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


_said_body_limit = False


def say_body_limit(limit: int) -> None:
    """Once per process: a body over the limit was refused, and how to raise it (413 alone
    reads as the app's answer; bare servers take what the app reads)."""
    global _said_body_limit
    if _said_body_limit:
        return
    _said_body_limit = True
    size = f"{limit >> 20}M" if limit % (1 << 20) == 0 else f"{limit} bytes"
    say(
        f"a request body over {size} was refused with 413 (SUMMON_HTTP_MAX_BODY); to take "
        f"larger ones, run with -e SUMMON_HTTP_MAX_BODY=64M or set it in the manifest's env"
    )
