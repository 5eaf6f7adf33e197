"""The security tests' hostile apps (apps/), and how to read what the probe app reports.

Not in conftest.py: a test module imports these by name, and `conftest` is not a name that
can be imported reliably (every test folder has one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

APPS = Path(__file__).resolve().parent / "apps"

# For an app under test (its source, as a string): attempt(name, action) prints one JSON line
# saying whether action() worked, and what it returned or raised. The app imports json.
ATTEMPT = r"""

def attempt(name, action):
    try:
        got = {"probe": name, "ok": True, "detail": repr(action())}
    except Exception as e:
        got = {"probe": name, "ok": False, "kind": type(e).__name__, "detail": str(e)}
    print(json.dumps(got), flush=True)
"""

needs_sandbox = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]


def probe_report(stdout: str) -> dict[str, Any]:
    """The probe app's `PROBE {...}` line."""
    for line in stdout.splitlines():
        if line.startswith("PROBE "):
            report: dict[str, Any] = json.loads(line[len("PROBE ") :])
            return report
    raise AssertionError(f"the probe printed no report: {stdout!r}")


def cache_dir(env: dict[str, str]) -> Path:
    """summon's cache folder for a summon run with this environment."""
    return Path(env["XDG_CACHE_HOME"]) / "summon"
