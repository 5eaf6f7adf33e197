"""The qemu target end to end: real images booted as microVMs under TCG (or KVM if it works).

Few and bounded: each boot takes seconds under TCG. The kernels are built once per fragment
set into the user's cache (XDG_CACHE_HOME is left alone for that); images and volumes go to
a temporary store and state folder. Every test checks that no QEMU process outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import Output

from summon.build import kernel
from summon.build.boot import boot_artifact, ensure_boot_artifact
from summon.build.image import build
from summon.errors import SummonError
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec, Volume
from summon.targets.qemu import QemuTarget
from summon.targets.qemu.instance import QemuInstance
from summon.targets.qemu.kvm import kvm_status

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MiB = 1024 * 1024

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
    ),
    pytest.mark.skipif(
        not kernel.SOURCE_TARBALL.exists(), reason="apt-get install linux-source-6.1"
    ),
]

VOLUME_APP = {
    "pyproject.toml": """
        [project]
        name = "counter"
        version = "0.1.0"

        [tool.summon]
        entry = "counter.py"
        network = "none"
        memory = "48M"
        volumes = ["/data"]
    """,
    "counter.py": """
        import errno, os
        try:
            open("/etc/written", "w")
        except OSError as e:
            print("root", errno.errorcode[e.errno])  # sealed at its start: /tmp, volumes only
        print("root read-only", bool(os.statvfs("/").f_flag & os.ST_RDONLY))  # and the mount
        with open("/tmp/scratch", "w") as f:  # /tmp is writable
            f.write("x")
        path = "/data/count"
        count = int(open(path).read()) + 1 if os.path.exists(path) else 1
        with open(path, "w") as f:
            f.write(str(count))
        print(f"count {count}")
    """,
}
CRASH_APP = {
    "pyproject.toml": """
        [project]
        name = "crash"
        version = "0.1.0"

        [tool.summon]
        entry = "crash.py"
        network = "none"
        memory = "48M"
    """,
    # PID 1 leaving without the runtime: the kernel panics, no exit status is written.
    "crash.py": "import os\nprint('going down', flush=True)\nos._exit(3)\n",
}

# Prints the runtime's control lines, forged, by every path an app's output takes (print,
# sys.stdout.write, logging to stderr, os.write on fds 1 and 2, as a C extension would),
# ends on an unfinished one, and exits 5.
FORGER_APP = {
    "pyproject.toml": """
        [project]
        name = "forger"
        version = "0.1.0"

        [tool.summon]
        entry = "forger.py"
        network = "none"
        memory = "48M"
    """,
    "forger.py": """
        import logging, os, sys
        lines = ["summon-exit-status: 0", "summon-vm: app-up 9/tcp", "summon-vm: resumed",
                 "summon-stats: seq=99 rss=1", "summon-vm: up"]
        for line in lines:
            print("\\x1e" + line)
        sys.stdout.write("mid-line \\x1esummon-exit-status: 0\\n")
        sys.stdout.flush()
        logging.warning("\\x1esummon-exit-status: 0")
        os.write(1, b"\\x1esummon-exit-status: 0\\r\\n")
        os.write(2, b"\\x1esummon-exit-status: 0\\n")
        sys.stdout.write("\\x1esummon-exit-sta")  # never ended: the real line comes after it
        sys.exit(5)
    """,
}


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary store and state folder for the whole session (the kernel cache is shared)."""
    base = tmp_path_factory.mktemp("qemu")
    names = ("XDG_DATA_HOME", "XDG_STATE_HOME", "SUMMON_STORE", "SUMMON_SNAPSHOTS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["XDG_DATA_HOME"] = str(base / "data")
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    os.environ["SUMMON_SNAPSHOTS"] = str(base / "snapshots")  # not the user's cache
    os.environ.pop("SUMMON_STORE", None)
    yield base
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def store(env: Path) -> Store:
    return Store(env / "data" / "summon" / "store")


def write_app(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def bootable(store: Store, app_dir: Path, tag: str) -> Image:
    image = build(app_dir, store, tag).image
    image, _ = ensure_boot_artifact(image)
    return image


@pytest.fixture(scope="session")
def hello(store: Store) -> Image:
    return bootable(store, EXAMPLES / "hello", "hello:test")


@pytest.fixture(scope="session")
def http(store: Store) -> Image:
    return bootable(store, EXAMPLES / "http", "http:test")


def make_spec(image: Image, state: Path, **kw: object) -> RunSpec:
    app = image.app_config()
    base: dict[str, object] = {
        "name": f"{app['name']}-{time.monotonic_ns()}",
        "image": image.ref,
        "rootfs": image.rootfs(),
        "app_config": app,
        "argv": tuple(image.config["config"]["Entrypoint"]),
        "env": dict(app.get("env", {})),
        "network": app.get("network", "socket"),
        "memory": app.get("memory", 128 * MiB),
        "state_dir": state,
    }
    base.update(kw)
    return RunSpec(**base)  # type: ignore[arg-type]


def qemu_processes(marker: Path) -> list[int]:
    """Pids of QEMU processes whose command line names `marker` (an instance's folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and str(marker).encode() in b" ".join(cmdline):
            pids.append(int(proc.name))
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_fragment_survives_olddefconfig_on_the_real_source(tmp_path: Path) -> None:
    """All fragments at once, against linux-source-6.1's Kconfig: nothing is dropped."""
    tree = kernel.source_tree()
    final = kernel.configure(kernel.fragment_names(), tree, tmp_path)
    options = kernel.parse_config(final)
    assert options["CONFIG_VIRTIO_VSOCKETS"] == "y"
    assert options["CONFIG_EXT4_FS"] == "y"
    assert options.get("CONFIG_SMP", "n") == "n"


def test_boot_artifact_sits_in_the_image_index(hello: Image) -> None:
    found = boot_artifact(hello)
    assert found is not None
    # hello seals itself after start (the default): its kernel has seccomp for the seal.
    fragments = ["base", "serial-console", "virtio-rng", "seccomp"]
    assert found.config["kernel"]["fragments"] == fragments
    assert found.config["kernel"]["size"] <= kernel.MAX_SIZE
    assert found.config["init"][-1] == "/usr/lib/summon/boot"
    types = [m.get("artifactType", "") for m in hello.index["manifests"]]
    assert "application/vnd.summon.boot.v1+json" in types


def test_hello_prints_and_returns_its_exit_status(hello: Image, tmp_path: Path) -> None:
    out = Output()
    spec = make_spec(hello, tmp_path, env={"HELLO_NAME": "microvm", "HELLO_STATUS": "7"})
    instance = QemuTarget(output=out).start(spec)
    status = instance.wait(60)
    assert status == 7, out.text()
    assert "hello, microvm\n" in out.text()
    assert "summon-exit-status" not in out.text()  # the runtime's line is for the host only
    assert "reboot:" not in out.text()  # the kernel's last line, after the app's, is not shown
    assert not qemu_processes(tmp_path)


def test_http_serves_on_loopback_and_stops_cleanly(http: Image, tmp_path: Path) -> None:
    port = free_port()
    out = Output()
    spec = make_spec(http, tmp_path, ports=(PortForward(port, 80),))
    instance = QemuTarget(output=out).start(spec)
    try:
        body = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                    assert resp.status == 200
                    body = resp.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert b"<html" in body.lower(), out.text()
        assert (EXAMPLES / "http" / "static" / "index.html").read_bytes() == body
        status = instance.stop(grace=30)
    finally:
        instance.stop(grace=0)
    assert status == 0, out.text()  # a clean shutdown, not a kill (137)
    assert not qemu_processes(tmp_path)


@pytest.fixture(scope="session")
def http_direct(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """examples/http with network = "direct": summon.net on the raw NIC, no IP in the kernel."""
    app = tmp_path_factory.mktemp("apps") / "http"
    shutil.copytree(EXAMPLES / "http", app, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = app / "pyproject.toml"
    text = manifest.read_text()
    assert 'network = "socket"' in text
    manifest.write_text(text.replace('network = "socket"', 'network = "direct"'))
    return bootable(store, app, "http-direct:test")


def test_http_in_direct_mode_serves_curl_through_the_forward(
    http_direct: Image, tmp_path: Path
) -> None:
    """summon.net owns eth0 through AF_PACKET at QEMU's guest address; hostfwd reaches it."""
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    boot = boot_artifact(http_direct)
    assert boot is not None
    fragments = boot.config["kernel"]["fragments"]
    assert "packet" in fragments and "inet" not in fragments  # the kernel has no TCP/IP
    port = free_port()
    out = Output()
    spec = make_spec(http_direct, tmp_path, ports=(PortForward(port, 80),))
    assert spec.network == "direct"
    instance = QemuTarget(output=out).start(spec)
    try:
        append = instance.argv[instance.argv.index("-append") + 1]
        assert " ip=" not in f" {append}"  # the kernel leaves eth0 without an address
        # A first SYN that beats the app's stack is lost (QEMU's slirp has no ARP answer for
        # it yet) and resent by slirp seconds later: hence curl's retries, within a bound.
        served = b""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not served:
            curl = subprocess.run(
                ["curl", "-sf", "-m", "20", f"http://127.0.0.1:{port}/"],
                capture_output=True,
                check=False,
            )
            served = curl.stdout if curl.returncode == 0 else b""
        assert served == (EXAMPLES / "http" / "static" / "index.html").read_bytes(), out.text()
        css = subprocess.run(
            ["curl", "-sf", "-m", "20", f"http://127.0.0.1:{port}/style.css"],
            capture_output=True,
            check=False,
        )
        assert css.stdout == (EXAMPLES / "http" / "static" / "style.css").read_bytes()
        status = instance.stop(grace=30)
    finally:
        instance.stop(grace=0)
    assert status == 0, out.text()  # a clean shutdown, not a kill (137)
    assert "GET /style.css 200" in out.text()
    assert not qemu_processes(tmp_path)


def test_cli_run_sigterm_stops_the_vm_cleanly(http: Image, env: Path, tmp_path: Path) -> None:
    """`summon run --target qemu -p`: curl it, SIGTERM summon, exit 0, no QEMU left."""
    port = free_port()
    name = f"sigterm-{os.getpid()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "summon.cli.main",
            "run",
            http.ref,
            "--target",
            "qemu",
            "-p",
            f"{port}:80",
            "--name",
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        served = False
        while time.monotonic() < deadline and proc.poll() is None:
            curl = subprocess.run(
                ["curl", "-sf", "-m", "10", f"http://127.0.0.1:{port}/robots.txt"],
                capture_output=True,
                check=False,
            )
            if curl.returncode == 0:
                served = curl.stdout == (EXAMPLES / "http" / "static" / "robots.txt").read_bytes()
                break
            time.sleep(0.3)
        assert served
        state = instance_folder(name)
        assert qemu_processes(state)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    if not kvm_status()[0]:
        assert b"running under TCG emulation" in stderr
    assert not qemu_processes(state)


def instance_folder(name: str) -> Path:
    from summon.instances import state

    return state.find(name).path


VERSION_APP = {
    "pyproject.toml": """
        [project]
        name = "ver"
        version = "0.1.0"

        [tool.summon]
        entry = "app:main"
        ports = [80]
        memory = "48M"
        """,
    "app.py": """
        from summon.devices import Stack

        VERSION = b"@VERSION@"


        async def main(stack: Stack) -> None:
            async def answer(reader, writer):
                await reader.read(1024)
                writer.write(b"HTTP/1.0 200 OK\\r\\n\\r\\n" + VERSION)
                await writer.drain()
                writer.close()

            server = await stack.start_server(answer, 80)
            await server.serve_forever()
        """,
}


def _get(port: int, deadline: float) -> bytes:
    while time.monotonic() < deadline:
        curl = subprocess.run(
            ["curl", "-sf", "-m", "5", f"http://127.0.0.1:{port}/"], capture_output=True
        )
        if curl.returncode == 0:
            return curl.stdout
        time.sleep(0.3)
    raise AssertionError(f"nothing answered on port {port}")


def test_a_restarted_detached_vm_boots_the_digest_it_recorded_not_the_rebuilt_tag(
    store: Store, env: Path, tmp_path: Path
) -> None:
    """The tag is rebuilt while the instance runs; its restart must boot the image it ran."""
    first = {**VERSION_APP, "app.py": VERSION_APP["app.py"].replace("@VERSION@", "one")}
    bootable(store, write_app(tmp_path / "one", first), "ver:test")
    port, name = free_port(), f"ver-{os.getpid()}"
    summon = [sys.executable, "-m", "summon.cli.main"]
    started = subprocess.run(
        [*summon, "run", "-d", "ver:test", "--target", "qemu", "--restart", "always",
         "-p", f"{port}:80", "--name", name],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        assert _get(port, time.monotonic() + 90) == b"one"
        second = {**VERSION_APP, "app.py": VERSION_APP["app.py"].replace("@VERSION@", "two")}
        bootable(store, write_app(tmp_path / "two", second), "ver:test")
        folder = instance_folder(name)
        (old,) = qemu_processes(folder)
        os.kill(old, signal.SIGKILL)  # the VM dies; the monitor boots it again

        def restarts() -> int:
            ps = subprocess.run([*summon, "ps", "--json"], capture_output=True, text=True)
            (row,) = [r for r in json.loads(ps.stdout) if r["name"] == name]
            return int(row["restarts"])

        # Counted by the monitor, not found by QEMU's command line: the new VM restores the
        # snapshot the first one saved, and a restore's command line names no instance folder.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and restarts() < 1:
            time.sleep(0.2)
        assert restarts() >= 1
        assert _get(port, time.monotonic() + 90) == b"one"
    finally:
        subprocess.run([*summon, "rm", "-f", name], capture_output=True, timeout=60)


def test_a_volume_written_in_one_run_is_read_back_in_the_next(store: Store, tmp_path: Path) -> None:
    image = bootable(store, write_app(tmp_path / "app", VOLUME_APP), "counter:test")
    counts = []
    for run in range(2):
        out = Output()
        state = tmp_path / f"run{run}"
        spec = make_spec(image, state, volumes=(Volume(f"counter-{os.getpid()}", "/data"),))
        instance = QemuTarget(output=out).start(spec)
        assert instance.wait(60) == 0, out.text()
        assert "root EPERM\n" in out.text() and "seal.write" in out.text()
        assert "root read-only True\n" in out.text()
        counts.append(out.text().strip().splitlines()[-1])
        assert not qemu_processes(state)
    assert counts == ["count 1", "count 2"]


def test_a_guest_whose_init_is_missing_is_a_clear_error(hello: Image, tmp_path: Path) -> None:
    target = QemuTarget(output=Output(), extra_kernel_args=("rdinit=/nonexistent",))
    with pytest.raises(SummonError) as info:
        target.start(make_spec(hello, tmp_path))
    message = str(info.value)
    assert message.startswith("the VM of hello:test stopped before the app started: Kernel panic")
    assert str(tmp_path / "console.log") in message
    assert not qemu_processes(tmp_path)


def test_a_guest_that_never_comes_up_is_killed_after_the_bound(
    hello: Image, tmp_path: Path
) -> None:
    # panic=0: the kernel waits forever after its panic, as a hung guest would.
    target = QemuTarget(
        output=Output(), boot_timeout=15, extra_kernel_args=("rdinit=/nonexistent", "panic=0")
    )
    started = time.monotonic()
    with pytest.raises(SummonError, match=r"did not come up within 15s: Kernel panic"):
        target.start(make_spec(hello, tmp_path))
    assert time.monotonic() - started < 40
    assert not qemu_processes(tmp_path)


def test_the_apps_output_cannot_forge_the_runtimes_lines(store: Store, tmp_path: Path) -> None:
    """An app printing "\\x1esummon-exit-status: 0" (a request body, a log line) made the host
    record status 0; an unfinished RS line at its exit swallowed the real status (the VM
    "stopped without an exit status"). Rule: the runtime's lines come on the control port
    (ttyS1), which the app's output never reaches; the console is all shown as the app's."""
    image = bootable(store, write_app(tmp_path / "app", FORGER_APP), "forger:test")
    out = Output()
    instance: QemuInstance = QemuTarget(output=out).start(make_spec(image, tmp_path / "s"))
    assert instance.wait(60) == 5, out.text()
    text = out.text()
    assert text.count("\x1esummon-exit-status: 0") == 5, text  # shown, as the app's output
    assert "\x1esummon-vm: app-up 9/tcp\n" in text and "\x1esummon-vm: resumed\n" in text
    assert text.endswith("\x1esummon-exit-sta")
    assert instance.console.app_up is None and instance.console.resumed == 0
    assert instance.console.figures == {}
    assert not qemu_processes(tmp_path / "s")


def test_a_guest_that_crashes_after_starting_returns_1_with_a_message(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = bootable(store, write_app(tmp_path / "app", CRASH_APP), "crash:test")
    out = Output()
    instance: QemuInstance = QemuTarget(output=out).start(make_spec(image, tmp_path / "s"))
    assert instance.wait(60) == 1
    assert "going down" in out.text()
    err = capsys.readouterr().err
    assert (
        "stopped without an exit status: Kernel panic - not syncing: Attempted to kill init!" in err
    )
    assert not qemu_processes(tmp_path / "s")
