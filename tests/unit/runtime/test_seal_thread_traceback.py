"""A thread's uncaught exception in a sealed app: its traceback shows, with no refusal line.

Python's own handler (threading.excepthook, in C) parses each source line it shows for the
carets under it: a compile event named by the app's file. The seal refuses it (no code from
strings after the seal) but says nothing: the line, naming the app's file and advising a
warm-up, was noise beside the app's own traceback. Any other compile stays refused and said.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import json, sys, threading
app = sys.argv[1]
sys.path.insert(0, app)
import boom
from summon.runtime import seal_hook
said = []
hook = seal_hook.make_hook(roots=(app,), writable=(), enforce=True,
                           trusted_callers=frozenset(), report=lambda line, *a: said.append(line))
sys.addaudithook(hook)
thread = threading.Thread(target=boom.divide)
thread.start()
thread.join()
quiet = list(said)
try:
    compile("x / 0", app + "/boom.py", "exec")
    other = "compiled"
except PermissionError as e:
    other = str(e)
print(json.dumps({"quiet": quiet, "other": other, "said": said}))
"""


def test_a_threads_traceback_shows_and_says_no_refusal(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "boom.py").write_text("def divide():\n    x = 1\n    return x / 0\n")
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD, str(app)],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "return x / 0" in result.stderr  # the app's line, as Python shows it
    assert found["quiet"] == []  # no "refused compile of code from .../boom.py" line
    # The same compile from anywhere else is still refused, and said.
    assert "refused by the seal (seal.code" in found["other"]
    assert len(found["said"]) == 1 and found["said"][0].startswith("compile of code from ")
