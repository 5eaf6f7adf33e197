"""The CLI's qemu parts that need no VM: `summon kernel`, and -v / --accel checking in `run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("SUMMON_STORE", raising=False)
    return CliRunner()


def test_kernel_ls_on_an_empty_cache(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["kernel", "ls", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_kernel_build_refuses_an_unknown_fragment(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["kernel", "build", "--with", "nope"])
    assert result.exit_code == 2
    assert "no kernel fragment 'nope'; known fragments: base" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-v", "data:/data", "--target", "browser"], "-v: target browser has no volumes (targets"),
        (["-e", "SUMMON_HTTP_MAX_BODY=64M", "--target", "browser"], "-e: target browser runs the"),
        (["--accel", "tcg", "--target", "sandbox"], "--accel is not an option of target sandbox"),
        (["--accel", "bogus", "--target", "qemu"], "--accel bogus: choose one of kvm, tcg"),
        (["-p", "8080:80", "-p", "8080:81"], "-p 8080:81: 127.0.0.1:8080/tcp is given twice"),
        (["-p", "0.0.0.0:8080:80", "-p", "8080:80"], "is given twice (also by 0.0.0.0:8080->80"),
        (
            ["-p", "21000-21010:21000-21010", "-p", "127.0.0.1:21004-21005:80-81"],
            "-p 127.0.0.1:21004-21005:80-81: 127.0.0.1:21004/tcp is given twice (also by "
            "127.0.0.1:21004->21004/tcp)",
        ),
        (["-v", "data", "--target", "qemu"], "-v data: expected NAME:/PATH or /HOST/FOLDER:/PATH"),
        (["-v", "./here:/data"], "-v ./here:/data: give a host folder as an absolute path"),
        (["-v", "/no/such/dir:/data"], "-v /no/such/dir:/data: /no/such/dir is not a folder"),
        (["-v", "data:/proc/x"], "-v data:/proc/x: /proc/x: /proc belongs to the image"),
        (["-v", "da ta:/data"], "volume name 'da ta': use ASCII letters"),
        (["-v", "data:/data:ro"], "-v data:/data:ro: summon's -v takes no options after"),
        (["-v", "/tmp:/data:z"], "-v /tmp:/data:z: summon's -v takes no options after the path"),
    ],
)
def test_run_checks_qemu_options_before_anything_starts(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["run", "no-such-image", *args])
    assert result.exit_code == 2
    assert message in result.output
