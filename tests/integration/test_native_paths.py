"""The fast paths of issue 12 end to end, sandboxed: host listeners handed to the app
(LISTEN_FDS), the gateway's connections handed over by fd, frozen instances, the app's own
figures, and the network namespace made without pyroute2.

One home for the module: examples/http and examples/dns are built once and shared.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from summon_cli import APPS, EXAMPLES, ROOT, Summon, free_port, needs_sandbox
from test_gateway import PAGE_MARK, Running, get_page, run_gateway, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, needs_sandbox]


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    summon = Summon(tmp_path_factory.mktemp("nativehome"))
    summon.ok("build", str(EXAMPLES / "http"), "-t", "http:native")
    return summon


def app_pid(summon: Summon, name: str) -> int:
    pid = summon.ps()[name]["pid"]
    assert isinstance(pid, int)
    return pid


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if with_target.startswith("socket:["):
            found.add(with_target[len("socket:[") : -1])
    return found


def host_tcp(state: str) -> dict[tuple[str, int], str]:
    """(local address, port) -> socket inode of the host namespace's TCP sockets in state
    (0A listening, 01 established), from /proc/net/tcp."""
    found = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != state:
                continue
            hex_addr, hex_port = fields[1].split(":")
            addr = socket.inet_ntoa(bytes.fromhex(hex_addr)[::-1])
            found[(addr, int(hex_port, 16))] = fields[9]
    return found


@pytest.fixture
def detached(summon: Summon) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        summon("rm", "-f", name)


def test_the_app_accepts_on_the_host_listener_itself(summon: Summon, detached: list[str]) -> None:
    port = free_port()
    summon.ok("run", "-d", "--name", "native", "http:native", "-p", f"{port}:80")
    detached.append("native")
    body = get_page_retrying(port)
    assert PAGE_MARK in body
    pid = app_pid(summon, "native")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"LISTEN_FDS=1" in environ and b"LISTEN_FDNAMES=80" in environ
    # The listening socket on the host's 127.0.0.1:port is the app's own fd: accepted
    # connections are kernel sockets between the client and the app, no forwarder between.
    listener = host_tcp("0A")[("127.0.0.1", port)]
    assert listener in socket_inodes(pid)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(12).startswith(b"HTTP/1.1 200")
        # The server end of this very connection is a socket of the app's process.
        server_end = host_tcp("01")[("127.0.0.1", port)]
        assert server_end in socket_inodes(pid)
    # Nothing inside the app's namespace carries it: no socket there uses port 80.
    inside = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "cat", "/proc/net/tcp"], capture_output=True, text=True
    )
    assert inside.returncode == 0, inside.stderr
    ports = {line.split()[1].split(":")[1] for line in inside.stdout.splitlines()[1:]}
    assert f"{80:04X}" not in ports


def test_two_host_ports_to_one_guest_port_both_answer(summon: Summon, detached: list[str]) -> None:
    """-p A:80 -p B:80: both listeners go to the app named 80, and it accepts on each."""
    first, second = free_port(), free_port()
    summon.ok("run", "-d", "--name", "twoports", "http:native", "-p", f"{first}:80",
              "-p", f"{second}:80")  # fmt: skip
    detached.append("twoports")
    assert PAGE_MARK in get_page_retrying(first)
    assert PAGE_MARK in get_page_retrying(second, deadline=5)
    environ = Path(f"/proc/{app_pid(summon, 'twoports')}/environ").read_bytes().split(b"\0")
    assert b"LISTEN_FDS=2" in environ and b"LISTEN_FDNAMES=80:80" in environ


def get_page_retrying(port: int, deadline: float = 20) -> bytes:
    """GET / on 127.0.0.1:port, retrying while the app starts."""
    end = time.monotonic() + deadline
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            if response.status == 200:
                return response.read()
        except (OSError, http.client.HTTPException):
            if time.monotonic() > end:
                raise
        finally:
            conn.close()
        time.sleep(0.05)


def test_udp_keeps_the_forwarder_while_tcp_is_handed_over(
    summon: Summon, detached: list[str]
) -> None:
    summon.ok("build", str(EXAMPLES / "dns"), "-t", "dns:native")
    port = free_port(socket.SOCK_DGRAM)
    summon.ok(
        "run", "-d", "--name", "dnsnative", "dns:native",
        "-p", f"{port}:53/udp", "-p", f"{port}:53",
    )  # fmt: skip
    detached.append("dnsnative")
    query = dns.message.make_query("www.example.test.", "A")
    deadline = time.monotonic() + 20
    while True:
        try:
            udp = dns.query.udp(query, "127.0.0.1", timeout=2, port=port)
            break
        except (OSError, dns.exception.Timeout):
            assert time.monotonic() < deadline, "no UDP answer"
    tcp = dns.query.tcp(query, "127.0.0.1", timeout=5, port=port)
    assert udp.answer and udp.answer == tcp.answer
    pid = app_pid(summon, "dnsnative")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"LISTEN_FDS=1" in environ  # TCP only: UDP never leaves the host's hands
    assert host_tcp("0A")[("127.0.0.1", port)] in socket_inodes(pid)
    udp_sockets = Path("/proc/net/udp").read_text()
    assert f":{port:04X} " in udp_sockets  # the forwarder's, in the host's namespace
    leaked = {line.split()[9] for line in udp_sockets.splitlines()[1:]}
    assert not leaked & socket_inodes(pid), "a host UDP socket reached the app"


@pytest.fixture(scope="module")
def gateway(summon: Summon) -> Iterator[Running]:
    summon.ok("build", str(APPS / "pollserver"), "-t", "poll:native")
    with run_gateway(
        summon,
        """
