"""The sandbox's verified roots (/run/summon/rootfs) go once no image needs them: `summon rmi`
and `rmi --dangling` detach those of the images they remove, and a sweep (at each new mount
and each rmi) those whose image left its store another way or whose store is gone. Each
mount stayed until the next reboot, and every container start copies the mount table."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_image import tiny_image

from summon.cli.main import cli
from summon.store.layout import Descriptor, Store
from summon.targets.sandbox import rootmount

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a verified root needs root"),
    pytest.mark.skipif(shutil.which("mkfs.erofs") is None, reason="apt-get install erofs-utils"),
    pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no loop devices"),
]


def _image(store: Store, tag: str, version: int = 1) -> tuple[Descriptor, Descriptor]:
    """A tiny image tagged tag, with its verified root (erofs): (its erofs blob, its layer)."""
    found, layer = tiny_image(store, tag, f"print({tag!r}, {version})\n".encode())
    return found.erofs, layer


def _mounted(store: Store, tag: str) -> Path:
    """tag's image built and its root mounted, as a sandboxed start mounts it."""
    erofs, layer = _image(store, tag)
    where = rootmount.verified_root(store, erofs, layer)
    assert os.path.ismount(where)
    return where


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return Store(tmp_path / "store")


def _ok(*argv: str) -> None:
    r = CliRunner().invoke(cli, list(argv))
    assert r.exit_code == 0, r.output


def test_rmi_detaches_the_roots_of_the_images_it_removes(store: Store) -> None:
    one, two, kept = _mounted(store, "app:one"), _mounted(store, "app:two"), _mounted(store, "k:1")
    _ok("rmi", "app:one")
    assert not os.path.ismount(one) and not one.exists()
    assert os.path.ismount(two) and os.path.ismount(kept)
    _image(store, "app:two", 2)  # the tag moves to another image: the old one is <none>
    assert [d.digest for d in store.untagged()] != []
    assert os.path.ismount(two)  # (still an image: `summon run <its ID>` runs it)
    _ok("rmi", "--dangling")
    assert not os.path.ismount(two) and os.path.ismount(kept)


def test_a_root_whose_image_left_its_store_another_way_goes_at_the_next_sweep(
    store: Store,
) -> None:
    # The blob stays in the store, so the old sweep (deleted blobs only) kept the mount.
    gone, kept = _mounted(store, "app:gone"), _mounted(store, "app:kept")
    store.untag("app:gone")
    assert os.path.ismount(gone)
    _mounted(store, "app:new")  # a new mount sweeps
    assert not os.path.ismount(gone) and os.path.ismount(kept)
    again = _mounted(store, "app:again")
    store.untag("app:again")
    _ok("rmi", "app:new")  # and so does any rmi
    assert not os.path.ismount(again) and os.path.ismount(kept)


def test_a_root_of_a_store_deleted_without_rmi_goes_at_the_next_rmi(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Store(tmp_path / "other")
    orphan = _mounted(other, "app:orphan")
    shutil.rmtree(other.root)
    assert os.path.ismount(orphan)
    _image(store, "app:here")
    _ok("rmi", "app:here")  # another store's rmi: the sweep sees every root of the host
    assert not os.path.ismount(orphan)
