"""The sandbox target end to end: what an app inside may not do, and which rule stops it.

Each escape is tried by the same probe script twice: inside the sandbox, where it must fail
with the errno of the rule that holds it, and on the host (the control), where it must work,
so a pass shows the sandbox, not this machine, stopped it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from summon.errors import TargetUnavailable, UserError
from summon.targets import sandbox
from summon.targets.base import PortForward, RunSpec
from summon.targets.netns import list_namespaces
from summon.targets.sandbox import SandboxInstance, SandboxTarget

HOST_PYTHON = Path("/usr/bin/python3.11")  # what the test rootfs (conftest.py) holds
AppScript = Callable[[str], tuple[str, ...]]

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]

MiB = 1024 * 1024

# Each probe prints one JSON line: {"probe": name, "ok": bool, "errno": n, "detail": str}.
PROBES = r"""
import ctypes, errno, json, os, socket, sys, threading

def report(name, ok, err=0, detail=""):
    print(json.dumps({"probe": name, "ok": ok, "errno": err, "detail": detail}), flush=True)

def attempt(name, func):
    try:
        detail = func()
    except OSError as e:
        report(name, False, e.errno or 0, str(e))
    else:
        report(name, True, 0, str(detail or ""))

libc = ctypes.CDLL("libc.so.6", use_errno=True)

def raw(result):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)

def thread():
    box = []
    t = threading.Thread(target=box.append, args=(1,))
    t.start()
    t.join()
    if box != [1]:
        raise OSError(0, "thread did not run")

def write_root():
    with open(os.environ["PROBE_ROOT_FILE"], "w") as f:
        f.write("x")

def read_host_file():
    with open(os.environ["PROBE_HOST_FILE"]) as f:
        return f.read()

def connect_host():
    with socket.create_connection(("127.0.0.1", int(os.environ["PROBE_HOST_PORT"])), 2):
        pass

def mount():
    raw(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None))

def tiocsti(request):
    return lambda: raw(libc.syscall(16, 0, ctypes.c_ulong(request), ctypes.c_char_p(b"x")))

def unshare_net():
    raw(libc.unshare(0x40000000))

def clone3():
    raw(libc.syscall(435, None, 0))

def execve():
    # Last probe: on success the process becomes one that reports it.
    code = "import json; print(json.dumps({'probe': 'execve', 'ok': True, 'errno': 0}))"
    os.execv(sys.executable, [sys.executable, "-S", "-E", "-c", code])

PROBES = {
    "fork": fork, "thread": thread, "write_root": write_root,
    "read_host_file": read_host_file, "connect_host": connect_host, "mount": mount,
    "tiocsti": tiocsti(0x5412), "tiocsti_high_bits": tiocsti(0x1_0000_5412),
    "unshare_net": unshare_net, "clone3": clone3, "execve": execve,
}
for name in sys.argv[1:]:
    attempt(name, PROBES[name])
