"""`summon volume`: the verbs, their JSON, and one line with exit status 2 for each mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli
from summon.targets import volumes


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return CliRunner()


def test_create_ls_inspect_rm(runner: CliRunner, tmp_path: Path) -> None:
    made = runner.invoke(cli, ["volume", "create", "notes"])
    assert made.exit_code == 0, made.output
    folder = Path(made.output.strip())
    assert folder.is_dir()
    rows = json.loads(runner.invoke(cli, ["volume", "ls", "--json"]).output)
    assert rows == [
        {"name": "notes", "kind": "folder", "path": str(folder), "size": 0, "capacity": None,
         "in_use_by": []}
    ]  # fmt: skip
    doc = json.loads(runner.invoke(cli, ["volume", "inspect", "notes", "--json"]).output)
    assert doc["stores"] == [] and doc["path"] == str(folder)
    with volumes.lease("notes", exclusive=False):  # as a running instance holds it
        busy = runner.invoke(cli, ["volume", "inspect", "notes", "--json"])
        assert json.loads(busy.output)["in_use_by"] != []
        refused = runner.invoke(cli, ["volume", "rm", "notes"])
        assert refused.exit_code == 2
        assert refused.output.startswith("summon: error: volume notes is in use")
        assert refused.output.count("\n") == 1
    assert runner.invoke(cli, ["volume", "rm", "notes"]).exit_code == 0
    assert not folder.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["volume", "inspect", "nope"], "no volume 'nope'; see `summon volume ls`"),
        (["volume", "rm", "nope"], "no volume 'nope'"),
        (["volume", "create", "a/b"], "volume name 'a/b': use ASCII letters"),
        (["volume", "create", "x", "--kind", "ext4", "--size", "1k"], "at least 8M"),
        (["volume", "export", "nope", "-o", "f"], "no volume 'nope'"),
        (["volume", "import", "x", "/no/such.bundle"], "/no/such.bundle: no such file"),
        # The store defaults to the volume's name: a bad name was blamed on --store, not given.
        (["volume", "import", "../x", "/no/such.bundle"], "volume name '../x': use ASCII letters"),
    ],
)
def test_mistakes_are_one_line(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.count("\n") == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="apt-get install git")
def test_export_and_import_round_trip_through_git(runner: CliRunner, tmp_path: Path) -> None:
    from summon import kv

    folder = Path(runner.invoke(cli, ["volume", "create", "todo"]).output.strip())
    with kv.open_folder(str(folder / "todo")) as store:
        store.set("tasks/1", b"milk", message="add milk")
    empty = runner.invoke(cli, ["volume", "create", "empty"])
    assert empty.exit_code == 0
    none = runner.invoke(cli, ["volume", "export", "empty", "-o", str(tmp_path / "e.bundle")])
    assert none.exit_code == 2 and "holds 0 stores (none); name one with --store" in none.output
    bundle = tmp_path / "todo.bundle"
    result = runner.invoke(cli, ["volume", "export", "todo", "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    subprocess.run(["git", "bundle", "verify", str(bundle)], check=True, capture_output=True)
    result = runner.invoke(cli, ["volume", "import", "copy", str(bundle), "--store", "todo"])
    assert result.exit_code == 0, result.output
    doc = json.loads(runner.invoke(cli, ["volume", "inspect", "copy", "--json"]).output)
    assert doc["stores"] == ["todo"]
    again = runner.invoke(cli, ["volume", "import", "copy", str(bundle)])
    assert again.exit_code == 2 and "volume copy exists" in again.output
    (tmp_path / "junk").write_bytes(b"not a bundle")
    junk = runner.invoke(cli, ["volume", "import", "other", str(tmp_path / "junk")])
    assert junk.exit_code == 2 and "is not a Git bundle" in junk.output
    assert "other" not in [n for n, _ in volumes.list_volumes()]


def test_a_bad_bundle_is_named_once(runner: CliRunner, tmp_path: Path) -> None:
    """The error names the file once: each layer (pack, bundle, volume) had prefixed it."""
    from summon import kv

    store = kv.open_folder(str(tmp_path / "src"))
    store.set("a", b"1", message="one")
    store.close()
    whole = tmp_path / "whole.bundle"
    kv.export_bundle(str(tmp_path / "src"), str(whole))
    junk, cut = tmp_path / "junk", tmp_path / "cut.bundle"
    junk.write_bytes(b"not a bundle")
    cut.write_bytes(whole.read_bytes()[:-5])  # the pack's checksum cut short
    for bad, says in ((junk, "is not a Git bundle"), (cut, "checksum does not match")):
        result = runner.invoke(cli, ["volume", "import", "other", str(bad)])
        assert result.exit_code == 2 and says in result.output, result.output
        assert result.output.count(str(bad)) == 1, result.output


def test_a_full_disk_under_the_bundle_names_where(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing the bundle said only "No space left on device": not which disk."""
    import errno

    from summon import kv

    folder = Path(runner.invoke(cli, ["volume", "create", "todo"]).output.strip())
    with kv.open_folder(str(folder / "todo")) as store:
        store.set("tasks/1", b"milk", message="add milk")

    def full(source: str, dest: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kv, "export_bundle", full)
    dest = tmp_path / "out" / "todo.bundle"
    dest.parent.mkdir()
    result = runner.invoke(cli, ["volume", "export", "todo", "-o", str(dest)])
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"summon: error: -o {dest}: no space left in {dest.parent} (No space left on device)\n"
    )


