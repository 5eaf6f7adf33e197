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
