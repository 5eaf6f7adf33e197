"""`summon build` on a full disk: one line naming the folder that is full, status 2, and
nothing of the failed build left in the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_mounts import Mount
from click.testing import CliRunner
from test_full_disk import _fill, _one_line

from summon.cli.main import cli
from summon.store import Store
from summon.store.image import Image

EXAMPLES = Path(__file__).parents[3] / "examples"


def _filling_first(disk: Path, real: Callable[..., Any]) -> Callable[..., Any]:
    """real, called once disk is full: the build reaches that step with no room left."""

    def fill_then(*args: Any, **kwargs: Any) -> Any:
        _fill(disk)
        return real(*args, **kwargs)

    return fill_then


@pytest.fixture
def disk(tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 64 MB disk holding the store; the state and cache elsewhere."""
    disk = tmpfs(tmp_path / "disk", "size=64m")
    monkeypatch.setenv("SUMMON_STORE", str(disk / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return disk


def test_byte_compiling_on_a_full_store_names_the_store(
    disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was "summon: error: byte-compiling failed: OSError: [Errno 28] No space left on
    # device", naming no folder.
    from summon.build import image

    monkeypatch.setattr(image, "compile_jobs", _filling_first(disk, image.compile_jobs))
    line = _one_line(["build", str(EXAMPLES / "hello"), "-t", "hello:v1", "--no-verify"])
    assert line == (
        f"summon: error: no space left on the disk of the image store {disk / 'store'} (No "
        "space left on device); free some space there: summon rmi --dangling removes the "
        "images no tag names"
    )


def test_a_build_out_of_space_at_the_erofs_step_leaves_nothing_in_the_store(
    disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its layer stayed in the store, listed nowhere, until `summon rmi --dangling`.
    from summon.store import rootfs_artifact

    monkeypatch.setattr(rootfs_artifact, "_make", _filling_first(disk, rootfs_artifact._make))
    line = _one_line(["build", str(EXAMPLES / "hello"), "-t", "hello:v1", "--no-verify"])
    assert "no space left in the store" in line and str(disk / "store") in line
    assert list((disk / "store" / "blobs" / "sha256").iterdir()) == []
    assert "removed 0 blobs" in CliRunner().invoke(cli, ["rmi", "--dangling"]).stdout


def test_a_full_cache_under_an_unpack_names_the_cache(
    tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was "summon: error: No space left on device" (a build's check inside the image, and
    # `summon run`, unpack the image into the cache).
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    cache = tmpfs(tmp_path / "cache", "size=1m")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    argv = ["build", str(EXAMPLES / "hello"), "-t", "hello:v1", "--no-verify"]
    assert CliRunner().invoke(cli, argv).exit_code == 0
    _fill(cache)
    from summon.errors import UserError

    with pytest.raises(UserError) as e:
        Image.open(Store(tmp_path / "store"), "hello:v1").rootfs()
    assert str(e.value) == (
        f"no space left on the disk of summon's cache {cache}/summon (No space left on "
        f"device); free some space there: everything in {cache}/summon can go (summon makes "
        "it again when needed), or set XDG_CACHE_HOME to a folder on a disk with room"
    )


def test_vendoring_onto_a_full_store_names_the_store(
    tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was "requirement 'dnspython==2.9.2' could not be installed: Exception:" (pip's
    # last ERROR line; the full disk was in its traceback).
    disk = tmpfs(tmp_path / "disk", "size=200k")
    monkeypatch.setenv("SUMMON_STORE", str(disk / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    line = _one_line(["build", str(EXAMPLES / "dns"), "-t", "dns:1", "--no-verify"])
    assert line == (
        f"summon: error: no space left on the disk of the image store {disk / 'store'} (No "
        "space left on device); free some space there: summon rmi --dangling removes the "
        "images no tag names"
    )