def test_export_of_a_volume_in_use_names_the_instance(runner: CliRunner, tmp_path: Path) -> None:
    # It said "in use by another instance", where `volume rm` names it.
    import os

    from summon.instances import state

    runner.invoke(cli, ["volume", "create", "notes"])
    run = {"name": "n", "image": "i", "rootfs": "/", "app_config": {},
           "volumes": [{"name": "notes", "path": "/data"}]}  # fmt: skip
    folder, lock_fd = state.create({"run": run, "target": "unix"}, "web", "app")
    folder.update_state(status="running")
    try:
        with volumes.lease("notes", exclusive=False):  # as the running instance holds it
            r = runner.invoke(cli, ["volume", "export", "notes", "-o", str(tmp_path / "b")])
    finally:
        os.close(lock_fd)
    assert r.exit_code == 2
    assert r.output == "summon: error: volume notes is in use by web; stop it first to export it\n"
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(shutil.which("mkfs.ext4", path="/sbin:/usr/sbin") is None, reason="e2fsprogs")
def test_a_disk_bigger_than_the_host_holds_is_one_line(runner: CliRunner) -> None:
    # OverflowError (past a C long) was an internal error (so was EFBIG, past the largest file
    # of the host's file system, which depends on that file system: not tested here).
    size = "99999999999999G"
    r = runner.invoke(cli, ["volume", "create", "big", "--kind", "ext4", "--size", size])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("summon: error: volume big: no disk of "), r.output
    assert r.output.strip().endswith(" bytes here: too large")
    assert volumes.kind_of("big") is None  # nothing left behind


def test_rm_checks_every_name_before_removing_any(runner: CliRunner) -> None:
    # `volume rm notes nottes` removed notes, then failed on the typo; `volume rm notes notes`
    # removed it and then said "no volume 'notes'", status 2.
    notes = Path(runner.invoke(cli, ["volume", "create", "notes"]).output.strip())
    r = runner.invoke(cli, ["volume", "rm", "notes", "nottes"])
    assert r.exit_code == 2
    assert r.output == "summon: error: no volume 'nottes'; see `summon volume ls`\n"
    assert notes.is_dir()
    r = runner.invoke(cli, ["volume", "rm", "notes", "notes"])
    assert (r.exit_code, r.output) == (0, "notes\n")
    assert not notes.exists()
