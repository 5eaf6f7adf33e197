"""The sandbox against a hostile app: what it may not do, and which rule stops it.

Each escape is tried by the same probe script twice: inside the sandbox, where it must fail
with the errno of the rule that holds it, and on the host (the control), where it must work,
so a pass shows the sandbox, not this machine, stopped it.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_checks import parse, run_to_end

from summon.targets.base import RunSpec
from summon.targets.sandbox import SandboxTarget

HOST_PYTHON = Path("/usr/bin/python3.11")  # what the test rootfs (conftest.py) holds
AppScript = Callable[[str], tuple[str, ...]]

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]

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

def proc_mem():
    # A process may patch its own code pages through /proc/self/mem (FOLL_FORCE): native
    # code run after the seal would have new machine code that way.
    with open("/proc/self/mem", "r+b", buffering=0):
        pass

def execve():
    # Last probe: on success the process becomes one that reports it.
    code = "import json; print(json.dumps({'probe': 'execve', 'ok': True, 'errno': 0}))"
    os.execv(sys.executable, [sys.executable, "-S", "-E", "-c", code])

PROBES = {
    "fork": fork, "thread": thread, "write_root": write_root,
    "read_host_file": read_host_file, "connect_host": connect_host, "mount": mount,
    "tiocsti": tiocsti(0x5412), "tiocsti_high_bits": tiocsti(0x1_0000_5412),
    "unshare_net": unshare_net, "clone3": clone3, "proc_mem": proc_mem, "execve": execve,
}
for name in sys.argv[1:]:
    attempt(name, PROBES[name])
"""


# --- the escapes -----------------------------------------------------------------------------

PROBE_NAMES = (
    "thread", "fork", "write_root", "read_host_file", "connect_host", "mount", "tiocsti",
    "tiocsti_high_bits", "unshare_net", "clone3", "proc_mem", "execve",
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
    # The app's stdio is ours: point our fds 1 and 2 at a file for the run to read what it
    # printed, and what the gate said (summon's lines go to fd 2 without a console).
    saved = os.dup(1), os.dup(2)
    try:
        with open(out, "wb") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
        status = run_to_end(target, spec)
    finally:
        for fd, copy in enumerate(saved, start=1):
            os.dup2(copy, fd)
            os.close(copy)
    results = parse(out.read_text())
    results["_status"] = {"status": status}
    results["_console"] = {"text": out.read_text()}
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
    "proc_mem": (errno.EROFS, "/proc is mounted read-only: no writing one's own code pages"),
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


def test_a_refused_fork_is_said_on_the_console_naming_the_rule(
    probe_results: tuple[dict[str, dict[str, Any]], dict[str, str]],
) -> None:
    # The kernel alone used to answer it: the app's PermissionError was all there was.
    from summon.targets.sandbox.gate import RULE_FORK

    results, _env = probe_results
    assert f"summon: sandbox: refused fork ({RULE_FORK})" in results["_console"]["text"]


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
    names = ["thread", "fork", "read_host_file", "connect_host", "unshare_net", "proc_mem",
             "execve"]  # fmt: skip
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
    sandbox_target: SandboxTarget, spec_for: Any, app_script: AppScript
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
    status = run_to_end(sandbox_target, spec_for(argv))
    assert status == 128 + 31, f"int 0x80 must die of SIGSYS (seccomp: bad arch), got {status}"
    host = subprocess.run([str(HOST_PYTHON), "-S", "-E", "-c", source], timeout=20)
    assert host.returncode == 0, "control: i386 syscalls work on this host"
