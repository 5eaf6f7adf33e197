"""The sandbox target end to end: limits, signals, exit status, forwards, clean-up.

What a hostile app may not do inside is tests/security/test_sandbox_escapes.py's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sandbox_checks import assert_all_gone, run_to_end

from summon.errors import SummonError, TargetUnavailable, UserError
from summon.targets.base import PortForward, PortTaken
from summon.targets.sandbox import SandboxTarget
from summon.targets.sandbox import config as sandbox_config
from summon.targets.sandbox import target as sandbox
from summon.targets.sandbox.instance import SandboxInstance
from summon.targets.sandbox.netns import list_namespaces

HOST_PYTHON = Path("/usr/bin/python3.11")  # what the test rootfs (conftest.py) holds
AppScript = Callable[[str], tuple[str, ...]]

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]

MiB = 1024 * 1024


# --- limits ----------------------------------------------------------------------------------

HOG = """
chunks = []
for i in range(64):
    chunks.append(b"x" * (8 * 1024 * 1024))  # bytes() of a repeat touches every page
    print(f"allocated {(i + 1) * 8} MiB", flush=True)
print("survived", flush=True)
"""


def test_memory_limit_holds(
    sandbox_target: SandboxTarget,
    spec_for: Any,
    app_script: AppScript,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = app_script(HOG)
    status = run_to_end(sandbox_target, spec_for(argv, memory=64 * MiB))
    out = capfd.readouterr().out
    assert "survived" not in out, "allocating 512 MiB under a 64 MiB limit must not succeed"
    assert status == 128 + 9 or "MemoryError" in out, f"OOM kill expected, got status {status}"
    reached = [int(line.split()[1]) for line in out.splitlines() if line.startswith("allocated")]
    assert max(reached, default=0) < 64, f"the app got past the limit: {reached[-1:]} MiB"
    host = subprocess.run(
        [str(HOST_PYTHON), "-S", "-E", "-c", HOG.replace("range(64)", "range(16)")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "survived" in host.stdout, "control: 128 MiB is fine on the host"


THREADS = """
import threading, time
started = 0
try:
    for _ in range(32):
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        started += 1
except RuntimeError as e:
    print("refused:", e, flush=True)
print("started", started, flush=True)
"""


def test_pids_limit_holds(
    sandbox_target: SandboxTarget,
    spec_for: Any,
    app_script: AppScript,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = app_script(THREADS)
    run_to_end(sandbox_target, spec_for(argv, pids=8))
    out = capfd.readouterr().out
    assert "refused: can't start new thread" in out, f"pids limit 8 must refuse threads: {out}"
    started = int(out.split("started")[1].split()[0])
    assert started < 8, f"{started} threads started under pids=8"
    host = subprocess.run(
        [str(HOST_PYTHON), "-S", "-E", "-c", THREADS], capture_output=True, text=True, timeout=20
    )
    assert "started 32" in host.stdout, "control: 32 threads are fine on the host"


def test_a_host_hard_file_limit_below_the_apps_caps_it_rather_than_failing_the_start(
    sandbox_target: SandboxTarget,
    spec_for: Any,
    app_script: AppScript,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Under `ulimit -n 1024` (a hard limit below the sandbox's 4096) runc cannot raise the
    limit inside the user namespace: every start failed with "error setting rlimit type 7".
    The app now gets the host's hard limit instead."""
    import resource

    argv = app_script("import resource\nprint('nofile', *resource.getrlimit(7), flush=True)\n")
    spec = spec_for(argv)
    pid = os.fork()  # a hard limit lowered cannot be raised again here: lower a child's
    if pid == 0:
        status = 99
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            status = run_to_end(sandbox_target, spec)
        finally:
            os._exit(status)
    _, waited = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(waited) == 0
    assert "nofile 1024 1024" in capfd.readouterr().out


# --- lifecycle ---------------------------------------------------------------------------------


