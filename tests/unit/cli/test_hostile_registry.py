"""`summon pull` from a registry that answers badly: each fault is one line naming the
registry and what was wrong, status 2; the store is as it was (no image, no blob, no
temporary file), and the same pull succeeds once the registry answers well."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_registry import FAULTS, FakeRegistry, store_files, summon_image

from summon.cli.main import cli
from summon.store import Store


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FakeRegistry]:
    source = Store(tmp_path / "source")
    summon_image(source, "app:v1")
    server = FakeRegistry(source, "team/app")
    yield server
    server.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_bad_reply_is_one_line_and_leaves_the_store_as_it_was(
    fault: str, registry: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    host = f"127.0.0.1:{registry.port}"
    ref = f"{host}/team/app:v1"
    runner = CliRunner()
    registry.fault = fault
    r = runner.invoke(cli, ["pull", ref])
    assert r.exit_code == 2, r.output
    said = [line for line in r.stderr.splitlines() if line.startswith("summon: ")]
    assert len(said) == 1 and r.stderr.endswith(said[0] + "\n"), r.stderr  # after progress
    assert said[0].startswith("summon: error: ") and host in said[0], said[0]
    assert FAULTS[fault] in said[0], said[0]
    assert "internal error" not in said[0]
    left = [f for f in store_files(tmp_path / "store") if not f.endswith((".lock", ".lease"))]
    assert left == ["index.json", "oci-layout"] or left == [], left
    assert runner.invoke(cli, ["images"]).stdout.splitlines()[1:] == []
    registry.fault = None
    r = runner.invoke(cli, ["pull", ref])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"pulled {ref} ")