"""


def parse(output: str) -> dict[str, dict[str, Any]]:
    results = {}
    for line in output.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            results[entry["probe"]] = entry
    return results


@pytest.fixture
def target(tmp_path_factory: pytest.TempPathFactory) -> SandboxTarget:
    return SandboxTarget(root=tmp_path_factory.mktemp("runc"))


@pytest.fixture
def spec_for(test_rootfs: Path, tmp_path: Path) -> Any:
    def make(argv: tuple[str, ...], **kw: Any) -> RunSpec:
        name = kw.pop("name", f"t-{uuid.uuid4().hex[:10]}")
        state = tmp_path / name
        return RunSpec(
            name=name, image="test", rootfs=test_rootfs, app_config={}, argv=argv,
            state_dir=state, **kw,
        )  # fmt: skip

    return make


def run_to_end(target: SandboxTarget, spec: RunSpec, timeout: float = 20) -> int:
    instance = target.start(spec)
    try:
        status = instance.wait(timeout)
        assert status is not None, f"app still running after {timeout}s"
        return status
    finally:
        instance.stop(grace=1)


def assert_all_gone(target: SandboxTarget, instance: SandboxInstance) -> None:
    assert target.root is not None
    listed = subprocess.run(
        ["runc", "--root", str(target.root), "list", "-q"], capture_output=True, text=True
    )
    assert instance.container_id not in listed.stdout.split(), "runc container left behind"
    assert instance.netns.name not in list_namespaces(), "netns left behind"
    assert not instance.bundle.exists(), "bundle left behind"
    assert not Path(f"/sys/fs/cgroup/memory/{instance.container_id}").exists(), "cgroup left"
    if instance.pid:
        assert not Path(f"/proc/{instance.pid}").exists(), "container process left behind"


# --- the escapes -----------------------------------------------------------------------------

PROBE_NAMES = (
    "thread", "fork", "write_root", "read_host_file", "connect_host", "mount", "tiocsti",
    "tiocsti_high_bits", "unshare_net", "clone3", "execve",
)  # fmt: skip


@pytest.fixture(scope="module")
def probe_results(
    test_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, dict[str, Any]], dict[str, str]]]:
    """Run every probe once inside the sandbox; returns (results, bait env)."""
    # Module scope cannot use the function fixtures; make what they make here.
    bait_dir = Path("/tmp") / f"summon-bait-{uuid.uuid4().hex[:8]}"
    bait_dir.mkdir()
    (bait_dir / "secret").write_text("host secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    env = {
        "PROBE_HOST_FILE": str(bait_dir / "secret"),
        "PROBE_HOST_PORT": str(listener.getsockname()[1]),
        "PROBE_ROOT_FILE": "/summon-probe",
    }
    script = test_rootfs / "app" / "probes.py"
    script.write_text(PROBES)
    out = tmp_path_factory.mktemp("probe-out") / "stdout"
    target = SandboxTarget(root=tmp_path_factory.mktemp("runc"))
    spec = RunSpec(
        name=f"probes-{uuid.uuid4().hex[:8]}",
        image="test",
        rootfs=test_rootfs,
        app_config={},
        argv=("/usr/bin/python3.11", "-S", "-E", "/app/probes.py", *PROBE_NAMES),
        env=env,
        state_dir=tmp_path_factory.mktemp("state"),
    )
    # The app's stdio is ours: point our fd 1 at a file for the run to read what it printed.
    saved = os.dup(1)
    try:
        with open(out, "wb") as f:
            os.dup2(f.fileno(), 1)
        status = run_to_end(target, spec)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    results = parse(out.read_text())
    results["_status"] = {"status": status}
    yield results, env
    listener.close()
    shutil.rmtree(bait_dir)


def control(names: list[str], env: dict[str, str], cwd: Path) -> dict[str, dict[str, Any]]:
    """The same probes as a plain host process (python3.11 of the host, same script)."""
    script = cwd / "probes.py"
    script.write_text(PROBES)
    result = subprocess.run(
        [str(HOST_PYTHON), "-S", "-E", str(script), *names],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=20,
    )
    return parse(result.stdout)


Expect = tuple[str, int, str]
# probe -> (errno inside, the rule that must stop it)
DENIED: dict[str, tuple[int, str]] = {
    "fork": (errno.EPERM, "seccomp: clone without CLONE_THREAD"),
    "write_root": (errno.EROFS, "read-only root filesystem"),
    "read_host_file": (errno.ENOENT, "own mount namespace: the host's /tmp is not there"),
    "connect_host": (errno.ECONNREFUSED, "own, empty network namespace"),
    "mount": (errno.EPERM, "seccomp denies mount (and there is no CAP_SYS_ADMIN)"),
    "tiocsti": (errno.EPERM, "seccomp ioctl rule refuses TIOCSTI"),
    "tiocsti_high_bits": (errno.EPERM, "seccomp ioctl rule masks the high bits"),
    "unshare_net": (errno.EPERM, "seccomp denies unshare"),
    "clone3": (errno.ENOSYS, "seccomp answers clone3 with ENOSYS so glibc uses clone"),
    "execve": (errno.EPERM, "seccomp: the exec gate lets only runc's own exec through"),
}


@pytest.mark.parametrize("probe", sorted(DENIED))
def test_escape_is_stopped_by_the_right_rule(
    probe: str, probe_results: tuple[dict[str, dict[str, Any]], dict[str, str]]
) -> None:
    results, _env = probe_results
    want, rule = DENIED[probe]
    got = results.get(probe)
    assert got is not None, f"{probe}: the probe printed nothing ({results})"
    assert not got["ok"], f"{probe} succeeded inside the sandbox; {rule} should stop it"
    assert got["errno"] == want, (
        f"{probe} failed with {errno.errorcode.get(got['errno'])} ({got['detail']}), "
        f"expected {errno.errorcode[want]}: {rule}"
    )


def test_threads_still_work_inside(
    probe_results: tuple[dict[str, dict[str, Any]], dict[str, str]],
) -> None:
    results, _env = probe_results
    assert results["thread"]["ok"], f"threads must work under the clone rule: {results['thread']}"
    assert results["_status"]["status"] == 0, "the probe app should exit 0 after execve failed"


def test_control_the_same_probes_work_on_the_host(
    probe_results: tuple[dict[str, dict[str, Any]], dict[str, str]], tmp_path: Path
) -> None:
    _results, env = probe_results
    names = ["thread", "fork", "read_host_file", "connect_host", "unshare_net", "execve"]
    got = control(names, {**env, "PROBE_ROOT_FILE": str(tmp_path / "root-file")}, tmp_path)
    for name in names:
        assert got.get(name, {}).get("ok"), f"control: {name} should work on the host: {got}"
    # Plain host process: ioctl reaches the kernel, which says /dev/null is no terminal.
    tiocsti = control(["tiocsti", "tiocsti_high_bits", "write_root"], env, tmp_path)
    assert tiocsti["tiocsti"]["errno"] == errno.ENOTTY
    assert tiocsti["tiocsti_high_bits"]["errno"] == errno.ENOTTY
    # mount works for root on the host: try it in a throwaway mount namespace.
    unshared = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", str(HOST_PYTHON), "-S", "-E",
         str(tmp_path / "probes.py"), "mount"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert parse(unshared.stdout)["mount"]["ok"], f"control: mount as root: {unshared.stdout}"


def test_control_the_image_files_are_writable_on_the_host(test_rootfs: Path) -> None:
    """EROFS inside comes from the read-only mount, not from the files' permissions."""
    assert os.access(test_rootfs, os.W_OK)


