"""Fixtures of the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_mounts import Mount, mount_tmpfs, unmount


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """mount(folder, options): a tmpfs at folder, unmounted after the test."""
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> Path:
        mounted.append(mount_tmpfs(folder, options))
        return folder

    try:
        yield mount
    finally:
        for folder in reversed(mounted):
            unmount(folder)
