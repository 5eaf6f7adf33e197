"""The build's verification run: only _verify.py answers, whatever the app prints (verify.answer).

The answer was the last output line starting with ":summon-verify:", in the same stream as
the app's stdout and stderr: an import that printed that line with "ok" and exited had the
build pass an image that lacked a module. The answer now carries a token given to _verify.py
on its stdin alone; the same forgery fails the build, in each way the run can be isolated.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from summon.build import verify
from summon.build.verify import VerifyError, VerifyPlan, verify_image
from summon.errors import TargetUnavailable

# What an app's import can print: the old answer's form, and one with a made-up token.
FORGER = """
import os, sys
try:
    import summon_no_such_module
except ModuleNotFoundError:
    sys.stdout.write("\\n:summon-verify:\\tok\\n:summon-verify:0123456789abcdef\\tok\\n")
    sys.stdout.flush()
    os._exit(0)
"""

APP_CONFIG: dict[str, Any] = {
    "name": "verify",
    "entry": {"kind": "script", "path": "/app/main.py"},
    "path": ["/app"],
    "network": "socket",
    "ports": [],
    "env": {},
    "args": [],
    "volumes": [],
    "seal": {"mode": "off"},
}


def _force(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Have verify_image take the given way: the sandbox, `unshare -n`, or a plain process."""
    if mode == "isolated":
        if os.geteuid() != 0 or shutil.which("runc") is None:
            pytest.skip("the sandbox needs root and runc")
        return

    def unavailable(*args: object, **kwargs: object) -> Any:
        raise TargetUnavailable("not in this test")

    monkeypatch.setattr(verify, "_in_sandbox", unavailable)
    if mode == "netns":
        if shutil.which("unshare") is None:
            pytest.skip("unshare missing")
        return
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "unshare" else which(name))


def _plan(test_rootfs: Path, source: str) -> VerifyPlan:
    module = f"m_{uuid.uuid4().hex[:10]}"
    (test_rootfs / "app" / f"{module}.py").write_text(source)
    return VerifyPlan(
        interpreter="/usr/bin/python3.11",
        path=("/app",),
        runtime=(),
        entry={"kind": "script", "script": "main.py", "imports": [(module, 1)]},
    )


@pytest.mark.parametrize("mode", ["isolated", "netns", "plain"])
def test_an_answer_printed_by_the_app_fails_the_build(
    mode: str, test_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _force(mode, monkeypatch)
    plan = _plan(test_rootfs, FORGER)
    with pytest.raises(VerifyError) as info:
        verify_image(test_rootfs, plan, image="test", app_config=APP_CONFIG)
    assert str(info.value).startswith(
        "verifying the image: its interpreter exited with status 0 before answering"
    )
    # The forged lines are the app's output, shown as such under the failure.
    assert ":summon-verify:\tok" in info.value.detail


@pytest.mark.parametrize("mode", ["isolated", "netns", "plain"])
def test_the_real_answer_still_comes_through(
    mode: str, test_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _force(mode, monkeypatch)
    # The app reads stdin at import: the token is gone from it by then (/dev/null).
    ok = _plan(test_rootfs, "import sys\nassert sys.stdin.read() == ''\nprint('hello')\n")
    done = verify_image(test_rootfs, ok, image="test", app_config=APP_CONFIG)
    assert done.how == mode
    missing = _plan(test_rootfs, "import summon_no_such_module\n")
    with pytest.raises(VerifyError) as info:
        verify_image(test_rootfs, missing, image="test", app_config=APP_CONFIG)
    assert str(info.value).startswith("module summon_no_such_module (imported by ")
