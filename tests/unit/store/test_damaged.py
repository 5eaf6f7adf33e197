"""A damaged blob is said with the images that hold it, and what to do (store/damaged.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import store_image as image

from summon.cli.main import cli
from summon.store import damaged
from summon.store.layout import Store


def test_the_images_holding_a_blob_are_named_with_the_remedy(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    web, _, web_layer = image(store, "web:1", b"web")
    _, db_config, _ = image(store, "db:1", b"db")
    store.tag("web:2", web)
    line = f"blob {web_layer.digest} is corrupt: its content hashes to sha256:{'0' * 64}"
    assert damaged.explain(store, line) == (
        f"{line}; it belongs to images web:1, web:2: remove it (summon rmi web:1 web:2) and "
        "build or pull it again"
    )
    assert damaged.holders(store, db_config.digest) == ["db:1"]
    # A manifest that cannot be read is a dead end, not an error; a blob no image holds
    # leaves the line as it was.
    store.blob_path(web.digest).write_bytes(b"{not json")
    assert damaged.holders(store, web_layer.digest) == []
    assert damaged.explain(store, "blob sha256:" + "1" * 64 + " is missing") == (
        "blob sha256:" + "1" * 64 + " is missing"
    )


def test_the_cli_names_the_damaged_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A truncated file under the store: `blob sha256:... is corrupt`, and a user with several
    # images could not tell which one to remove.
    store = Store(tmp_path / "store")
    index, _, _ = image(store, "web:1", b"web")
    image(store, "db:1", b"db")
    store.blob_path(index.digest).write_bytes(store.blob_path(index.digest).read_bytes()[:10])
    monkeypatch.setenv("SUMMON_STORE", str(store.root))
    r = CliRunner().invoke(cli, ["inspect", "web:1"])
    assert r.exit_code == 2
    assert r.output.startswith(f"summon: error: blob {index.digest} is corrupt")
    assert r.output.rstrip().endswith(
        "; it belongs to image web:1: remove it (summon rmi web:1) and build or pull it again"
    )
