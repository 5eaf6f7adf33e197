"""`summon start` checks an instance's ports as `summon run` does, before anything starts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli
from summon.instances import state


def test_start_of_an_instance_whose_port_is_taken_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A unix instance's app binds its own ports: with one taken since, `summon start web`
    # printed "web", status 0, and the instance exited at once (a traceback in its log).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        forward = {"host_port": port, "guest_port": 53, "protocol": "udp", "host_addr": "127.0.0.1"}
        run = {"name": "n", "image": "i", "rootfs": "/", "app_config": {}, "ports": [forward]}
        folder, lock_fd = state.create({"run": run, "target": "unix"}, "web", "app")
        folder.update_state(status="exited", exit_code=0)
        os.close(lock_fd)
        r = CliRunner().invoke(cli, ["start", "web"])
    assert r.exit_code == 2, r.output
    assert (r.stdout, r.stderr) == ("", (
        f"summon: error: -p 127.0.0.1:{port}/udp: cannot listen there (Address already in "
        "use); choose another host port or a local address\n"
    ))  # fmt: skip
    assert folder.state()["status"] == "exited" and not folder.supervised()
