"""What the security tests share: the summon command driver of the integration tests, a home
of their own with the test apps built into its store, and how to read a probe's report."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from summon.store import rootfs_artifact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from summon_cli import Summon

APPS = Path(__file__).resolve().parent / "apps"

needs_sandbox = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Summon]:
    driver = Summon(tmp_path_factory.mktemp("home"))
    driver.env["XDG_CACHE_HOME"] = str(driver.home / "cache")  # unpacked roots: ours only
    yield driver
    # The verified mounts of this store's root filesystems, as `summon rmi` would.
    rootfs_artifact.release_mounts({"sha256:" + name for name in driver.blobs()})


@pytest.fixture(scope="module")
def probe_image(summon: Summon) -> str:
    """tests/security/apps/probe built as probe:test (a script reporting what it sees)."""
    summon.ok("build", str(APPS / "probe"), "-t", "probe:test")
    return "probe:test"


def probe_report(stdout: str) -> dict[str, Any]:
    """The probe app's `PROBE {...}` line."""
    for line in stdout.splitlines():
        if line.startswith("PROBE "):
            report: dict[str, Any] = json.loads(line[len("PROBE ") :])
            return report
    raise AssertionError(f"the probe printed no report: {stdout!r}")


def cache_dir(summon: Summon) -> Path:
    """summon's cache folder in that home."""
    return Path(summon.env["XDG_CACHE_HOME"]) / "summon"
