"""`summon volume export` and `import` on a full disk and into a read-only folder: one line
naming the folder, status 2, and nothing half-written (what was there before stays)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from cli_mounts import Mount, read_only
from click.testing import CliRunner

from summon.cli.main import cli


def _fill(folder: Path) -> None:
    """Fill the disk of folder to its last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)


def _one_line(argv: list[str]) -> str:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("summon: error: "), r.stderr
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.fixture
def todo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Volume todo holding store todo with a few commits; the folder of the volumes."""
    from summon import kv

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    folder = Path(CliRunner().invoke(cli, ["volume", "create", "todo"]).output.strip())
    with kv.open_folder(str(folder / "todo")) as store:
        for i in range(20):
            store.set(f"tasks/{i}", os.urandom(4096), message=f"task {i}")
    return folder.parent


def _export_over_old(todo: Path, disk: Path) -> Path:
    dest = disk / "todo.bundle"
    dest.write_bytes(b"the old bundle")
    return dest


def test_an_export_to_a_full_disk_names_the_folder_and_keeps_the_old_file(
    todo: Path, tmp_path: Path, tmpfs: Mount
) -> None:
    disk = tmpfs(tmp_path / "disk", "size=512k")
    dest = _export_over_old(todo, disk)
    _fill(disk)
    line = _one_line(["volume", "export", "todo", "-o", str(dest)])
    assert line == f"summon: error: -o {dest}: no space left in {disk} (No space left on device)"
    assert dest.read_bytes() == b"the old bundle"
    assert sorted(os.listdir(disk)) == ["filler", "todo.bundle"]


def test_an_export_into_a_read_only_folder_names_it(
    todo: Path, tmp_path: Path, tmpfs: Mount
) -> None:
    disk = tmpfs(tmp_path / "disk", "size=1m")
    dest = _export_over_old(todo, disk)
    read_only(disk)
    line = _one_line(["volume", "export", "todo", "-o", str(dest)])
    assert line == f"summon: error: -o {dest}: cannot write in {disk} (Read-only file system)"
    assert dest.read_bytes() == b"the old bundle"
    assert os.listdir(disk) == ["todo.bundle"]


def _bundle(todo: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "todo.bundle"
    r = CliRunner().invoke(cli, ["volume", "export", "todo", "-o", str(bundle)])
    assert r.exit_code == 0, r.output
    return bundle


def test_an_import_onto_a_full_disk_names_the_folder_and_makes_no_volume(
    todo: Path, tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _bundle(todo, tmp_path)
    disk = tmpfs(tmp_path / "disk", "size=512k")
    monkeypatch.setenv("XDG_STATE_HOME", str(disk))
    assert CliRunner().invoke(cli, ["volume", "create", "old"]).exit_code == 0
    (disk / "summon" / "volumes" / "old" / "note").write_text("kept")
    _fill(disk)
    line = _one_line(["volume", "import", "copy", str(bundle)])
    volumes = disk / "summon" / "volumes"
    assert line == (
        f"summon: error: volume copy: no space left in {volumes} (No space left on device)"
    )
    assert sorted(p.name for p in volumes.iterdir() if not p.name.endswith(".lock")) == ["old"]
    assert (volumes / "old" / "note").read_text() == "kept"
    listed = CliRunner().invoke(cli, ["volume", "ls"]).output
    assert "copy" not in listed and "old" in listed


def test_an_import_into_a_read_only_folder_names_it(
    todo: Path, tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _bundle(todo, tmp_path)
    disk = tmpfs(tmp_path / "disk", "size=1m")
    monkeypatch.setenv("XDG_STATE_HOME", str(disk))
    assert CliRunner().invoke(cli, ["volume", "create", "old"]).exit_code == 0
    read_only(disk)
    line = _one_line(["volume", "import", "copy", str(bundle)])
    volumes = disk / "summon" / "volumes"
    # (Said where the volume's lock is made, before the import begins.)
    assert line.startswith(f"summon: error: Read-only file system: {volumes}/.copy.lock; ")
    assert sorted(p.name for p in volumes.iterdir()) == [".old.lock", "old"]