def test_exit_status_comes_back_from_wait(
    sandbox_target: SandboxTarget,
    spec_for: Any,
    app_script: AppScript,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = app_script("import os, sys\nprint('pid', os.getpid(), flush=True)\nsys.exit(7)\n")
    instance = sandbox_target.start(spec_for(argv))
    assert instance.wait(10) == 7
    assert instance.stop() == 7, "stop after exit is safe and returns the same status"
    assert instance.stop() == 7, "stop twice is safe"
    assert "pid 1" in capfd.readouterr().out, "the app is PID 1 of its own pid namespace"
    assert_all_gone(sandbox_target, instance)


def wait_for_file_inside(instance: SandboxInstance, path: str, timeout: float = 10) -> None:
    """Wait until the app made path (an image path) — seen through /proc/PID/root."""
    deadline = time.monotonic() + timeout
    while not Path(f"/proc/{instance.pid}/root{path}").exists():
        assert time.monotonic() < deadline, f"the app never made {path}"
        assert instance.wait(0) is None, "the app exited early"
        time.sleep(0.01)


def test_sigterm_lets_the_app_exit_cleanly(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        "open('/tmp/ready', 'w').close()\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    instance = sandbox_target.start(spec_for(argv))
    wait_for_file_inside(instance, "/tmp/ready")
    before = time.monotonic()
    assert instance.stop(grace=8) == 42, "the app's own status from its SIGTERM handler"
    assert time.monotonic() - before < 4, "a SIGTERM-handling app must not wait out the grace"
    assert_all_gone(sandbox_target, instance)


def test_app_ignoring_sigterm_is_killed_after_grace(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open('/tmp/ready', 'w').close()\n"
        "time.sleep(60)\n"
    )
    instance = sandbox_target.start(spec_for(argv))
    wait_for_file_inside(instance, "/tmp/ready")
    before = time.monotonic()
    assert instance.stop(grace=0.5) == 128 + 9
    assert time.monotonic() - before < 5
    assert_all_gone(sandbox_target, instance)


ECHO_80 = """
import asyncio, signal

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    await asyncio.sleep(0.3)  # a slow start: the first client must be held, not refused
    server = await asyncio.start_server(echo, "0.0.0.0", 80)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_forward_reaches_an_echo_server_on_port_80(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    port = free_port()
    spec = spec_for(app_script(ECHO_80), ports=(PortForward(host_port=port, guest_port=80),))
    instance = sandbox_target.start(spec)
    try:
        payload = os.urandom(256 * 1024)
        with socket.create_connection(("127.0.0.1", port), 10) as c:
            c.settimeout(10)
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while data := c.recv(65536):
                got += data
        assert got == payload
        stats = instance.stats()
        assert stats.memory_bytes > 1 * MiB and stats.cpu_seconds > 0, stats
    finally:
        status = instance.stop(grace=5)
    assert status == 0, "the echo app exits 0 on SIGTERM"
    assert_all_gone(sandbox_target, instance)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)


def test_wait_ready_waits_for_a_scripts_own_listener_and_names_the_port_it_chose(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    """The gateway's boot of a script that binds its own port ended at once: one that never
    listened on the service's port (or on another) was "up", and each held client waited out
    the forwarder's patience and was closed, with no error anywhere."""
    from summon.targets.base import NotReady

    forward = PortForward(host_port=free_port(), guest_port=80)
    instance = sandbox_target.start(spec_for(app_script(ECHO_80), ports=(forward,)))
    try:
        began = time.monotonic()
        instance.wait_ready((80,), 10)  # the echo app listens after 0.3 s
        assert 0.2 < time.monotonic() - began < 5
    finally:
        instance.stop(grace=5)
    elsewhere = app_script(ECHO_80.replace('"0.0.0.0", 80', '"0.0.0.0", 8081'))
    spec = spec_for(elsewhere, ports=(PortForward(host_port=free_port(), guest_port=80),))
    instance = sandbox_target.start(spec)
    try:
        with pytest.raises(NotReady) as e:
            instance.wait_ready((80,), 2)
        assert str(e.value) == "the app did not listen on port 80; it listens on TCP port 8081"
    finally:
        instance.stop(grace=5)
    assert_all_gone(sandbox_target, instance)


def test_an_entry_function_without_a_stack_gets_its_port_forwarded_not_handed(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    """An entry function that asks for no Stack device (uvicorn.run in main) binds its own
    port: the build marks it (entry "stack": false), and the sandbox forwards -p to that
    port instead of handing the app a listener it never accepts on (requests hung)."""
    port = free_port()
    entry = {"kind": "function", "module": "app", "function": "main", "stack": False}
    spec = spec_for(app_script(ECHO_80), ports=(PortForward(host_port=port, guest_port=80),))
    spec.app_config = {"entry": entry, "ports": ["80/tcp"]}
    assert not spec.stack_serves
    instance = sandbox_target.start(spec)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 10) as c:
                    c.settimeout(10)
                    c.sendall(b"ping")
                    c.shutdown(socket.SHUT_WR)
                    got = c.recv(64)
            except OSError:
                got = b""
            if got == b"ping" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got == b"ping"
    finally:
        instance.stop(grace=5)


def test_failed_start_leaves_nothing(sandbox_target: SandboxTarget, spec_for: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = spec_for(
            ("/usr/bin/python3.11", "-S", "-E", "-c", "pass"),
            ports=(PortForward(host_port=taken.getsockname()[1], guest_port=80),),
        )
        namespaces = list_namespaces()
        with pytest.raises(PortTaken, match=r"cannot listen there \(Address already in use\)"):
            sandbox_target.start(spec)
    assert list_namespaces() == namespaces
    assert not (spec.state_dir / "bundle").exists()


def test_same_name_twice_is_refused(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script("import time\ntime.sleep(30)\n")
    first = sandbox_target.start(spec_for(argv, name="twice"))
    try:
        with pytest.raises(UserError, match="already running"):
            sandbox_target.start(spec_for(argv, name="twice"))
        assert first.wait(0) is None, "the refused start must not touch the running one"
    finally:
        assert first.stop(grace=0.5) == 128 + 9  # PID 1 without a handler ignores SIGTERM
    assert_all_gone(sandbox_target, first)


def test_missing_runc_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, spec_for: Any, sandbox_target: SandboxTarget
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TargetUnavailable) as e:
        sandbox_target.start(spec_for(("/bin/true",)))
    assert str(e.value) == sandbox.RUNC_MISSING
    assert e.value.exit_status == 2


def test_a_full_disk_under_runcs_state_is_one_line_naming_it(
    spec_for: Any, tmp_path: Path
) -> None:
    """runc could not write its state (nor its log): the start ended on its Go error,
    "unable to store init state: %!w(<nil>)", then "see the message above", exit status 1,
    and left its empty state folder behind."""
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], check=True)
    try:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        target = SandboxTarget(root=full / "runc")
        (full / "runc").mkdir()
        spec = spec_for(("/bin/true",))
        with pytest.raises(UserError) as e:
            target.start(spec)
        assert str(e.value) == (
            f"runc could not start test: no space left on the disk of {full / 'runc'}, where "
            "it keeps the container's state; free some there"
        )
        assert e.value.exit_status == 2
        assert os.listdir(full / "runc") == []
        assert not (spec.state_dir / "bundle").exists()
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_doctor_checks_pass_here() -> None:
    checks = SandboxTarget.check()
    failing = [c for c in checks if not c.ok]
    assert failing == [], failing
    assert any("seccomp" in c.what for c in checks)


DRIVER = """
import signal, sys, time
from pathlib import Path
from summon.targets.base import PortForward, RunSpec
from summon.targets.sandbox import SandboxTarget

# As from a terminal: a background job (CI, this test's parent) may have inherited SIG_IGN.
signal.signal(signal.SIGINT, signal.default_int_handler)
rootfs, runc_root, state, name, port, script, grace = sys.argv[1:]
spec = RunSpec(
    name=name, image="test", rootfs=Path(rootfs), app_config={},
    argv=("/usr/bin/python3.11", "-S", "-E", script), state_dir=Path(state),
    ports=(PortForward(int(port), 80),),
)
instance = SandboxTarget(root=Path(runc_root)).start(spec)
try:
    print("started", instance.pid, flush=True)
    instance.wait()
finally:
    print("stopped", instance.stop(grace=float(grace)), flush=True)
"""


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_of_the_caller_leaves_nothing(
    presses: int,
    sandbox_target: SandboxTarget,
    app_script: AppScript,
    tmp_path: Path,
    test_rootfs: Path,
) -> None:
    """A summon-like caller gets Ctrl-C (SIGINT) and stops in a finally; a second Ctrl-C
    during the grace period cuts it short, and still nothing is left behind."""
    assert sandbox_target.root is not None
    # One press: the app handles SIGTERM. Two presses: it ignores SIGTERM and the grace is long.
    handler = "sys.exit(0)" if presses == 1 else "None"
    argv = app_script(
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: {handler})\n"
        "open('/tmp/ready', 'w').close()\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    name = f"ctrlc-{uuid.uuid4().hex[:8]}"
    port = free_port()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = [test_rootfs, sandbox_target.root, tmp_path / "state", name, port, argv[-1], 30]
    with subprocess.Popen(
        [sys.executable, str(driver), *map(str, args)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            started = proc.stdout.readline()
            assert started.startswith("started"), started
            pid = int(started.split()[1])
            # Only once the app handles SIGTERM: a pid 1 without a handler ignores it, and a
            # press that early would wait out the whole grace (a race of a few ms).
            deadline = time.monotonic() + 10
            while not Path(f"/proc/{pid}/root/tmp/ready").exists():
                assert time.monotonic() < deadline, "the app never got ready"
                time.sleep(0.005)
            before = time.monotonic()
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.3)
            proc.wait(10)
            assert time.monotonic() - before < 5, "stop must not wait out a 30 s grace"
        finally:
            if proc.poll() is None:
                proc.kill()
    cid = sandbox_config.container_id(name)
    listed = subprocess.run(
        ["runc", "--root", str(sandbox_target.root), "list", "-q"], capture_output=True, text=True
    )
    assert cid not in listed.stdout.split(), "runc container left behind"
    assert cid not in list_namespaces(), "netns left behind"
    assert not Path(f"/proc/{pid}").exists(), "app process left behind"
    assert not (tmp_path / "state" / "bundle").exists(), "bundle left behind"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)


def test_many_starts_in_a_row(sandbox_target: SandboxTarget, spec_for: Any) -> None:
    """Each start must get its one exec through the gate, even when runc init's exec is
    interrupted by a signal and re-issued (seen about once in 150 starts before the fix)."""
    spec = spec_for(("/usr/bin/python3.11", "-S", "-E", "-c", "pass"), name="again")
    statuses = [run_to_end(sandbox_target, spec) for _ in range(25)]
    assert statuses == [0] * 25


def test_summons_lines_on_the_console_go_to_the_instances_own_copy_of_it(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript, tmp_path: Path
) -> None:
    """The gateway closes its copy of a service's log fd once the instance has started; the
    gate's refusal lines come later, while the app runs. They must reach the log, not
    whatever the old fd number names by then (the next socket the caller opens)."""
    log = tmp_path / "console.log"
    argv = app_script(
        "import os, time\n"
        "time.sleep(1)\n"  # the caller has closed its copy, and reused the number, by now
        "try:\n"
        "    os.execv('/bin/true', ['true'])\n"
        "except OSError as e:\n"
        "    print('exec', e.errno, flush=True)\n"
    )
    with open(log, "wb") as console:
        spec = spec_for(argv, stdout=console.fileno())
        instance = sandbox_target.start(spec)
    number = spec.stdout
    reused_r, reused_w = os.pipe()  # the lowest free numbers: the old one among them
    try:
        assert instance.wait(20) == 0
        os.close(reused_w)
        taken = os.read(reused_r, 4096) if number in (reused_r, reused_w) else b""
    finally:
        os.close(reused_r)
        with contextlib.suppress(OSError):
            os.close(reused_w)
    text = log.read_text()
    assert "exec 1" in text, text  # EPERM, from the gate
    assert "summon: sandbox: refused" in text, text
    assert b"refused" not in taken
    assert_all_gone(sandbox_target, instance)


def test_a_start_runc_refuses_says_runcs_own_reason(
    sandbox_target: SandboxTarget, spec_for: Any
) -> None:
    spec = spec_for(("/nonexistent/app",))
    with pytest.raises(SummonError) as caught:
        sandbox_target.start(spec)
    assert "runc could not start test (exit status 1): " in str(caught.value)
    assert "/nonexistent/app" in str(caught.value)  # read from runc's log, not "see above"
    assert not (spec.state_dir / "bundle").exists()


def _keys_charged() -> dict[int, int]:
    """uid -> keys charged to its quota (/proc/key-users: usage nkeys/nikeys qnkeys/maxkeys)."""
    charged = {}
    for line in Path("/proc/key-users").read_text().splitlines():
        uid, fields = line.split(":", 1)
        charged[int(uid)] = int(fields.split()[2].split("/")[0])
    return charged


def test_instances_charge_no_keys_so_the_key_quota_does_not_cap_how_many_run(
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    """Every instance maps to the same host uids, whose quota is 200 keys
    (kernel.keys.maxkeys): a session keyring each stopped the 201st from starting."""
    argv = app_script("import time\ntime.sleep(30)\n")
    before = _keys_charged()
    instances = [sandbox_target.start(spec_for(argv)) for _ in range(3)]
    try:
        during = _keys_charged()
    finally:
        for instance in instances:
            instance.stop(grace=0.5)
    grown = {uid: n - before.get(uid, 0) for uid, n in during.items() if uid != 0}
    assert all(n <= 0 for n in grown.values()), grown
