"""The compatibility corpus end to end: each real app is built once, served in the sandbox and
checked with curl on three routes (a page, a POST with a JSON body, an error route that must
answer 4xx/5xx and leave the app answering); the apps served by summon's runtime also on the
direct stack, one on qemu, and the stdlib server also as a host process.

Root and runc are needed (the sandbox); curl is the client, as a user would check by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from compat_apps import ECHO_BODY, BuildImage, CorpusApp, corpus
from summon_cli import Summon, free_port, needs_sandbox

pytestmark = [
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

APPS = corpus()
BY_NAME = {app.name: app for app in APPS}
START_TIMEOUT = 60.0  # a cold start under a loaded CI machine; seconds, not a benchmark
# What a process aborted by glibc for want of libgcc_s.so.1 (pthread_exit) prints.
LIBGCC_ABORT = "libgcc_s.so.1 must be installed"


def curl(port: int, path: str, *args: str, timeout: float = 20) -> tuple[int, str]:
    """(status, body) of one request; status 0 when no HTTP answer came."""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}", *args,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=timeout + 10, check=False,
    )  # fmt: skip
    body, _, status = r.stdout.rpartition("\n")
    return int(status or 0), body


def wait_for_page(port: int, proc: subprocess.Popen[str], deadline: float) -> str:
    while True:
        status, body = curl(port, "/", timeout=5)
        if status == 200:
            return body
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the app exited ({proc.returncode}) before answering:\n{out}{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no page on port {port} within {START_TIMEOUT:.0f}s (last: {status})")
        time.sleep(0.1)


class Served:
    """An app running under `summon run`, and what it printed once stopped."""

    def __init__(self, port: int, proc: subprocess.Popen[str]) -> None:
        self.port = port
        self.proc = proc
        self.log = ""
        self.status: int | None = None


@contextlib.contextmanager
def serve(summon: Summon, ref: str, target: str, *args: str, own_port: bool = False
          ) -> Iterator[Served]:
    """own_port: the app brings its own server and runs on the host (unix), where it binds
    the host port itself ($PORT): -p only maps what the Stack device binds."""
    port = free_port()
    if own_port:
        args = (*args, "-e", f"PORT={port}")
    proc = summon.popen("run", ref, "--target", target, "-p", f"{port}:8000", *args)
    served = Served(port, proc)
    try:
        wait_for_page(port, proc, time.monotonic() + START_TIMEOUT)
        yield served
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        served.log, served.status = out + err, proc.returncode
    finally:
        if proc.poll() is None:  # a failed check: stop it as a user would, so it cleans up
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert LIBGCC_ABORT not in served.log
    # summon run passes the app's status on: a clean stop, or the signal that stopped it.
    assert served.status in (0, 128 + signal.SIGTERM), served.log


def check_routes(app: CorpusApp, port: int) -> None:
    """The three routes every corpus app answers, checked with curl."""
    status, page = curl(port, "/")
    assert status == 200 and f"hello from {app.name}" in page, (status, page)
    status, body = curl(port, "/echo", "-X", "POST", "-H", "Content-Type: application/json",
                        "--data-binary", json.dumps(ECHO_BODY))  # fmt: skip
    assert status == 200, (status, body)
    assert json.loads(body)["echo"] == ECHO_BODY
    status, body = curl(port, "/error")
    assert status == app.error_status, (status, body)
    # A path the app does not serve: the framework's own not-found page, made on first use
    # (Bottle's is a template it compiles then), not a failure of the seal.
    status, body = curl(port, "/no-such-page")
    assert 0 < status < 500, (status, body)
    # The failure took nothing down: the same app answers the next request.
    assert curl(port, "/")[0] == 200


@needs_sandbox
@pytest.mark.sandbox
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_serves_in_the_sandbox(summon: Summon, corpus_image: BuildImage, name: str) -> None:
    app = BY_NAME[name]
    ref = corpus_image(app, "socket")
    with serve(summon, ref, "sandbox") as served:
        check_routes(app, served.port)
    # The failure was reported where the operator looks, with the app's own exception.
    assert "the error route fails on purpose" in served.log
    bom = summon.inspect(ref)["bom"]
    assert "libgcc_s.so.1" in {lib["soname"] for lib in bom["libraries"]}


def check_stdlib_server(summon: Summon, target: str) -> str:
    """The issue's own case: http.server resolving localhost and its own host name and
    encoding cp1252 inside its handler; a request that raises drops only its connection."""
    app = BY_NAME["stdlib_http"]
    with serve(summon, app.ref, target, own_port=target == "unix") as served:
        status, page = curl(served.port, "/")
        assert status == 200
        assert "localhost is 127.0.0.1" in page and "cp1252 euro is 80" in page
        me = page.split("; ")[1]
        assert me.endswith(" is 127.0.0.1") or target == "unix", page
        # Uncaught in the handler: socketserver prints the traceback (its lazy import of
        # traceback must be in the image) and closes the connection; no HTTP answer.
        assert curl(served.port, "/crash")[0] == 0
        check_routes(app, served.port)
    assert "RuntimeError: the crash route fails on purpose" in served.log
    return served.log


@needs_sandbox
@pytest.mark.sandbox
def test_stdlib_server_resolves_and_encodes_in_the_sandbox(
    summon: Summon, corpus_image: BuildImage
) -> None:
    corpus_image(BY_NAME["stdlib_http"], "socket")
    check_stdlib_server(summon, "sandbox")


def test_stdlib_server_resolves_and_encodes_as_a_host_process(
    summon: Summon, corpus_image: BuildImage
) -> None:
    corpus_image(BY_NAME["stdlib_http"], "socket")
    check_stdlib_server(summon, "unix")


DIRECT = sorted(app.name for app in APPS if app.direct)
QEMU = sorted(app.name for app in APPS if app.qemu)


@needs_sandbox
@pytest.mark.sandbox
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
@pytest.mark.parametrize("name", DIRECT)
def test_serves_on_the_direct_stack(summon: Summon, corpus_image: BuildImage, name: str) -> None:
    """network = "direct": summon.net carries the app's HTTP, the kernel's TCP/IP does not."""
    app = BY_NAME[name]
    assert app.runtime_served  # an app with its own server cannot use summon.net
    ref = corpus_image(app, "direct")
    assert "summon.net.stack" in {m["name"] for m in summon.inspect(ref)["bom"]["modules"]}
    with serve(summon, ref, "sandbox") as served:
        check_routes(app, served.port)
    assert '"POST /echo HTTP/1.1" 200 ' in served.log


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu-system-x86_64")
@pytest.mark.parametrize("name", QEMU)
def test_serves_on_qemu(summon: Summon, corpus_image: BuildImage, name: str) -> None:
    """The same image booted as a microVM (its kernel built once into the user's cache)."""
    app = BY_NAME[name]
    ref = corpus_image(app, "socket")
    # On a cold cache the first kernel takes minutes to build: not within the page timeout.
    built = summon("kernel", "build", ref, timeout=1200)
    assert built.returncode == 0, built.stderr
    with serve(summon, ref, "qemu") as served:
        check_routes(app, served.port)
    assert "the error route fails on purpose" in served.log


@needs_sandbox
@pytest.mark.sandbox
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
def test_an_own_server_on_the_direct_stack_is_told_why_it_cannot_listen(
    summon: Summon, corpus_image: BuildImage
) -> None:
    """Found by the corpus: http.server built with network = "direct" died of a bare
    PermissionError (the sandbox denies it kernel sockets); now the runtime says why."""
    ref = corpus_image(BY_NAME["stdlib_http"], "direct")
    r = summon("run", ref, "--target", "sandbox", timeout=60)
    assert r.returncode == 1
    assert "PermissionError: [Errno 1] Operation not permitted" in r.stderr
    assert 'summon: this app made a kernel socket, which the sandbox denies with network = "direct"' in r.stderr  # noqa: E501
