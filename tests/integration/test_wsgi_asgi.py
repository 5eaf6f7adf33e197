"""WSGI and ASGI entries end to end: `summon build` finds the interface and vendors h11, and
`summon run` serves the app with the runtime's server, as a host process and in the sandbox
(kernel sockets, and summon.net's direct stack), checked with curl on three routes (a page,
a JSON POST, an error route that must not take the app down). A pre-forking server in the
sandbox gets the runtime's hint. The ASGI app's WebSocket is spoken to by websocket-client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import websocket  # websocket-client
from gateway_run import run_gateway
from summon_cli import APPS, Summon, free_port, get, needs_sandbox

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

APP_IMAGES = {"wsgi": "wsgi-app:test", "asgi": "asgi-app:test"}


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    return Summon(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def images(summon: Summon) -> dict[str, str]:
    for kind, ref in APP_IMAGES.items():
        r = summon("build", str(APPS / f"{kind}_app"), "-t", ref)
        assert r.returncode == 0, r.stderr
    return APP_IMAGES


def curl(port: int, path: str, *args: str) -> tuple[int, str]:
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition("\n")
    return int(status), body


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_the_image_holds_the_server_and_says_how_to_serve(
    summon: Summon, images: dict[str, str], kind: str
) -> None:
    bom = summon.inspect(images[kind])["bom"]
    assert bom["app"]["entry"] == {"kind": kind, "module": "app", "attr": "app"}
    names = {m["name"] for m in bom["modules"]}
    assert {"h11", "summon.runtime.http.server", f"summon.runtime.http.{kind}"} <= names
    assert any(p["name"] == "h11" for p in bom["packages"])
    # WebSocket: ASGI only (wsproto vendored for it; imported at the first upgrade).
    assert ("summon.runtime.http.websocket" in names) == (kind == "asgi")
    assert any(p["name"] == "wsproto" for p in bom["packages"]) == (kind == "asgi")


def serve_and_check(summon: Summon, ref: str, kind: str, target: str) -> str:
    port = free_port()
    proc = summon.popen("run", ref, "--target", target, "-p", f"{port}:8000")
    try:
        page = get(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
        assert page.startswith(f"hello from {kind}, ")
        status, body = curl(port, "/echo", "-X", "POST", "-H", "Content-Type: application/json",
                            "--data", '{"n": 42, "tags": ["x"]}')  # fmt: skip
        assert (status, json.loads(body)) == (200, {"echo": {"n": 42, "tags": ["x"]}})
        assert curl(port, "/error")[0] == 500
        assert curl(port, "/")[0] == 200  # the error did not take the app down
        if kind == "asgi":
            ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
            ws.send("summoned")
            assert ws.recv() == "denommus"
            ws.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "RuntimeError: the error route fails on purpose" in out + err
    return out + err


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_served_as_a_host_process(summon: Summon, images: dict[str, str], kind: str) -> None:
    log = serve_and_check(summon, images[kind], kind, "unix")
    assert '"POST /echo HTTP/1.1" 200 ' in log and '"GET /error HTTP/1.1" 500 ' in log


@needs_sandbox
@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_served_in_the_sandbox(summon: Summon, images: dict[str, str], kind: str) -> None:
    log = serve_and_check(summon, images[kind], kind, "sandbox")
    assert '"GET / HTTP/1.1" 200 ' in log
    if kind == "asgi":
        assert "lifespan startup" in log and "lifespan shutdown" in log
        assert '"GET /ws HTTP/1.1" 101 ' in log and "websocket closed with 1000" in log


@needs_sandbox
@pytest.mark.sandbox
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_served_on_the_direct_stack_in_the_sandbox(
    summon: Summon, tmp_path: Path, kind: str
) -> None:
    """The same app, network = "direct": summon.net carries it, the kernel's TCP/IP does not."""
    app = tmp_path / kind
    shutil.copytree(APPS / f"{kind}_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = app / "pyproject.toml"
    manifest.write_text(manifest.read_text() + 'network = "direct"\n')  # [tool.summon] is last
    ref = f"{kind}-direct:test"
    r = summon("build", str(app), "-t", ref)
    assert r.returncode == 0, r.stderr
    assert "summon.net.stack" in {m["name"] for m in summon.inspect(ref)["bom"]["modules"]}
    log = serve_and_check(summon, ref, kind, "sandbox")
    assert '"POST /echo HTTP/1.1" 200 ' in log


@needs_sandbox
@pytest.mark.sandbox
def test_a_pre_forking_server_in_the_sandbox_gets_the_hint(summon: Summon) -> None:
    assert summon("build", str(APPS / "prefork"), "-t", "prefork:test").returncode == 0
    host = summon("run", "prefork:test", "--target", "unix")
    assert host.returncode == 0 and "worker spawned" in host.stdout  # fork works on the host
    boxed = summon("run", "prefork:test", "--target", "sandbox")
    assert boxed.returncode == 255
    assert "Unhandled exception in main loop: PermissionError(1, 'Operation not permitted')" in (
        boxed.stderr
    )
    assert (
        "summon: this app tried to fork (pre-forking servers such as gunicorn cannot run "
        'here); serve it with entry = "module:app" so summon\'s runtime serves it'
    ) in boxed.stderr


def get_peer(address: str) -> tuple[tuple[str, int], bytes]:
    """GET /peer on address:8000 from a client socket of our own: (its address, the answer)."""
    with socket.create_connection((address, 8000), timeout=30) as client:
        client.sendall(b"GET /peer HTTP/1.0\r\nHost: peer\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return client.getsockname(), answer


@needs_sandbox
@pytest.mark.sandbox
def test_through_the_gateway_the_app_sees_each_client(
    summon: Summon, images: dict[str, str]
) -> None:
    """The gateway hands each connection to the sandboxed app by fd, with its client's
    address: REMOTE_ADDR and REMOTE_PORT, scope["client"] are the client's own. The app asks
    the kernel nothing (getpeername: its profile refuses it, and it printed a refused line
    and saw no client, before)."""
    services = "".join(
        f'[[service]]\nname = "{kind}"\nimage = "{ref}"\nports = [8000]\nidle_timeout = "60s"\n'
        for kind, ref in images.items()
    )
    with run_gateway(summon, services) as gateway:
        for kind in images:
            assert gateway.status()[kind]["state"] == "down"
            # Cold: held while the app boots, then handed over (the "A" message).
            client, answer = get_peer(gateway.address(kind))
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), answer
            assert client[0] == "127.0.0.1"
            assert body == f"127.0.0.1 {client[1]}\n".encode(), (kind, client, answer)
            status = gateway.status()[kind]
            assert status["handed_over"] is True and status["cold_requests"] == 1, status
    for kind in images:  # read once the gateway stopped the apps: every line is written
        console = "".join(p.read_text() for p in summon.home.rglob(f"gateway/gw-{kind}-*.log"))
        assert '"GET /peer HTTP/1.0" 200' in console, (kind, console)
        assert "refused getpeername" not in console, (kind, console)
        # The access log names the client (it was "-" when the app had no address for it).
        assert "127.0.0.1 - - [" in console, (kind, console)
