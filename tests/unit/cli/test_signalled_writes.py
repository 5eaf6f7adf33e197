"""Ctrl-C or SIGTERM at a step of `summon build` or `export`: one line, status 130 or 143, and
nothing of the work left in the store (a build's layer stayed, listed nowhere) or beside -o."""

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


def signalled_at(
    step: str,
    signum: int,
    argv: list[str],
    env: dict[str, str],
    module: tuple[str, ...] = ("-m", "summon"),
) -> tuple[int, str]:
    """Run summon argv; send signum once a progress line ends with step; (status, stderr)."""
    with subprocess.Popen(
        [sys.executable, *module, *argv],
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


# `summon export --as rootfs`, its copy held after its first file until the test's signal.
HELD_COPY = """
import shutil, sys, time
copyfile = shutil.copyfile
def held(src, dst, **kw):
    done = copyfile(src, dst, **kw)
    print("copied a file", file=sys.stderr, flush=True)
    time.sleep(30)
    return done
shutil.copyfile = held
from summon.cli.main import main
sys.argv[0] = "summon"
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_rootfs_export_leaves_nothing_at_its_destination(
    signum: int, tmp_path: Path
) -> None:
    # SIGINT left the half copy (.out.PID.tmp) beside -o; SIGTERM too, and said nothing.
    env = {"SUMMON_STORE": str(tmp_path / "store"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    argv = ["build", str(EXAMPLES / "hello"), "-t", "hello:1", "--no-verify", "-q"]
    assert subprocess.run([sys.executable, "-m", "summon", *argv], env={**os.environ, **env,
                          "PYTHONPATH": SRC}, capture_output=True).returncode == 0  # fmt: skip
    (tmp_path / "out").mkdir()
    argv = [
        "-c",
        HELD_COPY,
        "export",
        "hello:1",
        "--as",
        "rootfs",
        "-o",
        str(tmp_path / "out" / "root"),
    ]
    status, said = signalled_at("copied a file", signum, argv, env, module=())
    assert status == 128 + signum, said
    last = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    assert said.endswith(f"copied a file\nsummon: error: {last}\n"), said
    assert list((tmp_path / "out").iterdir()) == []
