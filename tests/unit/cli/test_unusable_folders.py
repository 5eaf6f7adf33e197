"""A summon folder that cannot be used (XDG_STATE_HOME or SUMMON_STORE naming a file, a
dangling link, a folder that cannot be made) is one line naming it and the setting, status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from summon import paths
from summon.cli.main import cli


def _one_line(argv: list[str]) -> str:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_dangling_state_link_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It was "internal error: FileExistsError: [Errno 17] File exists: '.../state'".
    (tmp_path / "state").symlink_to(tmp_path / "gone" / "state")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert _one_line(["volume", "create", "notes"]) == (
        f"summon: error: File exists: {tmp_path}/state; summon keeps its state in "
        f"{tmp_path}/state/summon: make that a folder it can write, or set XDG_STATE_HOME to one"
    )


def test_a_state_folder_that_cannot_be_made_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/self takes no new folders: mkdir says ENOENT, which was an internal error.
    monkeypatch.setenv("XDG_STATE_HOME", "/proc/self")
    line = _one_line(["volume", "create", "notes"])
    assert line.startswith("summon: error: No such file or directory: /proc/self/summon")
    assert line.endswith("or set XDG_STATE_HOME to one")


def test_a_store_that_is_a_file_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "afile"))
    assert _one_line(["images"]) == (
        f"summon: error: cannot use the image store at {tmp_path}/afile: Not a directory; make "
        "that a folder summon can write, or set SUMMON_STORE to one"
    )


def test_folder_of_knows_summons_folders_and_only_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    state = tmp_path / "state" / "summon"
    for inside in (state / "instances" / ".lock", state, tmp_path / "state"):
        found = paths.folder_of(inside)
        assert found is not None and (found.path, found.variable) == (state, "XDG_STATE_HOME")
    found = paths.folder_of(tmp_path / "store" / "index.json")
    assert found is not None and found.variable == "SUMMON_STORE"
    # Beside the folders, or above the settings' own folders: not summon's to explain.
    for outside in (tmp_path, tmp_path / "state" / "other-app", Path("/etc/passwd")):
        assert paths.folder_of(outside) is None, outside


def test_a_name_too_long_for_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `summon key generate` of 300 letters was "internal error: OSError: [Errno 36] File
    # name too long": Path.exists() raises ENAMETOOLONG (and ELOOP) rather than say False.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    name = tmp_path / ("k" * 300)
    assert _one_line(["key", "generate", str(name)]) == (
        f"summon: error: File name too long: {name}.key"
    )
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert _one_line(["key", "generate", str(tmp_path / "loop" / "k")]).startswith(
        "summon: error: "
    )
    assert not (tmp_path / "state" / "summon" / "logs").exists()  # no crash log


def test_a_folder_where_the_store_keeps_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # index.json a folder: "internal error: IsADirectoryError".
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    (tmp_path / "store" / "index.json").mkdir(parents=True)
    assert _one_line(["images"]) == f"summon: error: Is a directory: {tmp_path}/store/index.json"
