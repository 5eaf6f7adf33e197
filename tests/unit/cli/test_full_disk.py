"""A full disk under what summon writes: one line naming the folder, status 2, and nothing
changed or left half-written there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_mounts import Mount
from click.testing import CliRunner
from fake_registry import store_files, summon_image

from summon.cli.main import cli
from summon.store import Store


def _fill(folder: Path) -> None:
    """Fill the disk of folder to its last byte."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        # What the buffer still held, a byte at a time, till the disk takes no more.
        os.ftruncate(f.fileno(), f.tell())


def _one_line(argv: list[str]) -> str:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.startswith("summon: ")]
    assert len(lines) == 1 and r.stderr.endswith(lines[0] + "\n"), r.stderr  # after progress
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.fixture
def full_store(tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch) -> Path:
    disk = tmpfs(tmp_path / "disk", "size=512k")
    monkeypatch.setenv("SUMMON_STORE", str(disk / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    summon_image(Store(disk / "store"), "app:v1")
    _fill(disk)
    return disk / "store"


def test_a_tag_on_a_full_disk_names_the_store_and_changes_nothing(full_store: Path) -> None:
    # It was "summon: error: No space left on device", naming nothing.
    before = {f: (full_store / f).read_bytes() for f in store_files(full_store)}
    assert _one_line(["tag", "app:v1", "app:v2"]) == (
        f"summon: error: no space left on the disk of the image store {full_store} (No space "
        "left on device); free some space there: summon rmi --dangling removes the images no "
        "tag names"
    )
    assert {f: (full_store / f).read_bytes() for f in store_files(full_store)} == before
    listed = CliRunner().invoke(cli, ["images"]).stdout
    assert "app:v1" in listed and "app:v2" not in listed


def test_a_rootfs_export_to_a_full_disk_says_why_and_leaves_nothing(
    tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was "-o ...: cannot write the root filesystem: None" (copytree's error has no
    # strerror: it gathers each file's).
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    image = tmp_path / "rootfs"
    (image / "app").mkdir(parents=True)
    (image / "app" / "big").write_bytes(os.urandom(600 << 10))
    monkeypatch.setattr("summon.store.image.Image.rootfs", lambda self: image)
    summon_image(Store(tmp_path / "store"), "app:v1")
    disk = tmpfs(tmp_path / "disk", "size=512k")
    line = _one_line(["export", "--as", "rootfs", "-o", str(disk / "out"), "app:v1"])
    assert line == (
        f"summon: error: -o {disk}/out: cannot write the root filesystem: No space left on device"
    )
    assert os.listdir(disk) == []


def test_a_full_disk_under_the_state_folder_names_it_and_what_to_do(
    tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was "summon: error: No space left on device: .../volumes/.data.PID.new": a file, and
    # nothing of which of summon's folders it was or what to do.
    disk = tmpfs(tmp_path / "disk", "size=512k,nr_inodes=4")  # the root, summon, volumes...
    monkeypatch.setenv("XDG_STATE_HOME", str(disk))
    assert _one_line(["volume", "create", "data"]) == (
        f"summon: error: no space left on the disk of summon's state {disk}/summon (No space "
        "left on device); free some space there, or set XDG_STATE_HOME to a folder on a disk "
        "with room"
    )