def test_i386_syscalls_kill_the_app(
    target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    source = (
        "import ctypes, mmap\n"
        "code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])  # eax=20 (i386 getpid); int 0x80\n"
        "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(code)\n"
        "f = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n"
        "raise SystemExit(0 if f() > 0 else 1)\n"
    )
    argv = app_script(source)
    status = run_to_end(target, spec_for(argv))
    assert status == 128 + 31, f"int 0x80 must die of SIGSYS (seccomp: bad arch), got {status}"
    host = subprocess.run([str(HOST_PYTHON), "-S", "-E", "-c", source], timeout=20)
    assert host.returncode == 0, "control: i386 syscalls work on this host"


# --- limits ----------------------------------------------------------------------------------

HOG = """
chunks = []
for i in range(64):
    chunks.append(b"x" * (8 * 1024 * 1024))  # bytes() of a repeat touches every page
    print(f"allocated {(i + 1) * 8} MiB", flush=True)
print("survived", flush=True)
"""


def test_memory_limit_holds(
    target: SandboxTarget, spec_for: Any, app_script: AppScript, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = app_script(HOG)
    status = run_to_end(target, spec_for(argv, memory=64 * MiB))
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
    target: SandboxTarget, spec_for: Any, app_script: AppScript, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = app_script(THREADS)
    run_to_end(target, spec_for(argv, pids=8))
    out = capfd.readouterr().out
    assert "refused: can't start new thread" in out, f"pids limit 8 must refuse threads: {out}"
    started = int(out.split("started")[1].split()[0])
    assert started < 8, f"{started} threads started under pids=8"
    host = subprocess.run(
        [str(HOST_PYTHON), "-S", "-E", "-c", THREADS], capture_output=True, text=True, timeout=20
    )
    assert "started 32" in host.stdout, "control: 32 threads are fine on the host"


# --- lifecycle ---------------------------------------------------------------------------------


def test_exit_status_comes_back_from_wait(
    target: SandboxTarget, spec_for: Any, app_script: AppScript, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = app_script("import os, sys\nprint('pid', os.getpid(), flush=True)\nsys.exit(7)\n")
    instance = target.start(spec_for(argv))
    assert instance.wait(10) == 7
    assert instance.stop() == 7, "stop after exit is safe and returns the same status"
    assert instance.stop() == 7, "stop twice is safe"
    assert "pid 1" in capfd.readouterr().out, "the app is PID 1 of its own pid namespace"
    assert_all_gone(target, instance)


def wait_for_file_inside(instance: SandboxInstance, path: str, timeout: float = 10) -> None:
    """Wait until the app made path (an image path) — seen through /proc/PID/root."""
    deadline = time.monotonic() + timeout
    while not Path(f"/proc/{instance.pid}/root{path}").exists():
        assert time.monotonic() < deadline, f"the app never made {path}"
        assert instance.wait(0) is None, "the app exited early"
        time.sleep(0.01)


def test_sigterm_lets_the_app_exit_cleanly(
    target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        "open('/tmp/ready', 'w').close()\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    instance = target.start(spec_for(argv))
    wait_for_file_inside(instance, "/tmp/ready")
    before = time.monotonic()
    assert instance.stop(grace=8) == 42, "the app's own status from its SIGTERM handler"
    assert time.monotonic() - before < 4, "a SIGTERM-handling app must not wait out the grace"
    assert_all_gone(target, instance)


def test_app_ignoring_sigterm_is_killed_after_grace(
    target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open('/tmp/ready', 'w').close()\n"
        "time.sleep(60)\n"
    )
    instance = target.start(spec_for(argv))
    wait_for_file_inside(instance, "/tmp/ready")
    before = time.monotonic()
    assert instance.stop(grace=0.5) == 128 + 9
    assert time.monotonic() - before < 5
    assert_all_gone(target, instance)


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
    target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    port = free_port()
    spec = spec_for(app_script(ECHO_80), ports=(PortForward(host_port=port, guest_port=80),))
    instance = target.start(spec)
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
    assert_all_gone(target, instance)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)


def test_failed_start_leaves_nothing(target: SandboxTarget, spec_for: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = spec_for(
            ("/usr/bin/python3.11", "-S", "-E", "-c", "pass"),
            ports=(PortForward(host_port=taken.getsockname()[1], guest_port=80),),
        )
        namespaces = list_namespaces()
        with pytest.raises(OSError):
            target.start(spec)
    assert list_namespaces() == namespaces
    assert not (spec.state_dir / "bundle").exists()


def test_same_name_twice_is_refused(
    target: SandboxTarget, spec_for: Any, app_script: AppScript
) -> None:
    argv = app_script("import time\ntime.sleep(30)\n")
    first = target.start(spec_for(argv, name="twice"))
    try:
        with pytest.raises(UserError, match="already running"):
            target.start(spec_for(argv, name="twice"))
        assert first.wait(0) is None, "the refused start must not touch the running one"
    finally:
        assert first.stop(grace=0.5) == 128 + 9  # PID 1 without a handler ignores SIGTERM
    assert_all_gone(target, first)


def test_missing_runc_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, spec_for: Any, target: SandboxTarget
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TargetUnavailable) as e:
        target.start(spec_for(("/bin/true",)))
    assert str(e.value) == sandbox.RUNC_MISSING
    assert e.value.exit_status == 2


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
    target: SandboxTarget,
    app_script: AppScript,
    tmp_path: Path,
    test_rootfs: Path,
) -> None:
    """A summon-like caller gets Ctrl-C (SIGINT) and stops in a finally; a second Ctrl-C
    during the grace period cuts it short, and still nothing is left behind."""
    assert target.root is not None
    # One press: the app handles SIGTERM. Two presses: it ignores SIGTERM and the grace is long.
    handler = "sys.exit(0)" if presses == 1 else "None"
    argv = app_script(
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: {handler})\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    name = f"ctrlc-{uuid.uuid4().hex[:8]}"
    port = free_port()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = [test_rootfs, target.root, tmp_path / "state", name, port, argv[-1], 30]
    with subprocess.Popen(
        [sys.executable, str(driver), *map(str, args)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            started = proc.stdout.readline()
            assert started.startswith("started"), started
            pid = int(started.split()[1])
            before = time.monotonic()
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.3)
            proc.wait(10)
            assert time.monotonic() - before < 5, "stop must not wait out a 30 s grace"
        finally:
            if proc.poll() is None:
                proc.kill()
    cid = sandbox.container_id(name)
    listed = subprocess.run(
        ["runc", "--root", str(target.root), "list", "-q"], capture_output=True, text=True
    )
    assert cid not in listed.stdout.split(), "runc container left behind"
    assert cid not in list_namespaces(), "netns left behind"
    assert not Path(f"/proc/{pid}").exists(), "app process left behind"
    assert not (tmp_path / "state" / "bundle").exists(), "bundle left behind"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)


def test_many_starts_in_a_row(target: SandboxTarget, spec_for: Any) -> None:
    """Each start must get its one exec through the gate, even when runc init's exec is
    interrupted by a signal and re-issued (seen about once in 150 starts before the fix)."""
    spec = spec_for(("/usr/bin/python3.11", "-S", "-E", "-c", "pass"), name="again")
    statuses = [run_to_end(target, spec) for _ in range(25)]
    assert statuses == [0] * 25
