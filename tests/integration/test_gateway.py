"""The gateway end to end: real DNS client, real sandboxes, cold starts, scale to zero.

One `summon gateway` process for the module, with a throw-away store and state folder; the
images are built from examples/http and tests/integration/apps/crash. At the end the gateway
gets SIGTERM and must leave no container behind.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gateway_run import Running, get_page, run_gateway, wait_for
from summon_cli import APPS, EXAMPLES, Summon, needs_sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, needs_sandbox]

PAGE_MARK = b"hello from a unikernel"


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


def test_a_missing_image_is_reported_before_any_request(summon: Summon, gateway: Running) -> None:
    """The status page said nothing of a service whose image is not in the store until its
    first request failed; it says so from the start now, and no more once the image is
    there (tagged here, as a pull would)."""
    wait_for(lambda: gateway.status()["missing"]["error"], 20, "the missing image's error")
    st = gateway.status()["missing"]
    assert st["state"] == "down" and st["boots"] == 0 and st["failures"] == 0, st
    assert st["error"].startswith("no image 'nothing-here:1' in the store"), st
    assert "no image &#x27;nothing-here:1&#x27; in the store" in gateway.path("/")
    summon.ok("tag", "http:gw", "nothing-here:1")
    try:
        wait_for(lambda: not gateway.status()["missing"]["error"], 20, "the error to clear")
    finally:
        summon.ok("rmi", "nothing-here:1")  # missing again, for the tests below


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
    # An app handed its connections by fd makes no listener of its own (its socket() was
    # refused, with a line, at every boot through a gateway), and is told each one's client
    # with it (asyncio's getpeername for it was refused, with a line, at every boot).
    console = "".join(p.read_text() for p in gateway.summon.home.rglob("gateway/gw-web-*.log"))
    assert "GET / 200" in console and "refused" not in console, console


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


def test_rmi_refuses_an_image_a_gateway_instance_runs(summon: Summon, gateway: Running) -> None:
    """A gateway's instances are no `summon ps` instances, but rmi sees their images too."""
    assert PAGE_MARK in get_page(gateway.status()["crowd"]["address"])  # up for 60 s
    wait_for(lambda: bool(list(summon.home.rglob("gateway/in-use.*.json"))), 3, "in-use")
    r = summon("rmi", "http:gw")
    assert r.returncode == 2, r.stdout + r.stderr
    # web may still be up from the test before (its file is rewritten within 0.25 s)
    assert "image http:gw is in use by gateway service " in r.stderr, r.stderr
    assert summon("inspect", "http:gw").returncode == 0


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


def test_a_gateway_killed_outright_leaves_its_instances_to_the_next_gateway(
    summon: Summon,
) -> None:
    """SIGKILL: nothing of the gateway can stop what it booted. Each instance is leased
    (instances/scratch.py); the next gateway starting with the same state releases them."""
    service = """
[[service]]
name = "orphan"
image = "http:gw"
idle_timeout = "60s"
"""
    with run_gateway(summon, service) as first:
        assert PAGE_MARK in get_page(first.address("orphan"))
        pid = first.status()["orphan"]["pid"]
        left = first.containers()
        assert pid and left
        first.proc.kill()
        first.proc.wait()
        assert Path(f"/proc/{pid}").exists(), "the instance died with the gateway"
    with run_gateway(summon, service) as second:
        wait_for(lambda: not set(left) & set(second.containers()), 20, "the leftover's release")
        assert not Path(f"/proc/{pid}").exists(), "the killed gateway's instance still runs"
        assert PAGE_MARK in get_page(second.address("orphan"))  # and the service boots anew


def with_boot_artifact(summon: Summon, ref: str = "http:gw") -> None:
    """ref's qemu boot artifact added: the kernel comes from the machine's cache
    (XDG_CACHE_HOME is shared), built if need be."""
    from summon.build.boot import ensure_boot_artifact
    from summon.store import Store
    from summon.store.image import Image

    ensure_boot_artifact(Image.open(Store(summon.store), ref))


@pytest.mark.qemu
@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
)
def test_qemu_service_cold_and_warm(summon: Summon) -> None:
    with_boot_artifact(summon)
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
        for _ in range(4):  # each a client socket the gateway accepts while the VM logs
            assert PAGE_MARK in get_page(address)
        st = gw.status()["vm"]
        assert st["state"] == "up" and st["boots"] == 1 and st["target"] == "qemu"
        assert st["cold_requests"] + st["warm_requests"] == 5
        # The VM's console goes to the service's log, never into a client's connection (the
        # gateway closes its copy of the log's fd once the VM starts: the target keeps one).
        [console] = [p for p in summon.home.rglob("gateway/*.log") if "vm" in p.name]
        assert console.read_text().count("GET / 200") == 5, console.read_text()
        assert st["pid"] and Path(f"/proc/{st['pid']}").exists()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
        assert not Path(f"/proc/{st['pid']}").exists(), "the VM outlived the gateway"


@pytest.mark.qemu
@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
)
def test_qemu_service_steps_down_its_tiers_and_restores(summon: Summon) -> None:
    """up -> frozen -> snapshotted (VM stopped) -> a request restores it; with its snapshot
    removed meanwhile it stays frozen (refused, said) and goes down, and the next request boots."""
    with_boot_artifact(summon)
    with run_gateway(
        summon,
        """
[[service]]
name = "tiers"
image = "http:gw"
target = "qemu"
boot_timeout = "60s"
freeze_after = "1s"
snapshot_after = "2s"
idle_timeout = "4s"
""",
    ) as gw:
        address = gw.address("tiers")
        assert PAGE_MARK in get_page(address, timeout=60)  # a boot saves the snapshot (or has)
        pid = gw.status()["tiers"]["pid"]
        wait_for(lambda: gw.status()["tiers"]["state"] == "snapshotted", 30, "snapshotted")
        assert not Path(f"/proc/{pid}").exists(), "a snapshotted service's VM still runs"
        assert PAGE_MARK in get_page(address, timeout=60)
        assert gw.status()["tiers"]["state"] == "up"
        assert "restored from snapshot" in gw.log.read_text()
        # The status page says so: "restored in X s", not "booted in" (its graph too).
        assert gw.status()["tiers"]["boot_history"][-1]["how"] == "restore"
        wait_for(lambda: gw.status()["tiers"]["state"] == "frozen", 30, "frozen")
        summon.ok("snapshot", "rm", "--all")
        wait_for(lambda: "cannot go snapshotted" in gw.log.read_text(), 30, "the refusal")
        assert gw.status()["tiers"]["state"] == "frozen"
        said = gw.log.read_text()
        assert "is gone (summon snapshot rm" in said
        wait_for(lambda: gw.status()["tiers"]["state"] == "down", 30, "down")
        assert PAGE_MARK in get_page(address, timeout=60)
        assert "saved (" in gw.log.read_text()[len(said) :]  # booted, and saved anew
