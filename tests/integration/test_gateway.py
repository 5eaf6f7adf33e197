"""The gateway end to end: real DNS client, real sandboxes, cold starts, scale to zero.

One `summon gateway` process for the module, with a throw-away store and state folder; the
images are built from examples/http and tests/integration/apps/crash. At the end the gateway
gets SIGTERM and must leave no container behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from summon_cli import APPS, EXAMPLES, ROOT, Summon, free_port, needs_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, needs_sandbox]

PAGE_MARK = b"hello from a unikernel"


class Running:
    def __init__(
        self,
        summon: Summon,
        proc: subprocess.Popen[bytes],
        dns_port: int,
        status_port: int,
        log: Path,
    ) -> None:
        self.summon, self.proc, self.dns_port, self.status_port, self.log = (
            summon, proc, dns_port, status_port, log)  # fmt: skip

    def status(self) -> dict[str, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", "/status.json")
        doc = json.loads(conn.getresponse().read())
        conn.close()
        return {s["name"]: s for s in doc["services"]}

    def path(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", path)
        body = conn.getresponse().read().decode()
        conn.close()
        return body

    def address(self, name: str) -> str:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.lifetime = 5
        answer = resolver.resolve(f"{name}.summon.test", "A")
        return str(answer[0].address)

    def containers(self) -> list[str]:
        root = self.summon.home / "state" / "summon" / "runc"
        if not root.exists():
            return []
        out = subprocess.run(
            ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=True
        ).stdout
        return out.split()


def get_page(address: str, timeout: float = 10) -> bytes:
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def run_gateway(summon: Summon, services: str) -> Iterator[Running]:
    """`summon gateway` on services (TOML [[service]] tables) until the block ends."""
    dns_port, status_port = free_port(), free_port()
    config = summon.home / "gateway.toml"
    config.write_text(f"""
[gateway]
dns = "127.0.0.1:{dns_port}"
zone = "summon.test."
status = "127.0.0.1:{status_port}"
{services}""")
    log = summon.home / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            summon.argv("gateway", "--config", str(config), "-v"),
            env=summon.env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    running = Running(summon, proc, dns_port, status_port, log)
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                running.status()
                return True
            except OSError:
                return False

        wait_for(ready, 20, "the gateway's status server")
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    summon = Summon(tmp_path_factory.mktemp("gwhome"))
    summon.ok("build", str(EXAMPLES / "http"), "-t", "http:gw")
    return summon


@pytest.fixture(scope="module")
def gateway(summon: Summon) -> Iterator[Running]:
    summon.ok("build", str(APPS / "crash"), "-t", "crash:gw")
    with run_gateway(
        summon,
        """
[[service]]
name = "web"
image = "http:gw"
idle_timeout = "2s"

[[service]]
name = "crowd"
image = "http:gw"
idle_timeout = "60s"

[[service]]
name = "broken"
image = "crash:gw"
boot_timeout = "5s"

