"""What boots leave in the gateway's state folder: not a folder and a log per boot, forever.

A gateway scaling a service to zero boots it again and again (every few minutes, for months);
each boot gets a state folder and a console log there, gw-SERVICE-PID-SEQ.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fakes import FakeTarget

from summon.gateway.config import ServiceConfig
from summon.gateway.server import ImageLauncher
from summon.instances import scratch


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
    started = {}
    for seq, config in enumerate([web, other, web, web, web, web], start=1):
        name = f"gw-{config.name}-100-{seq}"
        started[name] = launcher(config, (), name).instance
        os.utime(root / f"{name}.log", (1000 + seq, 1000 + seq))
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
