"""summon with its standard output closed (`summon images >&-`) or read by a reader that is
gone (`summon inspect web | head -1`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
            "SUMMON_STORE": str(tmp_path / "store")}  # fmt: skip


def _summon(
    argv: list[str], env: dict[str, str], stdout: int | None = None, close_stdout: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "summon", *argv],
        env=env,
        text=True,
        check=False,
        stdout=stdout,
        stderr=subprocess.PIPE,
        preexec_fn=(lambda: os.close(1)) if close_stdout else None,
    )


def test_a_closed_stdout_is_as_dev_null(env: dict[str, str], tmp_path: Path) -> None:
    # `summon images >&-` was "internal error: ImportError: cannot import name 'out'", and
    # `summon --help >&-` a traceback: Python leaves sys.stdout None for a closed fd 1.
    for argv in (["images"], ["--help"], ["volume", "create", "notes"]):
        r = _summon(argv, env, close_stdout=True)
        assert (r.returncode, r.stderr) == (0, ""), argv
    # The verb did its work: the volume is there.
    assert (tmp_path / "state" / "summon" / "volumes" / "notes").is_dir()
    # A mistake still says so, on stderr.
    r = _summon(["frobnicate"], env, close_stdout=True)
    assert r.returncode == 2 and r.stderr.startswith("summon: error: no such command")


def test_a_reader_gone_ends_every_verb_as_sigpipe_ends_cat(env: dict[str, str]) -> None:
    # rich's console ended `summon images | head -0` with status 1 and no word (print's
    # output, --json, ended with 141): now both end as cat does, quietly.
    for argv in (["images"], ["images", "--json"]):
        read, write = os.pipe()
        os.close(read)
        try:
            r = _summon(argv, env, stdout=write)
        finally:
            os.close(write)
        assert (r.returncode, r.stderr) == (128 + 13, ""), argv
