"""Detached instances end to end: run -d, ps, logs, stats, stop, rm, restarts, a killed monitor.

Real builds into a throw-away store and state folder (XDG_DATA_HOME, XDG_STATE_HOME) for the
module; real monitors, runc and apps. Every instance is removed (rm -f) after each test, and
no process of any instance may be left then.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from summon_cli import APPS, EXAMPLES, Summon, free_port, get, needs_sandbox


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    return Summon(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def http_image(summon: Summon) -> str:
    summon.ok("build", str(EXAMPLES / "http"), "-t", "http:test")
    return "http:test"


@pytest.fixture(scope="module")
def crash_image(summon: Summon) -> str:
    summon.ok("build", str(APPS / "crash"), "-t", "crash:test")
    return "crash:test"


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def instance_processes(ids: list[str], pids: list[int] | None = None) -> list[str]:
    """Processes of these instances still alive: monitor and init (their command line holds
    the ID), runc (the container id is summon-<short ID>), and any of the given pids."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if zombie:
            continue
        if any(i in cmdline or f"summon-{i[:12]}" in cmdline for i in ids) or (
            int(entry.name) in (pids or []) and cmdline
        ):
            alive.append(f"{entry.name} {cmdline[:120]}")
    return alive


def netns_of(ids: list[str]) -> list[str]:
    netns = Path("/run/netns")
    names = os.listdir(netns) if netns.is_dir() else []
    return [n for n in names if any(n == f"summon-{i[:12]}" for i in ids)]


@pytest.fixture(autouse=True)
def _clean_up(summon: Summon) -> Iterator[None]:
    """rm -f every instance after each test; then none of their processes may be left."""
    yield
    folders = summon.instances.iterdir() if summon.instances.is_dir() else iter(())
    ids = [p.name for p in folders if len(p.name) == 64]
    if ids:
        r = summon("rm", "-f", *ids)
        assert r.returncode == 0, r.stderr
    assert instance_processes(ids) == []
    assert netns_of(ids) == []


# --- the life of an instance -----------------------------------------------------------------


@needs_sandbox
def test_http_detached_on_the_sandbox(summon: Summon, http_image: str) -> None:
    port = free_port()
    began = time.monotonic()
    r = summon("run", "-d", http_image, "--target", "sandbox", "-p", f"{port}:80")
    assert r.returncode == 0, r.stderr
    ident = r.stdout.strip()
    assert len(ident) == 64 and int(ident, 16) >= 0  # only the ID on stdout
    assert f"serving tcp on 127.0.0.1:{port}" in r.stderr
    started = time.monotonic() - began
    print(f"run -d returned in {started:.2f}s")

    page = get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    assert "hello from a unikernel" in page

    row = summon.ps()["http-1"]  # the first name generated from the app's name
    assert row["id"] == ident and row["status"] == "running"
    assert row["status_text"].startswith("Up ")
    assert (row["image"], row["target"], row["restarts"]) == (http_image, "sandbox", 0)
    assert row["ports"] == [f"127.0.0.1:{port}->80/tcp"]
    table = summon.ok("ps")
    header, line = table.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "IMAGE", "TARGET", "STATUS", "RESTARTS", "PORTS"]
    assert line.split()[:4] == [ident[:12], "http-1", http_image, "sandbox"]

    logs = summon.ok("logs", ident[:6])  # a short prefix works wherever an ID does
    assert "GET / 200" in logs
    assert summon.ok("logs", "--tail", "1", "http-1").count("\n") == 1

    (stats,) = json.loads(summon.ok("stats", "--no-stream", "--json", "http-1"))
    assert stats["running"] and 1_000_000 < stats["memory_bytes"] < stats["memory_limit"]
    assert stats["cpu_percent"] is not None and stats["cpu_percent"] >= 0
    assert "MEM USAGE / LIMIT" in summon.ok("stats", "--no-stream")

    doc = summon.inspect("http-1")
    assert doc["id"] == ident and doc["spec"]["image"]["ref"] == http_image
    assert doc["spec"]["image"]["digest"].startswith("sha256:")
    # The app's pid is the host's (the monitor sees its own pid namespace's).
    assert Path(f"/proc/{doc['pid']}/cmdline").read_bytes().startswith(b"/usr/bin/python3.11")
    assert "http:test" in summon.ok("inspect", http_image)  # an image ref still means the image

    r = summon("rm", "http-1")
    assert r.returncode == 2 and "is running" in r.stderr

    assert summon.ok("stop", "-t", "5", "http-1").strip() == "http-1"
    row = summon.ps()["http-1"]
    # 0, not 137: the app shut down on SIGTERM; no kill was needed.
    assert (row["status"], row["exit_code"], row["reason"]) == ("exited", 0, "stopped")
    assert summon.ok("ps").count("\n") == 1  # header only: exited instances need -a
    assert instance_processes([ident], [doc["pid"]]) == []
    assert netns_of([ident]) == []

    assert summon.ok("rm", "http-1").strip() == "http-1"
    assert "http-1" not in summon.ps()
    assert not (summon.instances / ident).exists()