[[service]]
name = "missing"
image = "nothing-here:1"
boot_timeout = "5s"
""",
    ) as running:
        yield running


def test_resolve_cold_get_idle_stop_get_again(gateway: Running) -> None:
    address = gateway.address("web")
    assert address.startswith("127.") and address != "127.0.0.1"
    t0 = time.monotonic()
    assert PAGE_MARK in get_page(address)
    first_byte = time.monotonic() - t0
    st = gateway.status()["web"]
    assert st["state"] == "up" and st["boots"] == 1
    assert st["last_boot_seconds"] is not None
    assert st["bom"]["python"].startswith("3.11") and st["bom"]["modules"] > 0
    assert any(c.startswith("summon-gw-web-") for c in gateway.containers())
    pid = st["pid"]
    assert pid and Path(f"/proc/{pid}").exists()
    assert first_byte < 5
    # Scale to zero: no connection for idle_timeout (2 s) stops it, container and all.
    wait_for(lambda: gateway.status()["web"]["state"] == "down", 8, "web to go down")
    assert not any(c.startswith("summon-gw-web-") for c in gateway.containers())
    assert not Path(f"/proc/{pid}").exists(), "the instance's process outlived the stop"
    # ... and the next request boots it again, no DNS query needed.
    assert PAGE_MARK in get_page(address)
    st = gateway.status()["web"]
    assert st["boots"] == 2 and st["state"] == "up" and st["cold_requests"] >= 1
    metrics = gateway.path("/metrics")
    assert 'summon_gateway_boots_total{service="web"} 2' in metrics
    assert 'summon_gateway_up{service="web"} 1' in metrics
    assert "booted in" in gateway.path("/")


def test_fifty_concurrent_cold_clients_one_boot(gateway: Running) -> None:
    address = gateway.status()["crowd"]["address"]
    assert gateway.status()["crowd"]["state"] == "down"
    start = threading.Barrier(50)  # all connect together, not as the pool's threads come up

    def client(_: int) -> bytes:
        start.wait(10)
        return get_page(address, timeout=20)

    with ThreadPoolExecutor(50) as pool:
        pages = list(pool.map(client, range(50)))
    assert all(PAGE_MARK in p for p in pages)
    st = gateway.status()["crowd"]
    assert st["boots"] == 1 and st["failures"] == 0
    assert st["cold_requests"] + st["warm_requests"] == 50
    # Most arrive during the one boot; a slow machine may bring a few in after it.
    assert st["cold_requests"] >= 10, st
    assert st["memory_bytes"] and st["memory_bytes"] > 1_000_000


@pytest.mark.parametrize(
    ("name", "error"), [("broken", "exited with status 3"), ("missing", "nothing-here")]
)
def test_broken_service_closes_connections_and_reports(
    gateway: Running, name: str, error: str
) -> None:
    address = gateway.status()[name]["address"]
    t0 = time.monotonic()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        get_page(address, timeout=15)
    assert time.monotonic() - t0 < 5 + 1  # within boot_timeout, never a hang
    # The client may see the close (the forwarder's, as the app dies) a moment before the
    # gateway's watcher has recorded the exit; both within the bound.
    wait_for(
        lambda: gateway.status()[name]["state"] == "failed",
        5 + 1 - (time.monotonic() - t0),
        f"{name} to be marked failed",
    )
    st = gateway.status()[name]
    assert st["state"] == "failed" and error in st["error"], st
    assert st["failures"] >= 1
    # The dead app's container is released too (a moment after the failure is seen).
    wait_for(
        lambda: not any(c.startswith(f"summon-gw-{name}-") for c in gateway.containers()),
        5,
        "the failed container's cleanup",
    )


def test_sigterm_stops_every_instance(gateway: Running) -> None:
    assert PAGE_MARK in get_page(gateway.address("web"))
    assert gateway.containers()
    pids = [s["pid"] for s in gateway.status().values() if s["pid"]]
    assert pids
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(20) == 0, gateway.log.read_text()
    assert gateway.containers() == []
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "an instance outlived it"
    leftover = subprocess.run(["pgrep", "-f", "summon-gw-"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


@pytest.mark.qemu
@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
)
def test_qemu_service_cold_and_warm(summon: Summon) -> None:
    from summon.build.boot import ensure_boot_artifact
    from summon.store import Store
    from summon.store.image import Image

    # The kernel comes from the machine's cache (XDG_CACHE_HOME is shared), built if need be.
    ensure_boot_artifact(Image.open(Store(summon.store), "http:gw"))
    with run_gateway(
        summon,
        """
[[service]]
name = "vm"
image = "http:gw"
target = "qemu"
boot_timeout = "60s"
""",
    ) as gw:
        address = gw.address("vm")
        assert PAGE_MARK in get_page(address, timeout=60)  # held through the VM's boot
        assert PAGE_MARK in get_page(address)
        st = gw.status()["vm"]
        assert st["state"] == "up" and st["boots"] == 1 and st["target"] == "qemu"
        assert st["cold_requests"] + st["warm_requests"] == 2
        assert st["pid"] and Path(f"/proc/{st['pid']}").exists()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
        assert not Path(f"/proc/{st['pid']}").exists(), "the VM outlived the gateway"
