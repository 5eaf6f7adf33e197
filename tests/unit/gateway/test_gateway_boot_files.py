"""What boots leave in the gateway's state folder: not a folder and a log per boot, forever.

A gateway scaling a service to zero boots it again and again (every few minutes, for months);
each boot gets a state folder and a console log there, gw-SERVICE-PID-SEQ.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fakes import FakeTarget

from summon import targets
from summon.gateway.config import ServiceConfig
from summon.gateway.server import ImageLauncher
from summon.instances import scratch
from summon.targets.base import Instance, RunSpec


class FakeImage:
    ref = "web:1"
    config: ClassVar[dict[str, Any]] = {}
    desc = SimpleNamespace(digest="sha256:" + "0" * 64)

    def app_config(self) -> dict[str, Any]:
        return {}

    def rootfs(self) -> Path:
        return Path("/nonexistent")


def test_each_boot_forgets_stopped_boots_but_the_last_and_keeps_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_target: type[FakeTarget]
) -> None:
    monkeypatch.setattr(scratch, "LEASES", tmp_path / "leases")
    root = tmp_path / "gateway"
    launcher = ImageLauncher(state_root=root)
    monkeypatch.setattr(launcher, "_prepared", lambda config, target, step: FakeImage())
    web = ServiceConfig("web", "web:1", target="fake")
    other = ServiceConfig("web-api", "web:1", target="fake")
    root.mkdir()
    (root / "gw-web-50-1.log").write_text("a dead gateway's: its folder was swept\n")
    (root / "gw-web-50-1.log.1").write_text("and the part its log rotated out\n")
    for old in root.iterdir():
        os.utime(old, (900, 900))
    started = {}
    for seq, config in enumerate([web, other, web, web, web, web], start=1):
        name = f"gw-{config.name}-100-{seq}"
        started[name] = launcher(config, (), name).instance
        while not (root / f"{name}.log").read_bytes():  # the console's pump has written
            time.sleep(0.01)
        for made in (root / name, root / f"{name}.log"):
            os.utime(made, (1000 + seq, 1000 + seq))
        if seq != 5:  # boot 5 is still up (stopping, say, while 6 boots)
            started[name].stop()
            scratch.release_for(started[name])
    assert sorted(p.name for p in root.iterdir()) == [
        "gw-web-100-4",  # the last stopped boot: its log says how it ended
        "gw-web-100-4.log",
        "gw-web-100-5",
        "gw-web-100-5.log",
        "gw-web-100-6",
        "gw-web-100-6.log",
        "gw-web-api-100-2",  # another service's
        "gw-web-api-100-2.log",
    ]
    started["gw-web-100-5"].stop()
    scratch.release_for(started["gw-web-100-5"])


def test_without_leases_nothing_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_target: type[FakeTarget]
) -> None:
    """Not root: no lease says which boots still run, so every file stays."""
    (tmp_path / "leases").write_text("not a folder")
    monkeypatch.setattr(scratch, "LEASES", tmp_path / "leases")
    root = tmp_path / "gateway"
    launcher = ImageLauncher(state_root=root)
    monkeypatch.setattr(launcher, "_prepared", lambda config, target, step: FakeImage())
    web = ServiceConfig("web", "web:1", target="fake")
    for seq in range(1, 4):
        launcher(web, (), f"gw-web-100-{seq}").instance.stop()
    assert len(list(root.iterdir())) == 6


class ChattyTarget(FakeTarget):
    """Its app writes 256 KB to its console as it starts, more than a pipe holds."""

    def start(self, spec: RunSpec) -> Instance:
        assert spec.stdout is not None
        for _ in range(64):
            os.write(spec.stdout, b"x" * 4095 + b"\n")
        return super().start(spec)


def test_a_full_disk_under_the_logs_never_fails_the_apps_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's console was the log file itself: on a full disk every print raised in the
    app (Flask answered 500 to everything, even once there was room again). It is a pipe the
    gateway drains into a bounded log, as a detached instance's monitor does."""
    monkeypatch.setattr(scratch, "LEASES", tmp_path / "leases")
    targets.register("chatty", ChattyTarget)
    try:
        root = tmp_path / "gateway"
        launcher = ImageLauncher(state_root=root)
        monkeypatch.setattr(launcher, "_prepared", lambda config, target, step: FakeImage())
        root.mkdir()
        (root / "gw-web-100-1.log").symlink_to("/dev/full")  # every write: ENOSPC
        launched = launcher(ServiceConfig("web", "web:1", target="chatty"), (), "gw-web-100-1")
        launched.instance.stop()
    finally:
        targets.unregister("chatty")
