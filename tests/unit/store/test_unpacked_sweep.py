"""Unpacked roots (<cache>/rootfs: the unix target's root, the build's trial runs) go once
no image needs them and nothing runs from them: at each `summon rmi`, those of images it
removes, of images that left their store another way, and of stores deleted by hand. Before,
none ever went (1.6 GB after one test session)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_image import tiny_image

from summon.cli.main import cli
from summon.store import unpacked
from summon.store.image import Image
from summon.store.layout import Store

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.erofs") is None, reason="apt-get install erofs-utils"
)


def _image(store: Store, tag: str, text: str) -> None:
    """A tiny image tagged tag whose one file says text (the same text: the same layer)."""
    tiny_image(store, tag, f"print({text!r})\n".encode())


def _unpacked(store: Store, tag: str, text: str) -> Path:
    """tag's image made and unpacked, as a unix-target run unpacks it."""
    _image(store, tag, text)
    folder = Image.open(store, tag).rootfs()
    assert folder.is_dir() and folder.parent == unpacked.cache()
    return folder


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Store(tmp_path / "store")


def _ok(*argv: str) -> None:
    r = CliRunner().invoke(cli, list(argv))
    assert r.exit_code == 0, r.output


def test_rmi_removes_the_unpacked_roots_of_the_images_it_removes(store: Store) -> None:
    one, kept = _unpacked(store, "app:one", "one"), _unpacked(store, "app:kept", "kept")
    _ok("rmi", "app:one")
    assert not one.exists() and kept.is_dir()
    assert not one.with_name(one.name + unpacked.STORES_SUFFIX).exists()
    # One that left its store another way (the tag moved on) goes at the next rmi.
    old = _unpacked(store, "app:moved", "old")
    _image(store, "app:moved", "new")
    _ok("rmi", "--dangling")
    assert not old.exists() and kept.is_dir()


def test_a_root_another_store_still_needs_stays(store: Store, tmp_path: Path) -> None:
    other = Store(tmp_path / "other")
    shared = _unpacked(store, "app:shared", "same")
    assert _unpacked(other, "app:shared", "same") == shared  # one folder for both stores
    _ok("rmi", "app:shared")
    assert shared.is_dir()  # the other store's image has the same layer
    # That store half deleted by hand (its index gone first): the root goes at the next
    # rmi, and the sweep, only reading, makes nothing anew there.
    (other.root / "index.json").unlink()
    _unpacked(store, "app:next", "next")
    _ok("rmi", "app:next")
    assert not shared.exists() and not (other.root / "index.json").exists()


def test_a_root_a_process_runs_from_stays_until_it_ends(store: Store) -> None:
    folder = _unpacked(store, "app:busy", "busy")
    proc = subprocess.Popen(["sleep", "60"], cwd=folder / "app")  # a unix instance's cwd
    try:
        _ok("rmi", "app:busy")
        assert folder.is_dir()
    finally:
        proc.kill()
        proc.wait()
    assert unpacked.sweep() == 1 and not folder.exists()


def test_folders_of_an_older_summon_stay_and_old_leftovers_go(store: Store) -> None:
    base = unpacked.cache()
    base.mkdir(parents=True)
    legacy = base / ("ab" * 32 + "-0123456789ab")  # no list of users: not ours to judge
    (legacy / "app").mkdir(parents=True)
    leftover = base / ".unpack-cut-short"
    (leftover / "root").mkdir(parents=True)
    fresh = base / ".unpack-on-its-way"
    fresh.mkdir()
    hour_ago = time.time() - 2 * unpacked.LEFTOVER_SECONDS
    os.utime(leftover, (hour_ago, hour_ago))
    unpacked.sweep()
    assert legacy.is_dir() and fresh.is_dir() and not leftover.exists()
