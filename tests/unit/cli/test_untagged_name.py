"""A name without a tag is NAME:latest; when the store has that name under other tags (a
build without -t tags NAME:VERSION), the error names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import store_image

from summon.cli.main import cli
from summon.store import Store


def test_a_name_built_with_its_version_is_named_with_its_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `summon build examples/hello` then `summon run hello` said "no image 'hello' in the
    # store (`summon images`): build or pull it", of the image just built (hello:0.1.0).
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = Store(tmp_path / "store")
    store_image(store, "hello:0.1.0", b"one")
    store_image(store, "hello:0.2.0", b"two")
    store_image(store, "hello-web:latest", b"three")  # another name: not listed
    for argv in (["run", "hello"], ["inspect", "hello"], ["tag", "hello", "x"]):
        r = CliRunner().invoke(cli, argv)
        assert (r.exit_code, r.stderr) == (
            2,
            "summon: error: no image hello:latest in the store; it has hello:0.1.0, "
            "hello:0.2.0: give the tag\n",
        ), argv
    r = CliRunner().invoke(cli, ["inspect", "nothing"])
    assert r.stderr == (
        "summon: error: no image 'nothing' in the store (`summon images`): build or pull it\n"
    )
