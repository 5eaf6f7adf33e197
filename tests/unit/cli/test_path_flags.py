"""Path flags given '' (an unset shell variable): one line naming the flag, and nothing done.

click reads '' as Path('.'), so `summon export IMAGE --as rootfs -o ''` said
"-o .: already exists" and `sign --key ''` "cannot read the private key .: Is a directory".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["export", "http:1", "--as", "rootfs", "-o", ""], "-o"),
        (["export", "http:1", "--as", "seccomp", "--output="], "-o"),
        (["kube", "http:1", "-o", ""], "-o"),
        (["build", ""], "APP_DIR"),
        (["build", ".", "-f", ""], "-f"),
        (["sign", "http:1", "--key", ""], "--key"),
        (["verify", "http:1", "--key", " "], "--key"),
        (["run", "--verify-key", "", "http:1"], "--verify-key"),
        (["volume", "export", "data", "-o", ""], "-o"),
        (["volume", "import", "data", ""], "BUNDLE"),
        (["gateway", "--config", ""], "--config"),
    ],
)
def test_an_empty_path_is_one_line_naming_its_flag(
    argv: list[str], flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    empty = argv[-1] if argv[-1].strip() == "" else ""
    assert r.output.strip().splitlines() == [
        f"summon: error: {flag} {empty!r}: give a path (is a variable unset?)"
    ]
    assert list(tmp_path.iterdir()) == []  # no store, no state, nothing written in the folder


@pytest.mark.parametrize("fmt", ["rootfs", "seccomp", "browser"])
def test_export_to_a_missing_folder_is_refused_and_makes_none(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rootfs and browser made the missing folders (a typo's), seccomp said only "-o ...:
    # cannot write it: No such file or directory"; cp and `docker save -o` refuse.
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["export", "http:1", "--as", fmt, "-o", "typo/out"])
    assert r.exit_code == 2, r.output
    assert r.stderr == (
        f"summon: error: -o typo/out: no folder {tmp_path}/typo; make it first, or give "
        "another path\n"
    )
    assert not (tmp_path / "typo").exists()
    r = CliRunner().invoke(cli, ["kube", "http:1", "-o", "typo/http.yaml"])
    assert r.exit_code == 2 and f"no folder {tmp_path}/typo;" in r.stderr, r.output
