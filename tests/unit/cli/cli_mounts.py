"""Small tmpfs mounts for the CLI tests: a full disk or a read-only folder, which root (who
runs the suite) gets no other way: it ignores a folder's modes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Mount = Callable[[Path, str], Path]


def mount_tmpfs(folder: Path, options: str) -> Path:
    """A tmpfs at folder (made) with options such as "size=512k"; skips the test where
    tmpfs cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    result = subprocess.run(argv, capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {result.stderr.decode().strip()}")
    return folder


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], check=True)


def read_only(folder: Path) -> None:
    """Remount the tmpfs at folder read-only."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
