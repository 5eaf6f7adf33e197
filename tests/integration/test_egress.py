"""Outbound connections from the sandbox: the manifest's egress allowlist, enforced by rules
summon installs in the instance's own network namespace (targets/sandbox/egress.py).

The peers listen on the host's 127.0.0.1 only, which slirp4netns shows the sandbox as
10.0.2.2: an allowed port there answers; a port not in the list is refused by the chain
SUMMON-EGRESS-REFUSED (its counter says so) and its peer never sees a connection; without
egress the app has no route out at all. No other address is ever a destination.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from summon_cli import Summon, needs_sandbox

pytestmark = [
    needs_sandbox,
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="apt-get install slirp4netns"),
    pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="apt-get install iptables"),
]

APP = '''
import json, os, socket, ssl, sys, time

def attempt(port):
    try:
        with socket.create_connection(("HOST_LOOPBACK", port), timeout=5) as s:
            return "ok " + s.recv(100).decode().strip()
    except OSError as e:
        return f"refused {type(e).__name__}"

report = {"allowed": attempt(ALLOWED), "other": attempt(OTHER)}
# What a TLS client (urllib, aiohttp) trusts by default: the image's CA certificates.
report["cas"] = ssl.create_default_context().cert_store_stats()["x509_ca"]
for name in ("hosts", "resolv.conf", "nsswitch.conf"):
    report[name] = open("/etc/" + name).read()
print(json.dumps(report), flush=True)
time.sleep(60)  # until the test has read the rule counters and stops it
'''


class Peer:
    """A TCP server on the host's loopback that greets and counts its connections."""

    def __init__(self, greeting: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.greeting = greeting
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[tuple[Peer, Peer]]:
    a, b = Peer(b"hello from the allowed peer\n"), Peer(b"you should not see this\n")
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    s = Summon(tmp_path_factory.mktemp("home"))
    # The user's cache: the VM test's kernel is built once there, not once per run.
    cache = os.environ.get("XDG_CACHE_HOME", "")
    s.env["XDG_CACHE_HOME"] = cache if os.path.isabs(cache) else str(Path.home() / ".cache")
    return s


def build(summon: Summon, folder: Path, allowed: int, other: int, egress: list[str],
          host_loopback: str = "10.0.2.2") -> str:  # fmt: skip
    """An app that tries both peers through host_loopback (the host's 127.0.0.1 as the
    instance's slirp4netns shows it), allowed to reach egress."""
    folder.mkdir()
    (folder / "app.py").write_text(
        APP.replace("ALLOWED", str(allowed)).replace("OTHER", str(other))
        .replace("HOST_LOOPBACK", host_loopback)
    )
    (folder / "summon.toml").write_text(
        textwrap.dedent(f"""
            name = "{folder.name}"
            entry = "app.py"
            egress = {json.dumps(egress)}
        """)
    )
    ref = f"{folder.name}:test"
    r = summon("build", str(folder), "-t", ref)
    assert r.returncode == 0, r.stderr
    return ref


def run_and_read(
    summon: Summon, ref: str, name: str, target: str = "sandbox"
) -> tuple[dict[str, str], str]:
    """The app's report, and the refused chain's counters read while it still runs."""
    proc = summon.popen("run", ref, "--target", target, "--name", name)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and not line.startswith("{"):  # a VM's console says more first
            line = proc.stdout.readline()
        assert line, proc.communicate(timeout=30)
        # The sandbox names its container and namespace after the instance's short id, and
        # binds the namespace under /run/netns in its monitor's mount namespace.
        monitor = summon.ps()[name]["monitor_pid"]
        listing = subprocess.run(
            ["nsenter", "-t", str(monitor), "-m", "--", "nsenter",
             f"--net={netns_of(summon, name)}", "iptables", "-nvxL"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        counters = listing.stdout if listing.returncode == 0 else listing.stderr
        return json.loads(line), counters
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def netns_of(summon: Summon, name: str) -> str:
    return f"/run/netns/summon-{summon.ps()[name]['short_id']}"


def refused_packets(listing: str) -> int:
    """Packets the refusing chain's tcp-reset rule refused, from `iptables -nvxL`."""
    chain = listing.split("Chain SUMMON-EGRESS-REFUSED", 1)[-1]
    for line in chain.splitlines():
        if "tcp-reset" in line:
            return int(line.split()[0])
    raise AssertionError(f"no tcp-reset rule in:\n{listing}")


def test_an_allowed_destination_answers_and_another_is_refused_by_the_rule(
    summon: Summon, tmp_path: Path, peers: tuple[Peer, Peer]
) -> None:
    allowed, other = peers
    ref = build(summon, tmp_path / "egress-app", allowed.port, other.port,
                [f"10.0.2.2:{allowed.port}"])  # fmt: skip
    name = f"egress-{os.getpid()}"
    report, counters = run_and_read(summon, ref, name)
    assert report["allowed"] == "ok hello from the allowed peer"
    assert report["other"] == "refused ConnectionRefusedError"
    assert refused_packets(counters) >= 1  # SUMMON-EGRESS-REFUSED said no, not the peer
    assert (allowed.accepted, other.accepted) == (1, 0)
    assert "dpt:53" not in counters  # an address-only list lets no DNS query out
    # Egress on: a resolver and the lookup order; the instance's names resolve locally.
    assert report["resolv.conf"].startswith("nameserver 10.0.2.3\n")
    assert report["nsswitch.conf"] == "hosts: files dns\n"
    assert "127.0.0.1\tlocalhost" in report["hosts"] and name in report["hosts"]
    assert not os.path.exists(netns_of(summon, name))  # gone with the instance
    # An image that reaches out with ssl trusts what the host trusts (urllib, aiohttp).
    assert report["cas"] > 50, report["cas"]


def test_without_egress_nothing_leaves(
    summon: Summon, tmp_path: Path, peers: tuple[Peer, Peer]
) -> None:
    allowed, other = peers
    ref = build(summon, tmp_path / "closed-app", allowed.port, other.port, [])
    report, _counters = run_and_read(summon, ref, f"closed-{os.getpid()}")
    # No interface but lo, no route: the connect fails before any packet is sent.
    assert report["allowed"] == report["other"] == "refused OSError"
    assert (allowed.accepted, other.accepted) == (0, 0)
    assert report["resolv.conf"] == ""  # the image's own: no resolver without egress
    assert report["cas"] == 0  # no peers, no certificates shipped for them


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu-system-x86_64")
def test_a_vm_reaches_the_allowed_destination_only(
    summon: Summon, tmp_path: Path, peers: tuple[Peer, Peer]
) -> None:
    """The same allowlist for a microVM: QEMU runs in a namespace with the rules, where the
    host's loopback is 10.0.3.2 (the guest's own 10.0.2.2 is QEMU's)."""
    allowed, other = peers
    ref = build(summon, tmp_path / "egress-vm", allowed.port, other.port,
                [f"10.0.3.2:{allowed.port}"], host_loopback="10.0.3.2")  # fmt: skip
    report, counters = run_and_read(summon, ref, f"egress-vm-{os.getpid()}", "qemu")
    assert report["allowed"] == "ok hello from the allowed peer"
    assert report["other"] == "refused ConnectionRefusedError"
    assert refused_packets(counters) >= 1
    assert (allowed.accepted, other.accepted) == (1, 0)


# A WSGI app that turns the connection it serves into one of its own: disconnected
# (connect with AF_UNSPEC through ctypes, bound before the seal) and connected again to OTHER
# on 127.0.0.1, which is the host's own if the socket is the host's. The seal refuses that
# foreign call (seal.ctypes), so the app runs with seal = "audit": what is tested here is the
# sandbox's own rule, which must hold for an app whose seal is off too.
RECONNECTING = '''
import ctypes, json, os, socket

_connect = ctypes.CDLL(None, use_errno=True).connect
_unspec = ctypes.create_string_buffer(16)  # a sockaddr of family 0, AF_UNSPEC


def app(environ, start_response):
    if environ["PATH_INFO"] == "/reconnect":
        for fd in range(3, 256):
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            try:
                sock.getpeername()
            except OSError:
                sock.close()
                continue
            if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                sock.close()
                continue
            _connect(sock.fileno(), _unspec, 16)
            sock.setblocking(True)
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", OTHER))
                result = "reached " + sock.recv(100).decode().strip()
            except OSError as e:
                result = f"refused {type(e).__name__}"
            print(json.dumps({"reconnect": result}), flush=True)
            break
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\\n"]
'''


def test_an_app_with_egress_is_handed_no_host_socket_it_could_connect_again(
    summon: Summon, tmp_path: Path, peers: tuple[Peer, Peer]
) -> None:
    """RunSpec.takes_host_sockets: an app whose profile allows connect() (egress) gets its
    -p through the forwarder, not the host's listener; a connection it accepted there,
    disconnected and connected again, reached the host's 127.0.0.1 past egress's rules."""
    allowed, other = peers
    folder = tmp_path / "reconnecting"
    folder.mkdir()
    (folder / "app.py").write_text(RECONNECTING.replace("OTHER", str(other.port)))
    (folder / "summon.toml").write_text(
        f'name = "reconnecting"\nentry = "app:app"\nports = [8000]\nseal = "audit"\n'
        f'egress = ["10.0.2.2:{allowed.port}"]\n'
    )
    r = summon("build", str(folder), "-t", "reconnecting:test")
    assert r.returncode == 0, r.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = summon.popen("run", "reconnecting:test", "-p", f"127.0.0.1:{port}:8000")
    lines: queue.Queue[str] = queue.Queue()  # the console, a line at a time (no select on a
    # buffered pipe: lines read ahead into its buffer would wait for more to come)

    def next_line(marker: str) -> str:
        line = ""
        with contextlib.suppress(queue.Empty):
            while marker not in line:
                line = lines.get(timeout=60)
        return line

    try:
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        # Once the app serves: the attack is on a connection it accepted as any other.
        assert "serving the WSGI app" in next_line("serving the WSGI app")
        for _ in range(100):
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                threading.Event().wait(0.1)
        with client:
            client.sendall(b"GET /reconnect HTTP/1.1\r\nHost: x\r\n\r\n")
            # The connection's end or a reset (the app took it over), or its answer.
            with contextlib.suppress(OSError):
                client.recv(100)
        line = next_line('{"reconnect"')
        assert line.startswith("{"), line
        # Inside the instance's namespace 127.0.0.1 is its own loopback: the host's peer is
        # not there. (Usually refused; now and then, after another module's instances, the
        # disconnected socket's connect returns at once and reads nothing: no peer either.)
        result = json.loads(line)["reconnect"]
        assert result in ("refused ConnectionRefusedError", "reached "), result
        assert other.accepted == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
