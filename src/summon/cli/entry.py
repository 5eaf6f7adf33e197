"""The console script's entry point: summon's command line, loaded behind a quiet Ctrl-C.

Loading the command line (click, the verb's modules) takes tens of milliseconds, and a
Ctrl-C then printed a Python traceback of whatever was being imported. Until it is loaded,
SIGINT ends summon as it does later (cli/main.py): one line, status 130. Nothing has started
by then, so there is nothing to stop or clean up.
"""

from __future__ import annotations

import os
import signal

INTERRUPTED = b"summon: error: interrupted\n"


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, INTERRUPTED)
    os._exit(130)


def main() -> None:
    quiet = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not ignored (&)
    if quiet:
        signal.signal(signal.SIGINT, _interrupted)
    from summon.cli.main import main as command_line

    if quiet:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    command_line()
