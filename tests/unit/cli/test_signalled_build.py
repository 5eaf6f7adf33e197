"""Ctrl-C or SIGTERM at a step of `summon build`: one line, status 130 or 143, and nothing of
the build left in the store (its layer stayed, listed nowhere, until `rmi --dangling`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import summon

SRC = str(Path(summon.__file__).resolve().parent.parent)
EXAMPLES = Path(__file__).parents[3] / "examples"


def signalled_at(step: str, signum: int, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run summon argv; send signum once a progress line ends with step; (status, stderr)."""
    with subprocess.Popen(
        [sys.executable, "-m", "summon", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": SRC},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        assert proc.stderr is not None
        said = ""
        for line in proc.stderr:
            said += line
            if line.rstrip("\n").endswith(step):
                proc.send_signal(signum)
                break
        try:
            said += proc.stderr.read()
            return proc.wait(timeout=60), said
        finally:
            proc.kill()


@pytest.mark.parametrize(
    ("step", "signum"),
    [
        ("writing the verified root filesystem (erofs)", signal.SIGINT),
        ("verifying: importing the entry inside the image", signal.SIGTERM),
        ("writing the image", signal.SIGINT),
    ],
)
def test_a_signalled_build_leaves_nothing_in_the_store(
    step: str, signum: int, tmp_path: Path
) -> None:
    env = {"SUMMON_STORE": str(tmp_path / "store"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    argv = ["build", str(EXAMPLES / "hello"), "-t", "hello:1"]
    status, said = signalled_at(step, signum, argv, env)
    assert status == 128 + signum, said
    last = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    assert said.endswith(f"building {EXAMPLES / 'hello'}: {step}\nsummon: error: {last}\n"), said
    assert list((tmp_path / "store" / "blobs" / "sha256").iterdir()) == []
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []
