"""The gateway's own process: started lean, with the user's PYTHONPATH back for its instances."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import summon
from summon.gateway import main as gateway_main

SUMMON_ROOT = str(Path(summon.__file__).resolve().parents[1])


def test_the_gateway_runs_without_site_or_click_and_finds_summon(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/the/users/own")
    argv, env = gateway_main.lean_command(tmp_path / "gw.toml", verbose=True)
    assert argv[:5] == [sys.executable, "-S", "-P", "-m", "summon.gateway.main"]
    assert argv[5:] == ["--config", str(tmp_path / "gw.toml"), "-v"]
    assert env[gateway_main.ORIGINAL_PYTHONPATH] == "/the/users/own"
    # What that process would import, checked in one started the same way.
    probe = (
        "import sys, summon.gateway.main, summon.gateway.server\n"
        "print(sys.flags.no_site, 'click' in sys.modules, 'site' in sys.modules)"
    )
    # A file in the working folder cannot shadow what the gateway imports (-P).
    (tmp_path / "asyncio.py").write_text("raise SystemExit('shadowed')\n")
    r = subprocess.run(
        [*argv[:3], "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "False", "False"]
    assert SUMMON_ROOT in env["PYTHONPATH"].split(os.pathsep)


def test_bad_arguments_are_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main.main(["--nope"]) == 2
    assert capsys.readouterr().err == "usage: summon gateway --config PATH [-v]\n"


def test_the_users_pythonpath_is_put_back_for_the_instances(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", "lean")
    monkeypatch.setenv(gateway_main.ORIGINAL_PYTHONPATH, "")
    seen: dict[str, str | None] = {}

    async def serve(path: Path) -> None:
        seen["PYTHONPATH"] = os.environ.get("PYTHONPATH")
        seen["config"] = str(path)

    monkeypatch.setattr(gateway_main, "serve", serve)
    assert gateway_main.main(["--config", str(tmp_path / "gw.toml")]) == 0
    assert seen == {"PYTHONPATH": None, "config": str(tmp_path / "gw.toml")}
