"""What the unix target says while it starts reaches the user of `summon run -d` and
`summon logs`, as the qemu target's snapshot notices do (Target.hear_notices)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from summon.targets.base import RunSpec, Volume
from summon.targets.unix import UnixTarget


def test_a_starts_warning_reaches_its_console_and_whoever_hears_the_target(
    test_rootfs: Path,
    app_script: Callable[[str], tuple[str, ...]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: "warning: -v ...: a plain host process has no mounts of its own" went only to
    # summon's stderr, which for `run -d` is monitor.log: the user saw a clean start, and
    # `summon logs` had only the app's output.
    heard: list[str] = []
    target = UnixTarget()
    target.hear_notices(heard.append)
    folder = tmp_path / "mine"
    folder.mkdir()
    read_end, write_end = os.pipe()
    spec = RunSpec(
        name="unix-notices",
        image="test",
        rootfs=test_rootfs,
        app_config={"volumes": ["/data"]},
        argv=app_script("print('up', flush=True)"),
        state_dir=tmp_path / "state",
        stdout=write_end,
        volumes=(Volume(str(folder), "/data"),),
    )
    try:
        assert target.start(spec).wait(30) == 0
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        console = f.read().decode()
    warning = f"warning: -v {folder}:/data: a plain host process has no mounts of its own"
    assert len(heard) == 1 and heard[0].startswith(warning)
    assert console == f"summon: {heard[0]}\nup\n"
    assert capsys.readouterr().err == f"summon: {heard[0]}\n"  # a foreground run's terminal
    target.hear_notices(None)
    spec = RunSpec(**{**spec.__dict__, "stdout": None})
    assert target.start(spec).wait(30) == 0
    assert len(heard) == 1