[[service]]
name = "cold"
image = "http:native"
idle_timeout = "60s"

[[service]]
name = "tiers"
image = "http:native"
freeze_after = "1s"
idle_timeout = "60s"

[[service]]
name = "poller"
image = "poll:native"
ports = [8000]
freeze_after = "1s"
idle_timeout = "60s"
""",
    ) as running:
        yield running


def test_gateway_hands_over_a_connection_whose_request_came_before_the_boot(
    gateway: Running,
) -> None:
    st = gateway.status()["cold"]
    assert st["state"] == "down"
    with socket.create_connection((st["address"], 80), timeout=20) as client:
        # The whole request is sent at once, before any instance exists: the gateway reads
        # it while it holds the connection and hands it over with the socket.
        client.sendall(b"GET / HTTP/1.0\r\nHost: cold\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and PAGE_MARK in answer
    st = gateway.status()["cold"]
    assert st["handed_over"] is True and st["boots"] == 1 and st["cold_requests"] == 1
    assert st["runtime"].get("accepted", 0) >= 1  # the app took it itself


def test_a_frozen_instance_uses_no_cpu_and_answers_after_thaw(gateway: Running) -> None:
    address = gateway.status()["tiers"]["address"]
    assert PAGE_MARK in get_page(address)
    wait_for(lambda: gateway.status()["tiers"]["state"] == "frozen", 10, "tiers to freeze")
    st = gateway.status()["tiers"]
    cgroup = next(c for c in gateway.containers() if c.startswith("summon-gw-tiers-"))
    state = Path(f"/sys/fs/cgroup/freezer/{cgroup}/freezer.state")
    usage = Path(f"/sys/fs/cgroup/cpuacct/{cgroup}/cpuacct.usage")
    assert state.read_text().strip() == "FROZEN"
    before = int(usage.read_text())
    time.sleep(1.0)
    assert int(usage.read_text()) == before, "a frozen instance used CPU"
    assert st["memory_bytes"] and st["memory_bytes"] > 1_000_000  # its memory stays
    assert 'summon_gateway_state{service="tiers",state="frozen"} 1' in gateway.path("/metrics")
    assert PAGE_MARK in get_page(address)
    st = gateway.status()["tiers"]
    assert st["thaws"] >= 1 and st["boots"] == 1 and st["state"] in ("up", "frozen")
    assert state.read_text().strip() in ("THAWED", "FROZEN")


def test_a_plain_script_asleep_in_poll_is_frozen_and_thawed_alive(gateway: Running) -> None:
    """A frozen task's poll() with a timeout, or time.sleep(), goes on through
    restart_syscall when thawed; the gate refused it (never recorded), and a plain script
    (http.server, spliced) died of EPERM at its first thaw: the request that thawed it got
    an empty reply, and its sleeping thread raised."""
    address = gateway.status()["poller"]["address"]

    def page() -> bytes:
        conn = http.client.HTTPConnection(address, 8000, timeout=20)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            return response.read()
        finally:
            conn.close()

    assert page().startswith(b"ticker alive")
    for thaw in (1, 2):
        wait_for(lambda: gateway.status()["poller"]["state"] == "frozen", 10, "poller to freeze")
        assert page().startswith(b"ticker alive")
        st = gateway.status()["poller"]
        assert st["boots"] == 1 and st["thaws"] >= thaw and not st["error"], st
    console = "".join(p.read_text() for p in gateway.summon.home.rglob("gateway/gw-poller-*.log"))
    assert "restart_syscall" not in console, console


def test_status_page_shows_the_apps_own_figures(gateway: Running) -> None:
    address = gateway.status()["cold"]["address"]
    for _ in range(3):
        assert PAGE_MARK in get_page(address)
    st = gateway.status()["cold"]
    runtime = st["runtime"]
    for figure in ("gc0", "gc1", "gc2", "blocks", "rss", "accepted"):
        assert figure in runtime, runtime
    page = gateway.path("/")
    assert "(gen 0/1/2)" in page and "connections" in page and "<svg" in page
    assert "h11 0.16.0" in page  # the vendored package, from the image's BOM
    metrics = gateway.path("/metrics")
    assert 'summon_app_gc_collections_total{service="cold",generation="2"}' in metrics
    assert 'summon_app_connections_total{service="cold"}' in metrics


def test_summon_stats_has_the_apps_figures(summon: Summon, detached: list[str]) -> None:
    port = free_port()
    summon.ok("run", "-d", "--name", "statsapp", "http:native", "-p", f"{port}:80")
    detached.append("statsapp")
    assert PAGE_MARK in get_page_retrying(port)
    rows = json.loads(summon.ok("stats", "--no-stream", "--json", "statsapp"))
    runtime = rows[0]["runtime"]
    assert {"gc0", "gc1", "gc2", "blocks", "accepted"} <= set(runtime), rows
    assert runtime["accepted"] >= 1
    table = summon.ok("stats", "--no-stream", "statsapp")
    assert "GC 0/1/2" in table and "CONNS" in table


def test_netns_is_made_without_pyroute2(tmp_path: Path) -> None:
    script = tmp_path / "ns.py"
    script.write_text(
        f"""
