"""What summon.kv's tests share: a stepping clock, and the real git run on a store's folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",  # no user config
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Git Test",
    "GIT_AUTHOR_EMAIL": "git@example.org",
    "GIT_COMMITTER_NAME": "Git Test",
    "GIT_COMMITTER_EMAIL": "git@example.org",
    "LC_ALL": "C",
}


class Clock:
    """Commit times one second apart, so Git's date order is the commit order."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1
        return float(self.now)


def git(folder: Path | str, *args: str, input: bytes | None = None, check: bool = True) -> str:
    """Run the real git on the repository `folder` (bare); return its stdout as text."""
    result = subprocess.run(
        ["git", "--git-dir", str(folder), *args],
        input=input,
        capture_output=True,
        env=GIT_ENV,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode("utf-8", "replace")


def git_in(cwd: Path | str, *args: str, input: bytes | None = None) -> str:
    """Run the real git in a work tree `cwd`."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env=GIT_ENV, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed:\n{result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode("utf-8", "replace")


def fsck(folder: Path | str) -> None:
    """git fsck --strict must be clean: no error, no warning, nothing dangling reported."""
    result = subprocess.run(
        ["git", "--git-dir", str(folder), "fsck", "--strict", "--no-dangling", "--full"],
        capture_output=True,
        env=GIT_ENV,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    # Notices are about an empty repository ("HEAD points to an unborn branch"), not faults.
    lines = [ln for ln in out.splitlines() if not ln.startswith(("Checking ", "notice: "))]
    assert result.returncode == 0 and not lines, out
