"""A range of ports end to end: the manifest lists "9000-9002", `summon run -p` publishes
a range onto it, each port reaches the app, and ps shows the range as one."""

from __future__ import annotations

import socket
import time

import pytest
from summon_cli import APPS, Summon, free_port, needs_sandbox


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    return Summon(tmp_path_factory.mktemp("home"))


def _answer(port: int, deadline: float) -> str:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                return conn.recv(100).decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _free_run(n: int) -> int:
    """The first of n consecutive free TCP ports on 127.0.0.1."""
    for _ in range(50):
        first = free_port()
        if first + n <= 65535 and all(_free(first + i) for i in range(1, n)):
            return first
    raise AssertionError(f"no {n} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@needs_sandbox
def test_a_range_of_ports_reaches_the_app(summon: Summon) -> None:
    summon.ok("build", str(APPS / "portrange"), "-t", "portrange:test")
    first = _free_run(3)
    last = first + 2
    r = summon("run", "-d", "--name", "ranges", "portrange:test", "--target", "sandbox",
               "-p", f"{first}-{last}:9000-9002")  # fmt: skip
    assert r.returncode == 0, r.stderr
    try:
        # One line for the range (there was one -p per port, and a line for each).
        assert f"serving tcp on 127.0.0.1:{first}-{last}\n" in r.stderr, r.stderr
        assert "warning" not in r.stderr  # the image lists the range
        deadline = time.monotonic() + 20
        assert [_answer(first + i, deadline) for i in range(3)] == [
            "port 9000\n", "port 9001\n", "port 9002\n",
        ]  # fmt: skip
        row = summon.ps()["ranges"]
        assert row["ports"] == [f"127.0.0.1:{first + i}->{9000 + i}/tcp" for i in range(3)]
        table = summon.ok("ps")
        assert f"127.0.0.1:{first}-{last}->9000-9002/tcp" in table
    finally:
        summon("rm", "-f", "ranges")
