"""A state folder the user can only read (a read-only mount, another user's folder) can
still be looked at: `summon ps`, `logs`, `stats`, `inspect` read it; a verb that must write
says so in one line naming the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_mounts import Mount, read_only
from click.testing import CliRunner

from summon.cli.main import cli
from summon.instances import console, state
from summon.targets.base import RunSpec


@pytest.fixture
def frozen_state(tmp_path: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two instances' records, "web" recorded running (its monitor died) and "old" exited,
    in a state folder then mounted read-only."""
    folder = tmpfs(tmp_path / "state", "size=1m")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    run = RunSpec(name="x", image="hello", rootfs=Path("/"), app_config={})
    for name, status in (("web", "running"), ("old", "exited")):
        spec = {"run": state.encode_run_spec(run), "target": "unix",
                "image": {"ref": "hello", "digest": ""}}  # fmt: skip
        instance, lock_fd = state.create(spec, name, name, durable=False)
        os.close(lock_fd)
        instance.update_state(status=status, finished_at=state.now())
        (instance.logs / console.LOG_NAME).write_bytes(f"{name} said hi\n".encode())
    assert CliRunner().invoke(cli, ["volume", "create", "notes"]).exit_code == 0
    read_only(folder)
    return folder


def test_reading_a_read_only_state_folder_works(frozen_state: Path) -> None:
    # Each was "summon: error: Read-only file system: .../monitor.lock; summon keeps its
    # state in ...": the check whether a monitor holds the lock opened it for writing.
    runner = CliRunner()
    r = runner.invoke(cli, ["ps", "-a"])
    assert r.exit_code == 0, r.output
    rows = {line.split()[1]: line for line in r.stdout.splitlines()[1:]}
    assert sorted(rows) == ["old", "web"]
    assert "Exited (monitor died)" in rows["web"]  # shown as it is, though not recorded
    r = runner.invoke(cli, ["ps"])
    assert (r.exit_code, r.stdout.splitlines()[1:]) == (0, [])
    assert runner.invoke(cli, ["logs", "web"]).stdout == "web said hi\n"
    r = runner.invoke(cli, ["inspect", "web"])
    assert r.exit_code == 0, r.output
    assert "reason:         monitor died" in r.stdout
    r = runner.invoke(cli, ["stats", "--no-stream"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(cli, ["ps", "-a"]).exit_code == 0  # and again: nothing was half-done
    # "Read-only file system: .../volumes/.notes.lock": whether one used it took its lock.
    r = runner.invoke(cli, ["volume", "ls"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].split()[:2] == ["notes", "folder"]
    r = runner.invoke(cli, ["volume", "inspect", "notes"])
    assert r.exit_code == 0, r.output


def test_a_verb_that_must_write_there_is_one_line_naming_the_folder(frozen_state: Path) -> None:
    r = CliRunner().invoke(cli, ["rm", "old"])
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("summon: error: Read-only file system: ")
    assert lines[0].endswith(
        f"summon keeps its state in {frozen_state}/summon: make that a folder it can write, "
        "or set XDG_STATE_HOME to one"
    )
