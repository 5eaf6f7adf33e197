"""network = "direct" in the sandbox target, end to end: real builds of the examples, real runs.

The app gets a TAP fd and nothing else (its seccomp filter denies socket()); port forwards
reach it through the TAP from host loopback. Copies of examples/http and examples/dns are
built with network = "direct" (the only change), into a throw-away store.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from summon_cli import Summon, free_port
from summon_cli import fetch as get

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("runc") is None, reason="the sandbox needs root and runc"
    ),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
]


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    return Summon(tmp_path_factory.mktemp("home"))


def direct_copy(example: str, dest: Path) -> Path:
    """The example's folder, its manifest switched to network = "direct"."""
    app = dest / example
    shutil.copytree(EXAMPLES / example, app, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = app / "pyproject.toml"
    text = manifest.read_text()
    assert 'network = "socket"' in text
    manifest.write_text(text.replace('network = "socket"', 'network = "direct"'))
    return app


@pytest.fixture(scope="module")
def http_direct(summon: Summon, tmp_path_factory: pytest.TempPathFactory) -> str:
    app = direct_copy("http", tmp_path_factory.mktemp("apps"))
    r = summon("build", str(app), "-t", "http-direct:test")
    assert r.returncode == 0, r.stderr
    return "http-direct:test"


@pytest.fixture(scope="module")
def dns_direct(summon: Summon, tmp_path_factory: pytest.TempPathFactory) -> str:
    app = direct_copy("dns", tmp_path_factory.mktemp("apps"))
    r = summon("build", str(app), "-t", "dns-direct:test")
    assert r.returncode == 0, r.stderr
    return "dns-direct:test"


def read_all(port: int, deadline: float) -> bytes:
    """Everything 127.0.0.1:port sends before it closes, retrying while the app starts."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            if chunks:
                return b"".join(chunks)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing from port {port}")
        time.sleep(0.05)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=20)  # and closes its pipes
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    netns = Path("/run/netns")
    assert not [n for n in (os.listdir(netns) if netns.is_dir() else []) if "direct-t" in n]


def test_the_image_carries_the_stack_and_says_direct(summon: Summon, http_direct: str) -> None:
    r = summon("inspect", http_direct, "--json")
    assert r.returncode == 0, r.stderr
    bom = json.loads(r.stdout)["bom"]
    modules = {m["name"] for m in bom["modules"]}
    assert {"summon.net.stack", "summon.net.tcp.connection", "summon.net.links.tap"} <= modules
    assert {"summon.net.dhcp", "summon.net.dns", "summon.net.links.packet"} <= modules
    assert "summon.runtime.socket_stack" not in modules
    assert bom["app"]["network"] == "direct"


def test_http_in_direct_mode_serves_curl_through_a_port_forward(
    summon: Summon, http_direct: str, running: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    proc = summon.popen(
        "run", http_direct, "--target", "sandbox", "--name", "direct-t-http", "-p", f"{port}:80"
    )
    running.append(proc)
    page = get(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
    assert page == (EXAMPLES / "http" / "static" / "index.html").read_bytes()
    if shutil.which("curl"):
        result = subprocess.run(
            ["curl", "-sS", "-m", "10", f"http://127.0.0.1:{port}/style.css"] * 1,
            capture_output=True,
            timeout=30,
        )
        assert result.stdout == (EXAMPLES / "http" / "static" / "style.css").read_bytes()
    proc.terminate()
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "GET /style.css 200 105" in err + _out


def test_direct_app_sees_only_its_tap_and_socket_is_denied(
    summon: Summon, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """An app in direct mode: fd 3 is the TAP, socket() fails, its counters reach the stats."""
    from summon.store import Store
    from summon.store.image import Image
    from summon.targets.base import PortForward, RunSpec
    from summon.targets.sandbox import SandboxTarget

    app = tmp_path / "probe"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0.1.0"\n\n[tool.summon]\n'
        'entry = "app:main"\nnetwork = "direct"\nports = [80]\n'
    )
    (app / "app.py").write_text(
        "import asyncio, os\n"
        "from summon.devices import Stack\n\n"
        "async def main(stack: Stack) -> None:\n"
        "    import _socket\n"
        "    try:\n"
        "        _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "        verdict = b'socket allowed'\n"
        "    except PermissionError:\n"
        "        verdict = b'socket denied'\n"
        "    fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
        "    tap = os.readlink('/proc/self/fd/3')\n"
        "    async def answer(reader, writer):\n"
        "        writer.write(verdict + b' ' + tap.encode() + b' ' + repr(fds).encode())\n"
        "        writer.close()\n"
        "    server = await stack.start_server(answer, 80)\n"
        "    await server.serve_forever()\n"
    )
    r = summon("build", str(app), "-t", "probe:direct")
    assert r.returncode == 0, r.stderr

    store = Store(Path(summon.env["XDG_DATA_HOME"]) / "summon" / "store")
    image = Image.open(store, "probe:direct")
    port = free_port()
    config = image.app_config()
    spec = RunSpec(
        name="direct-t-probe",
        image=image.ref,
        rootfs=image.rootfs(),
        app_config=config,
        argv=tuple(image.config["config"]["Entrypoint"]),
        ports=(PortForward(port, 80),),
        network="direct",
        state_dir=tmp_path / "state",
    )
    spec.state_dir.mkdir()
    instance = SandboxTarget().start(spec)
    try:
        body = read_all(port, time.monotonic() + 30)
        assert body.startswith(b"socket denied /dev/net/tun ")
        # fds: stdio, the TAP, and asyncio's own (epoll, its self-pipe socketpair).
        fds = eval(body.split(b" ", 3)[3])  # our own app's list of ints
        assert fds[:4] == [0, 1, 2, 3]
        deadline = time.monotonic() + 10
        while True:
            network = instance.stats().network
            if network.get("stack__tcp__accept", 0) >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert network["stack__tcp__accept"] >= 1
        assert network["tcp__segment_in"] > 0
    finally:
        status = instance.stop(10)
    assert status == 0


def test_dns_in_direct_mode_answers_udp_and_tcp_through_the_forwards(
    summon: Summon, dns_direct: str, running: list[subprocess.Popen[str]]
) -> None:
    import dns.message
    import dns.query
    import dns.rcode

    udp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    proc = summon.popen(
        "run", dns_direct, "--target", "sandbox", "--name", "direct-t-dns",
        "-p", f"{udp_port}:53/udp", "-p", f"{tcp_port}:53",
    )  # fmt: skip
    running.append(proc)
    zone = next((EXAMPLES / "dns" / "zone").glob("*.zone")).name[: -len(".zone")]
    query = dns.message.make_query(zone, "SOA")
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = dns.query.udp(query, "127.0.0.1", port=udp_port, timeout=1)
            break
        except (dns.exception.Timeout, OSError):
            if time.monotonic() > deadline:
                raise
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer
    over_tcp = dns.query.tcp(query, "127.0.0.1", port=tcp_port, timeout=10)
    assert over_tcp.answer == answer.answer
