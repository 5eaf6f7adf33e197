"""A Ctrl-C while summon's command line is still loading ends it in one line, status 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import summon

SRC = str(Path(summon.__file__).resolve().parent.parent)

# The console script's entry, with the command line's import held until the test's SIGINT
# arrives (a finder that sleeps on it): the tens of milliseconds a real import takes.
SLOW_IMPORT = textwrap.dedent(
    """
    import sys, time
    class Slow:
        def find_spec(self, name, path=None, target=None):
            if name == "summon.cli.main":
                print("loading", flush=True)
                time.sleep(30)
            return None
    sys.meta_path.insert(0, Slow())
    from summon.cli.entry import main
    main()
    """
)


def _interrupted_while_loading(*, ignored: bool) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_IMPORT, "images"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        # As a shell's background job: SIGINT ignored, which summon must keep ignoring. Else
        # the default, whatever this process inherited (the suite may run as a background job).
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_IGN if ignored else signal.SIG_DFL
        ),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "loading\n"
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=5 if not ignored else 1)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_while_loading_is_one_line_and_status_130() -> None:
    # It printed a Python traceback of whatever was being imported.
    done = _interrupted_while_loading(ignored=False)
    assert done.returncode == 130
    assert done.stderr == "summon: error: interrupted\n"


def test_an_ignored_sigint_stays_ignored_while_loading() -> None:
    done = _interrupted_while_loading(ignored=True)
    assert done.returncode == -signal.SIGKILL  # still loading: the SIGINT did nothing
    assert "interrupted" not in done.stderr