import socket, sys
from summon.targets.sandbox.netns import NetNamespace, run_inside
ns = NetNamespace("summon-nopyroute2-{os.getpid()}")
ns.create()
try:
    def inside():
        with socket.socket() as server:
            server.bind(("127.0.0.1", 80))
            server.listen()
            with socket.create_connection(("127.0.0.1", 80), timeout=2):
                pass
        return "bound"
    print(run_inside(ns.path, inside))
    print("pyroute2" in sys.modules)
    print(ns.path.exists())
finally:
    ns.remove()
print(ns.path.exists())
"""
    )
    name = f"summon-nopyroute2-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    assert out.split() == ["bound", "False", "True", "False"], out
    assert name not in os.listdir("/run/netns")
    assert name not in Path("/proc/self/mountinfo").read_text()


def test_lo_is_up_in_a_fresh_namespace() -> None:
    from summon.targets.sandbox.netns import NetNamespace

    with NetNamespace(f"summon-loup-{os.getpid()}") as ns:
        link = subprocess.run(
            ["ip", "netns", "exec", ns.name, "ip", "-o", "link", "show", "lo"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "UP" in link.split("<", 1)[1].split(">", 1)[0].split(",")
        low_ports = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
        sysctl = subprocess.run(
            ["ip", "netns", "exec", ns.name, "cat", low_ports],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert sysctl.strip() == "0"


def test_nothing_is_left_after_the_gateway_stops(gateway: Running) -> None:
    assert PAGE_MARK in get_page(gateway.status()["cold"]["address"])
    gateway.proc.terminate()
    assert gateway.proc.wait(30) == 0
    assert gateway.containers() == []
    assert not [n for n in os.listdir("/run/netns") if n.startswith("summon-gw-")]
    freezer = Path("/sys/fs/cgroup/freezer")
    assert not [c for c in os.listdir(freezer) if c.startswith("summon-gw-")]
    client = http.client.HTTPConnection("127.0.0.1", gateway.status_port, timeout=2)
    with pytest.raises(OSError):
        client.request("GET", "/")