@needs_sandbox
def test_a_run_without_p_serves_in_its_namespace_without_a_refusal(
    summon: Summon, http_image: str
) -> None:
    """Without -p the app's Stack called socket() itself, which the profile recorded with
    handed listeners refuses: a line said to add syscalls = ["socket"], and the app said it
    served port 80 while asyncio's server had no socket at all."""
    from summon.build.undeclared import listening

    ident = summon.ok("run", "-d", http_image, "--target", "sandbox").strip()
    wait_for(lambda: "serving" in summon.ok("logs", ident))
    pid = summon.inspect(ident)["pid"]
    assert ("127.0.0.1", 80) in listening(pid)  # 0.0.0.0:80 in its own namespace
    assert "refused" not in summon.ok("logs", ident)


def test_rm_f_of_an_instance_run_with_rm(summon: Summon, http_image: str) -> None:
    """rm -f stops it, and its init (--rm) removes the folder meanwhile: one removal, no error."""
    port = free_port()
    r = summon("run", "-d", "--rm", http_image, "--target", "unix", "-p", f"{port}:80")
    assert r.returncode == 0, r.stderr
    ident = r.stdout.strip()
    assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    r = summon("rm", "-f", ident[:12])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ident[:12]
    assert not (summon.instances / ident).exists()
    assert instance_processes([ident]) == []


@pytest.mark.parametrize("target", [pytest.param("sandbox", marks=needs_sandbox), "unix"])
def test_a_killed_monitor_leaves_no_orphan(summon: Summon, http_image: str, target: str) -> None:
    port = free_port()
    ident = summon.ok("run", "-d", http_image, "--target", target, "-p", f"{port}:80").strip()
    get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    doc = summon.inspect(ident)
    monitor, app = doc["state"]["monitor_pid"], doc["state"]["pid"]
    assert instance_processes([ident], [app])  # alive before

    os.kill(monitor, signal.SIGKILL)
    # Nothing of it is left within a few seconds: not the app, runc, the container or init.
    wait_for(lambda: instance_processes([ident], [app]) == [], timeout=5)
    assert netns_of([ident]) == []
    row = summon.ps()[doc["name"]]
    assert row["status"] == "exited"
    assert row["reason"] == "monitor died (killed by SIGKILL)"
    assert "Exited (monitor died)" in row["status_text"]
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/", time.monotonic())


