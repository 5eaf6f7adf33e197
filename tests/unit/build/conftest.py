"""Shared fixtures for the build tests: the image interpreter, probed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.build.python import Interpreter, probe_interpreter

IMAGE_PYTHON = "/usr/bin/python3.11"


@pytest.fixture(scope="session")
def interp() -> Interpreter:
    if not Path(IMAGE_PYTHON).exists():
        pytest.skip(f"{IMAGE_PYTHON} is not installed")
    return probe_interpreter(IMAGE_PYTHON)
