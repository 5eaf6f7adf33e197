"""Shared fixtures for the build tests: the image interpreter, probed once, and a store for the
session's builds (test_real_apps.py's images and the apps test_real_apps_build_checks.py writes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.build.python import Interpreter, probe_interpreter
from summon.store.layout import Store

IMAGE_PYTHON = "/usr/bin/python3.11"


@pytest.fixture(scope="session")
def interp() -> Interpreter:
    if not Path(IMAGE_PYTHON).exists():
        pytest.skip(f"{IMAGE_PYTHON} is not installed")
    return probe_interpreter(IMAGE_PYTHON)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("store"))