@pytest.mark.parametrize("target", [pytest.param("sandbox", marks=needs_sandbox), "unix"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_a_foreground_runs_process_group_stops_the_app(
    summon: Summon, http_image: str, target: str, sig: signal.Signals
) -> None:
    """`timeout`, `kill %1` and a closed terminal signal the whole process group. The attached
    launcher died of it, taking init and the monitor with it: the app was never asked to stop
    and `ps -a` said "Exited (monitor died)"."""
    port = free_port()
    name = f"group-{target}-{sig.name.lower()}"
    argv = summon.argv("run", http_image, "--target", target, "-p", f"{port}:80", "--name", name)
    with subprocess.Popen(
        argv,
        env=summon.env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
            os.killpg(proc.pid, sig)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "info: stopped" in out  # the app's own shutdown ran
    row = summon.ps()[name]
    assert (row["status"], row["exit_code"], row["reason"]) == ("exited", 0, "stopped")


@needs_sandbox
def test_a_killed_init_is_reconciled_by_ps(summon: Summon, http_image: str) -> None:
    """SIGKILL to init takes the whole pid namespace down; ps then records and cleans up."""
    ident = summon.ok("run", "-d", http_image, "--target", "sandbox").strip()
    doc = summon.inspect(ident)
    os.kill(doc["state"]["init_pid"], signal.SIGKILL)
    wait_for(lambda: instance_processes([ident], [doc["pid"]]) == [], timeout=5)
    row = summon.ps()[doc["name"]]
    assert (row["status"], row["reason"]) == ("exited", "monitor died")
    assert netns_of([ident]) == []  # released by ps's reconciling


# --- restart policies --------------------------------------------------------------------------


@needs_sandbox
def test_on_failure_restarts_then_gives_up(summon: Summon, crash_image: str) -> None:
    r = summon("run", "-d", crash_image, "--target", "sandbox", "--restart", "on-failure:2")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: summon.ps()["crash-1"]["status"] == "exited")
    row = summon.ps()["crash-1"]
    assert (row["exit_code"], row["restarts"], row["reason"]) == (3, 2, "exited")
    assert row["status_text"].startswith("Exited (3)")
    assert summon.inspect("crash-1")["restarts"] == 2
    assert summon.ok("logs", "crash-1").count("crash app up, exiting with 3") == 3
    table = summon.ok("ps", "-a")
    row_words = [line.split() for line in table.splitlines()]
    assert any(words[1] == "crash-1" and words[-1] == "2" for words in row_words)


def test_always_restarts_after_success(summon: Summon, crash_image: str) -> None:
    summon.ok(
        "run", "-d", crash_image, "--target", "unix", "--restart", "always",
        "-e", "CRASH_STATUS=0", "--name", "loop",
    )  # fmt: skip
    wait_for(lambda: summon.ps()["loop"]["restarts"] >= 2)
    assert summon.ps()["loop"]["status"] in ("running", "restarting")
    summon.ok("stop", "loop")
    row = summon.ps()["loop"]
    assert (row["status"], row["reason"]) == ("exited", "stopped")
    # Each run logs its line; the last restart may have been stopped before its app printed.
    runs = summon.ok("logs", "loop").count("exiting with 0")
    assert row["restarts"] <= runs <= row["restarts"] + 1


def test_sigterm_to_the_monitor_stops_cleanly(summon: Summon, crash_image: str) -> None:
    summon.ok(
        "run", "-d", crash_image, "--target", "unix", "--restart", "always",
        "-e", "CRASH_STATUS=0", "-e", "CRASH_SLEEP=60", "--name", "termed",
    )  # fmt: skip
    doc = summon.inspect("termed")
    os.kill(doc["monitor_pid"], signal.SIGTERM)
    wait_for(lambda: summon.ps()["termed"]["status"] == "exited", timeout=15)
    row = summon.ps()["termed"]
    # The runtime turned the SIGTERM into a clean exit (0), and the always policy did not
    # start the app again: a stop is no exit to restart after.
    assert (row["exit_code"], row["reason"], row["restarts"]) == (0, "stopped", 0)


def test_ps_q_lists_ids_that_rm_takes(summon: Summon, crash_image: str) -> None:
    # `summon rm -f $(summon ps -aq)`, as with docker: -q was "No such option".
    for name in ("q1", "q2"):
        summon.ok(
            "run", "-d", crash_image, "--target", "unix", "--name", name,
            "-e", "CRASH_SLEEP=60",
        )  # fmt: skip
    summon.ok("stop", "-t", "0", "q1")
    ids = {name: row["short_id"] for name, row in summon.ps().items()}
    assert summon.ok("ps", "-q").splitlines() == [ids["q2"]]
    assert sorted(summon.ok("ps", "-aq").splitlines()) == sorted([ids["q1"], ids["q2"]])
    assert_one_line_error(summon("ps", "-q", "--json"), "-q and --json")
    summon.ok("rm", "-f", *summon.ok("ps", "-aq").split())
    assert summon.ok("ps", "-aq") == ""


def test_stop_kills_after_the_grace_period(summon: Summon, crash_image: str) -> None:
    summon.ok(
        "run", "-d", crash_image, "--target", "unix", "--name", "stubborn",
        "-e", "CRASH_IGNORE_TERM=1", "-e", "CRASH_SLEEP=60",
    )  # fmt: skip
    app = summon.inspect("stubborn")["pid"]
    summon.ok("stop", "-t", "0.5", "stubborn")
    row = summon.ps()["stubborn"]
    assert (row["exit_code"], row["reason"]) == (137, "stopped")  # SIGKILL, after the grace
    assert instance_processes([row["id"]], [app]) == []


def test_logs_follow_until_the_instance_exits(summon: Summon, crash_image: str) -> None:
    summon.ok(
        "run", "-d", crash_image, "--target", "unix", "--restart", "always",
        "-e", "CRASH_STATUS=0", "--name", "chatty",
    )  # fmt: skip
    follower = subprocess.Popen(
        summon.argv("logs", "-f", "chatty"), env=summon.env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert follower.stdout is not None
        lines = read_lines(follower.stdout, 3, timeout=20)  # the 3rd comes after 2 restarts
        assert all("crash app up" in line for line in lines)
        summon.ok("stop", "chatty")
        rest, _ = follower.communicate(timeout=10)  # it ends by itself once the instance has
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0
    total = 3 + rest.count("crash app up")
    assert total == summon.ps()["chatty"]["restarts"] + 1


def read_lines(stream: IO[str], n: int, timeout: float) -> list[str]:
    """n lines from a pipe, or fail after timeout seconds (no readline that blocks forever)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while len(lines) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {lines}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            line = stream.readline()
            assert line, f"EOF after {lines}"
            lines.append(line)
    return lines


# --- errors: one line, status 2, the reason recorded -----------------------------------------


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_flag_errors_record_nothing(summon: Summon, crash_image: str) -> None:
    assert_one_line_error(summon("run", "-d", "no-such-image"), "no image 'no-such-image'")
    assert_one_line_error(
        summon("run", "-d", crash_image, "--target", "unix", "--restart", "sometimes"),
        "--restart sometimes",
    )
    assert_one_line_error(
        summon("run", crash_image, "--target", "unix", "--restart", "always"), "add -d"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(
            summon("run", "-d", crash_image, "--target", "unix", "-p", f"{port}:80"),
            f"127.0.0.1:{port}",
            "choose another host port",
        )
    # Volumes the image has no mount point for, or two at one path: said before an instance
    # is recorded (they left a "start failed" one behind).
    assert_one_line_error(
        summon("run", "-d", crash_image, "--target", "unix", "-v", "x:/data"),
        "declares no volume at /data",
    )
    assert_one_line_error(
        summon("run", "-d", crash_image, "--target", "unix", "-v", "x:/d", "-v", "y:/d"),
        "two volumes at /d",
    )
    assert summon.ps() == {}
    for verb in ("logs", "stop", "rm", "stats"):
        assert_one_line_error(summon(verb, "nobody"), "no instance 'nobody'")


@needs_sandbox
def test_a_failed_start_says_why_and_is_recorded(
    summon: Summon, http_image: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()  # a PATH without runc: the monitor's start fails
    r = summon("run", "-d", http_image, "--target", "sandbox", env={"PATH": str(bin_dir)})
    assert_one_line_error(r, "runc not found")
    assert r.stdout == ""
    row = summon.ps()["http-1"]
    assert row["status"] == "exited"
    assert row["reason"].startswith("start failed: runc not found")


def test_names_are_unique(summon: Summon, crash_image: str) -> None:
    summon.ok("run", "-d", crash_image, "--target", "unix", "--name", "once")
    assert_one_line_error(
        summon("run", "-d", crash_image, "--target", "unix", "--name", "once"),
        "'once' is in use",
        "summon rm once",
    )


@pytest.mark.parametrize("verb", ["stop", "rm"])
def test_stop_or_rm_of_an_instance_still_starting(
    summon: Summon, crash_image: str, verb: str, tmp_path: Path
) -> None:
    """`stop` or `rm -f` right after `run -d` began (recorded, its monitor not yet listening):
    the instance stops, rather than `rm -f` failing with "started again; retry" and leaving
    it up."""
    # The instance's launcher starts late, so the CLI surely finds it recorded but unmonitored.
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if 'summon.instances.tree' in sys.orig_argv:\n"
        "    time.sleep(3)\n"
    )
    path = os.pathsep.join(p for p in (str(slow), os.environ.get("PYTHONPATH", "")) if p)
    name = f"early-{verb}"
    run = summon.popen("run", "-d", crash_image, "--target", "unix", "--name", name,
                       "-e", "CRASH_SLEEP=600", env={"PYTHONPATH": path})

    def recorded() -> bool:
        specs = summon.instances.glob("*/spec.json") if summon.instances.is_dir() else []
        return any(f'"name": "{name}"' in p.read_text() for p in specs)

    wait_for(recorded)
    args = ["stop", name] if verb == "stop" else ["rm", "-f", name]
    r = summon(*args)
    assert r.returncode == 0, r.stderr
    run.communicate(timeout=60)
    if verb == "rm":
        assert name not in summon.ps()
    else:
        assert summon.ps()[name]["status"] == "exited"


@needs_sandbox
@pytest.mark.parametrize("how", ["spec", "spec and state", "spec, then monitor killed"])
def test_rm_f_removes_an_instance_whose_spec_is_damaged(
    summon: Summon, http_image: str, how: str
) -> None:
    """Its spec.json truncated (a full disk, an edit by hand): rm -f stops it all the same,
    and removes its container, netns, bundle and folder; before, `no instance` (status 2)."""
    port = free_port()
    ident = summon.ok("run", "-d", http_image, "-p", f"{port}:80").strip()
    get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
    monitor = summon.inspect(ident)["state"]["monitor_pid"]
    folder = summon.instances / ident
    (folder / "spec.json").write_text('{"version": 1, "ima')
    if "state" in how:
        (folder / "state.json").write_text("\0garbage")
    if "killed" in how:
        os.kill(monitor, signal.SIGKILL)
        wait_for(lambda: instance_processes([ident]) == [], timeout=10)

    if "killed" not in how:  # one still running is not removed without -f
        r = summon("rm", ident[:12])
        assert r.returncode == 2
        assert r.stderr.strip() == (
            f"summon: error: instance {ident[:12]} is damaged ({folder}/spec.json cannot be "
            f"read) and still running: `summon rm -f {ident[:12]}` stops it and removes it"
        )
        assert folder.is_dir()
    # A stopped one needs no -f: what its init could not release (it needed the spec) is.
    r = summon("rm", *(["-f"] if "killed" not in how else []), ident[:12])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ident[:12]
    assert r.stderr == ""  # nothing it could not clean
    assert not folder.exists()
    assert instance_processes([ident]) == []
    assert netns_of([ident]) == []
    assert not Path(f"/run/summon/summon-{ident[:12]}").exists()
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/", time.monotonic())
