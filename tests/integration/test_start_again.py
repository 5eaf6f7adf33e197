"""`summon start` and `summon restart`: an exited instance runs again as it was run.

Before, a stopped instance could only be removed and run anew (new ID, flags typed again):
there was no docker-like start or restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from summon_cli import EXAMPLES, Summon, free_port, get, needs_sandbox

pytestmark = needs_sandbox


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Summon]:
    s = Summon(tmp_path_factory.mktemp("home"))
    s.ok("build", str(EXAMPLES / "http"), "-t", "http:again")
    yield s
    s("rm", "-f", "web")


def test_a_stopped_instance_starts_again_as_it_was_run(summon: Summon) -> None:
    port = free_port()
    ident = summon.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "http:again").strip()
    assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    summon.ok("stop", "-t", "5", "web")
    assert summon.ps()["web"]["status"] == "exited"

    assert summon.ok("start", "web").strip() == "web"
    row = summon.ps()["web"]  # the same instance: its ID, port and image
    assert (row["id"], row["status"], row["ports"]) == (
        ident, "running", [f"127.0.0.1:{port}->80/tcp"]
    )  # fmt: skip
    assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)

    again = summon("start", "web")  # running already: left as it is, as docker does
    assert again.returncode == 0 and "is running already" in again.stderr, again.stderr
    before = summon.inspect("web")["pid"]
    assert summon.ok("restart", "-t", "5", "web").strip() == "web"
    assert summon.inspect("web")["pid"] != before  # a new app process
    assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    assert summon.ok("logs", "web").count("serving 3 files on port 80") == 3

    missing = summon("start", "nosuch")
    assert missing.returncode == 2 and "no instance 'nosuch'" in missing.stderr


def test_start_checks_the_signing_policy_again(summon: Summon) -> None:
    """verify_key set in config.toml since the run: the unsigned image does not start."""
    summon("rm", "-f", "web")
    summon.ok("run", "-d", "--name", "web", "http:again")
    summon.ok("stop", "-t", "5", "web")
    summon.ok("key", "generate", str(summon.home / "team"))
    config = summon.home / "config" / "summon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'verify_key = "{summon.home / "team.pub"}"\n')
    try:
        r = summon("start", "web")
    finally:
        config.unlink()
    assert r.returncode == 2, r.stderr
    assert "is not signed" in r.stderr and f"(refused by verify_key in {config})" in r.stderr
    assert summon.ps()["web"]["status"] == "exited"


def test_start_after_its_logs_folder_was_removed(summon: Summon) -> None:
    """The logs deleted by hand to free room: start was an internal error (no monitor.log's
    folder); the folder is made again and the instance runs."""
    import shutil

    summon("rm", "-f", "web")
    port = free_port()
    ident = summon.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "http:again").strip()
    summon.ok("stop", "-t", "5", "web")
    shutil.rmtree(summon.instances / ident / "logs")
    r = summon("start", "web")
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr
    assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    assert "serving 3 files on port 80" in summon.ok("logs", "web")
    summon.ok("rm", "-f", "web")
