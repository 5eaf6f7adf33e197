"""Fixtures for the runtime tests: a fake image root per test, cleaned up after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_image import TIMEOUT, ImageRoot


@pytest.fixture
def image(tmp_path: Path) -> Iterator[ImageRoot]:
    root = ImageRoot(tmp_path / "root")
    yield root
    for process in root.processes:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)
