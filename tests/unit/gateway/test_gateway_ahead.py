"""Images read and prepared ahead of the first boot, in a process of their own (ahead.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from summon.errors import UserError
from summon.gateway import ahead
from summon.gateway.config import ServiceConfig
from summon.gateway.server import ImageLauncher

SERVICES = (ServiceConfig("web", "http:1"), ServiceConfig("api", "http:1", target="unix"))


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def fake_process(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """ahead.run starts `python -c script` instead of the real process."""
    monkeypatch.setattr(ahead, "command", lambda: ([sys.executable, "-c", script], {}))


class Heard:
    def __init__(self) -> None:
        self.boms: dict[str, dict[str, Any]] = {}
        self.ready: list[str] = []

    def found(self, name: str, bom: dict[str, Any]) -> None:
        self.boms[name] = bom

    def done(self, name: str) -> None:
        self.ready.append(name)


def test_what_the_process_says_reaches_the_gateway(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        {"names": ["web", "api"], "bom": {"python": "3.11.2"}},
        {"names": ["web"], "step": "deriving the root filesystem"},
        {"names": ["web"], "error": ""},
        {"names": ["api"], "error": "no such target option"},
    ]
    script = (
        "import json, sys\n"
        "request = json.load(sys.stdin)\n"
        "assert [s['name'] for s in request['services']] == ['web', 'api'], request\n"
        f"assert request['store'] == {str(tmp_path)!r}\n"
        "print('not a message')\n"
        + "".join(f"print({json.dumps(json.dumps(line))})\n" for line in lines)
    )
    fake_process(monkeypatch, script)
    heard = Heard()
    caplog.set_level("INFO", logger="summon.gateway.server")
    outcomes: dict[str, str] = {}
    run(ahead.run(tmp_path, SERVICES, heard.found, heard.done, outcomes.__setitem__))
    assert heard.boms == {"web": {"python": "3.11.2"}, "api": {"python": "3.11.2"}}
    assert heard.ready == ["web", "api"]
    assert outcomes == {"web": "", "api": "no such target option"}
    assert "web: deriving the root filesystem" in caplog.text
    assert "service api: cannot prepare its image: no such target option" in caplog.text
    assert "service web: cannot" not in caplog.text


def test_a_process_that_dies_leaves_every_service_ready_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_process(monkeypatch, 'print(\'{"names": ["web"], "error": ""}\'); raise SystemExit(3)')
    heard = Heard()
    run(ahead.run(tmp_path, SERVICES, heard.found, heard.done))
    assert sorted(heard.ready) == ["api", "web"]
    assert "service api: cannot prepare its image: exited with status 3" in caplog.text
    assert "service web" not in caplog.text


def test_the_gateway_stopping_ends_the_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    fake_process(
        monkeypatch,
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    )
    heard = Heard()

    async def main() -> None:
        task = asyncio.ensure_future(ahead.run(tmp_path, SERVICES, heard.found, heard.done))
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.monotonic()
    run(main())
    assert time.monotonic() - t0 < 10
    assert sorted(heard.ready) == ["api", "web"]
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_the_real_process_reports_a_missing_image(tmp_path: Path) -> None:
    argv, env = ahead.command()
    request = ahead.request(tmp_path / "store", SERVICES)
    r = subprocess.run(argv, input=request, env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    messages = [json.loads(line) for line in r.stdout.splitlines()]
    assert messages[0] == {"names": ["web", "api"], "bom": {}}
    errors = {tuple(m["names"]): m["error"] for m in messages[1:]}
    assert set(errors) == {("web",), ("api",)}  # two targets: two preparations
    assert all("http:1" in error for error in errors.values()), errors


def test_a_boot_waits_for_the_ahead_preparation_of_its_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    launcher = ImageLauncher(state_root=tmp_path / "state")
    monkeypatch.setattr(launcher, "store_root", tmp_path / "store")
    finished: list[str] = []

    async def slow_run(
        store: Path, services: Any, found: Any, ready: Any, prepared: Any = None
    ) -> None:
        await asyncio.sleep(0.5)
        for s in services:
            ready(s.name)

    monkeypatch.setattr(ahead, "run", slow_run)

    def boot() -> None:
        try:
            launcher._prepared(SERVICES[0], launcher.target(SERVICES[0]), lambda step: None)
        except UserError:  # no such image: past the wait
            finished.append(f"{time.monotonic() - t0:.1f}")

    async def main() -> None:
        task = asyncio.ensure_future(launcher.ahead(SERVICES, lambda name, bom: None))
        await asyncio.sleep(0)
        thread = threading.Thread(target=boot)
        thread.start()
        await asyncio.sleep(0.2)
        assert not finished  # still waiting
        await task
        await asyncio.to_thread(thread.join, 10)

    t0 = time.monotonic()
    run(main())
    assert len(finished) == 1 and float(finished[0]) >= 0.4


def test_the_summary_names_the_tcp_ports_the_image_serves() -> None:
    bom = {"app": {"ports": ["8000/tcp", "53/udp", "9090/tcp"]}, "name": "api"}
    assert ahead.bom_summary(bom)["ports"] == [8000, 9090]
    assert ahead.image_tcp_ports({"app": {}}) == []
