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


# What `summon push` says of each fault (an upload the registry answers badly).
PUSH_FAULTS = {
    "html": "answered 502 while checking it speaks the registry API",
    "html200": "answered 200 while uploading blob sha256:",  # a sign-in page, not 201
    "bad-auth": "sent a token challenge without a usable realm URL",
    "reset": "while uploading blob sha256:",  # the connection reset as the blob goes up
    "429": "asks to wait 60 minutes, longer than summon waits",
}


@pytest.mark.parametrize("fault", sorted(PUSH_FAULTS))
def test_a_bad_reply_to_a_push_is_one_line_and_a_push_after_works(
    fault: str, registry: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    host = f"127.0.0.1:{registry.port}"
    ref = f"{host}/team/mine:v1"
    summon_image(Store(tmp_path / "store"), ref)
    before = {f: (tmp_path / "store" / f).read_bytes() for f in store_files(tmp_path / "store")}
    runner = CliRunner()
    registry.fault = fault
    r = runner.invoke(cli, ["push", ref])
    assert r.exit_code == 2, r.output
    said = [line for line in r.stderr.splitlines() if line.startswith("summon: ")]
    assert len(said) == 1 and r.stderr.endswith(said[0] + "\n"), r.stderr
    assert said[0].startswith(f"summon: error: registry {host} ") or (
        f"summon: error: the connection to registry {host} " in said[0]
    ), said[0]
    assert PUSH_FAULTS[fault] in said[0], said[0]
    after = {f: (tmp_path / "store" / f).read_bytes() for f in store_files(tmp_path / "store")}
    assert {f: b for f, b in after.items() if not f.endswith((".lock", ".lease"))} == {
        f: b for f, b in before.items() if not f.endswith((".lock", ".lease"))
    }
    registry.fault = None
    r = runner.invoke(cli, ["push", ref])
    assert r.exit_code == 0, r.output
    index = Store(tmp_path / "store").resolve(ref)[1]
    assert registry.pushed["v1"] == Store(tmp_path / "store").read(index)
