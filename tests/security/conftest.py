"""What the security tests share as fixtures: the summon command driver of the integration
tests, in a home of their own, and the probe app built into its store (apps.py has the rest)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from summon.store import rootfs_artifact

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from hostile_apps import APPS
from summon_cli import Summon


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
