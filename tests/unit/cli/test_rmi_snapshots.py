"""`summon rmi` takes the snapshots of the images it removes with them, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import store_image

from summon.cli.main import cli
from summon.store.layout import Store
from summon.targets.snapshots import SnapshotCache


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(tmp_path / "snaps"))
    return Store(tmp_path / "store")


def put(cache: SnapshotCache, key: str, image_digest: str) -> None:
    writer = cache.writer(key, "qemu", {"image": "x", "image_digest": image_digest})
    writer.write(b"s" * 5000)
    writer.commit()


def test_rmi_removes_the_snapshots_of_the_images_it_removed(store: Store) -> None:
    # They stayed on disk (a guest's memory each) until the cache's bound evicted them,
    # though nothing could restore them any more.
    web, _, _ = store_image(store, "web:1", b"web")
    api, _, _ = store_image(store, "api:1", b"api")
    store.tag("web:2", web)
    cache = SnapshotCache()
    put(cache, "aa" * 32, web.digest)
    put(cache, "bb" * 32, web.digest)
    put(cache, "cc" * 32, api.digest)
    put(cache, "dd" * 32, "sha256:" + "0" * 64)  # another store's image: not this rmi's
    runner = CliRunner()
    # A tag of an image that keeps another: the image and its snapshots stay.
    r = runner.invoke(cli, ["rmi", "web:2"])
    assert r.exit_code == 0, r.output
    assert "snapshot" not in r.stdout
    assert sorted(key for key, _ in cache.entries()) == ["aa" * 32, "bb" * 32, "cc" * 32, "dd" * 32]
    r = runner.invoke(cli, ["rmi", "web:1"])
    assert r.exit_code == 0, r.output
    assert "removed 2 snapshot(s) of the removed images" in r.stdout
    assert sorted(key for key, _ in cache.entries()) == ["cc" * 32, "dd" * 32]
