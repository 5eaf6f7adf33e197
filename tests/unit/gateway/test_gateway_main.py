"""The gateway's own process: started lean, with the user's PYTHONPATH back for its instances."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import summon
from summon.gateway import main as gateway_main

SUMMON_ROOT = str(Path(summon.__file__).resolve().parents[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    async def serve(path: Path, checked: dict[str, Any] | None = None) -> None:
        seen["PYTHONPATH"] = os.environ.get("PYTHONPATH")
        seen["config"] = str(path)

    monkeypatch.setattr(gateway_main, "serve", serve)
    assert gateway_main.main(["--config", str(tmp_path / "gw.toml")]) == 0
    assert seen == {"PYTHONPATH": None, "config": str(tmp_path / "gw.toml")}


def test_the_checked_config_is_handed_over_and_not_to_the_instances(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    doc = {"gateway": {"zone": "x.test"}, "service": [{"name": "web", "image": "http:1"}]}
    _argv, env = gateway_main.lean_command(tmp_path / "gw.toml", False, doc)
    assert json.loads(env[gateway_main.CHECKED_CONFIG]) == doc
    # What JSON cannot say (a TOML date), or too much for one environment string: the
    # gateway's process reads the file itself.
    dated = {"service": [{"name": "web", "options": {"when": datetime.date(2024, 1, 1)}}]}
    big = {"service": [{"name": f"s{i}", "image": "x" * 1000} for i in range(200)]}
    for other in (dated, big, None):
        _argv, env = gateway_main.lean_command(tmp_path / "gw.toml", False, other)
        assert gateway_main.CHECKED_CONFIG not in env
    seen: list[Any] = []

    async def serve(path: Path, checked: dict[str, Any] | None = None) -> None:
        seen.append((checked, os.environ.get(gateway_main.CHECKED_CONFIG)))

    monkeypatch.setattr(gateway_main, "serve", serve)
    monkeypatch.setenv(gateway_main.CHECKED_CONFIG, json.dumps(doc))
    assert gateway_main.main(["--config", str(tmp_path / "gw.toml")]) == 0
    monkeypatch.setenv(gateway_main.CHECKED_CONFIG, "{not json")
    assert gateway_main.main(["--config", str(tmp_path / "gw.toml")]) == 0
    assert seen == [(doc, None), (None, None)]


# Modules the gateway at rest does without: the TOML parser (the CLI hands over the config it
# checked), the store's and the targets' instance code (gateway/ahead.py prepares images in a
# process of its own), the html module's entity table, the volumes' and secrets' code.
NOT_AT_REST = (
    "tomllib", "datetime", "html", "summon.store", "summon.store.image", "tarfile", "ctypes",
    "summon.targets.sandbox.instance", "summon.targets.sandbox.rootmount", "shutil", "lzma",
    "summon.targets.volumes", "summon.secrets",
)  # fmt: skip
AT_REST_PROBE = """
import asyncio, json, os, sys, threading
from pathlib import Path
from summon.gateway import main
doc = json.loads(os.environ[main.CHECKED_CONFIG])

async def status() -> bytes:
    host, port = doc["gateway"]["status"].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /status.json HTTP/1.1\\r\\nhost: gw\\r\\n\\r\\n")
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return body

async def at_rest() -> None:
    served = asyncio.ensure_future(main.serve(Path("gw.toml"), doc))
    for _ in range(200):
        await asyncio.sleep(0.05)
        try:
            body = await status()
            break
        except OSError:
            pass
    for _ in range(100):  # the ahead process's thread ends within a second or so, or never
        await asyncio.sleep(0.1)
        if threading.active_count() == 1:
            break
    services = json.loads(body)["services"]
    print(json.dumps({"modules": sorted(sys.modules), "threads": threading.active_count(),
                      "states": [s["state"] for s in services]}))
    os.kill(os.getpid(), 15)
    await served

asyncio.run(at_rest())
"""


def test_the_gateway_at_rest_loads_only_what_it_uses(tmp_path: Path) -> None:
    dns, status, web = (free_port() for _ in range(3))
    doc = {
        "gateway": {"dns": f"127.0.0.1:{dns}", "status": f"127.0.0.1:{status}"},
        "service": [{"name": f"web{i}", "image": "nothing:1", "ports": [web]} for i in range(3)],
    }
    argv, env = gateway_main.lean_command(tmp_path / "gw.toml", False, doc)
    env.update(SUMMON_STORE=str(tmp_path / "store"), XDG_STATE_HOME=str(tmp_path / "state"))
    r = subprocess.run(
        [*argv[:3], "-c", AT_REST_PROBE], env=env, capture_output=True, text=True, cwd=tmp_path,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.splitlines()[-1])
    assert report["states"] == ["down"] * 3
    assert sorted(set(NOT_AT_REST) & set(report["modules"])) == []
    assert report["threads"] == 1  # no worker thread waits at rest


@pytest.mark.parametrize("which", ["DNS", "status"])
def test_a_busy_address_at_start_is_named(
    which: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ "gateway: cannot listen: Address already in use" said neither which nor where."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        dns, status = (port, free_port()) if which == "DNS" else (free_port(), port)
        config = tmp_path / "gw.toml"
        config.write_text(f'[gateway]\ndns = "127.0.0.1:{dns}"\nstatus = "127.0.0.1:{status}"\n')
        assert gateway_main.main(["--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"summon: error: gateway: cannot listen on 127.0.0.1:{port} for its {which} server: "
        "Address already in use\n"
    )


def test_a_state_folder_it_cannot_write_to_is_one_line_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """XDG_STATE_HOME naming what cannot hold the instances' bundles and logs: the gateway
    started, and every boot failed with "[Errno 2] No such file or directory: '/proc/nope'"."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "a-file"))
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\ndns = "127.0.0.1:{free_port()}"\nstatus = "127.0.0.1:{free_port()}"\n'
    )
    assert gateway_main.main(["--config", str(config)]) == 2
    folder = tmp_path / "a-file" / "summon" / "gateway"
    assert capsys.readouterr().err == (
        f"summon: error: gateway: cannot write to its state folder {folder}: Not a directory; "
        "make it one it can write, or set XDG_STATE_HOME to one\n"
    )
    gateway_main.writable(tmp_path / "state" / "gateway")  # made, and written to
    assert (tmp_path / "state" / "gateway").is_dir()


def test_a_missing_secret_file_stops_the_start_naming_service_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway started, and the service failed at its first request."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\ndns = "127.0.0.1:{free_port()}"\nstatus = "127.0.0.1:{free_port()}"\n'
        f'[[service]]\nname = "web"\nimage = "web:1"\nsecrets = ["k={tmp_path}/gone"]\n'
    )
    assert gateway_main.main(["--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"summon: error: {config}: service 'web': secrets: k={tmp_path}/gone: no such file\n"
    )
