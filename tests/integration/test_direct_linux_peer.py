"""DirectStack against real Linux over a TAP: ping, curl, nc, a bulk sender, dnsmasq (DHCP, DNS).

Each test makes its own network namespace holding a TAP device and removes it after; every
frame stays inside. The stack runs in this process, on an asyncio loop of its own thread,
on the TAP's fd opened inside the namespace; Linux's tools run in the namespace
(`ip netns exec`) and reach it at STACK_IP.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from summon.net.ethernet import parse_mac
from summon.net.ipv4 import parse_address
from summon.net.links.tap import TapLink
from summon.net.stack import DirectStack
from summon.runtime.posix_devices import FolderKV, StdoutConsole
from summon.targets.sandbox.netns import NetNamespace, run_inside

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun"),
]

KERNEL_IP = "10.231.1.1"
STACK_IP = "10.231.1.2"
STACK_MAC = parse_mac("02:5a:00:00:01:02")
MTU = 65000  # what the sandbox gives its TAP
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = TypeVar("T")


def ip(ns: NetNamespace, *args: str) -> None:
    subprocess.run(["ip", "-n", ns.name, *args], check=True, capture_output=True)


def netns_run(
    ns: NetNamespace, *argv: str, timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, *argv], capture_output=True, timeout=timeout, **kw
    )


class LoopThread:
    """An asyncio loop on a thread of its own, for a stack the test's thread talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Setup:
    def __init__(self, ns: NetNamespace, stack: DirectStack, loop: LoopThread) -> None:
        self.ns, self.stack, self.loop = ns, stack, loop


@pytest.fixture(params=[False, True], ids=["plain", "vnet_hdr"])
def tap_stack(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """A namespace whose tap0 has KERNEL_IP on Linux's side and a DirectStack on the other:
    on a plain TAP, and on one with virtio-net headers (TCP checksums offloaded on send)."""
    vnet_hdr: bool = request.param
    with NetNamespace(f"summon-direct-{os.getpid()}") as ns:
        link = run_inside(ns.path, lambda: TapLink.open("tap0", vnet_hdr=vnet_hdr))
        assert link.checksum_offload == vnet_hdr
        ip(ns, "addr", "add", f"{KERNEL_IP}/24", "dev", "tap0")
        ip(ns, "link", "set", "tap0", "mtu", str(MTU), "up")
        stack = DirectStack(link, STACK_MAC, ip=parse_address(STACK_IP), prefix_len=24, mtu=MTU)
        loop = LoopThread()
        try:
            loop.run(stack.start())
            yield Setup(ns, stack, loop)
        finally:
            loop.loop.call_soon_threadsafe(stack.close)
            loop.close()


def load_http_app() -> Any:
    spec = importlib.util.spec_from_file_location("direct_peer_http", EXAMPLES / "http" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_linux_ping_is_answered(tap_stack: Setup) -> None:
    if shutil.which("ping") is None:
        pytest.skip("needs ping (iputils-ping)")
    result = netns_run(tap_stack.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_IP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"3 received" in result.stdout
    assert tap_stack.stack.counters["icmp__echo_request__reply"] == 3


def test_curl_gets_the_http_example_served_by_the_direct_stack(tap_stack: Setup) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    http = load_http_app()
    static = EXAMPLES / "http" / "static"
    app = tap_stack.loop.submit(
        http.main(tap_stack.stack, FolderKV(str(static)), StdoutConsole("error"))
    )
    tcp = tap_stack.stack.tcp
    assert tcp is not None
    deadline = time.monotonic() + 20
    while 80 not in tcp._listeners:  # the app listens when it is ready, not before
        assert not app.done() and time.monotonic() < deadline
        time.sleep(0.01)
    url = f"http://{STACK_IP}/"
    # Three requests on one kept-alive connection, then a HEAD.
    result = netns_run(
        tap_stack.ns, "curl", "-sS", "-m", "20", url, url + "style.css", url + "missing"
    )
    assert result.returncode == 0, result.stderr
    index = (static / "index.html").read_bytes()
    css = (static / "style.css").read_bytes()
    assert result.stdout == index + css + b"404 Not Found\n"
    head = netns_run(tap_stack.ns, "curl", "-sSI", "-m", "20", url + "style.css")
    assert head.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 105\r\n" in head.stdout.lower()
    counters = tap_stack.stack.counters
    assert counters["stack__tcp__accept"] >= 2
    assert counters["tcp__bad_checksum__drop"] == 0  # Linux's checksums verify


def test_nc_round_trips_a_megabyte_through_a_tcp_echo(tap_stack: Setup) -> None:
    if shutil.which("nc") is None:
        pytest.skip("needs nc (netcat-openbsd)")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()  # after the client's EOF, as nc -N expects

    tap_stack.loop.run(tap_stack.stack.start_server(echo, 7))
    data = os.urandom(1 << 20)
    result = netns_run(tap_stack.ns, "nc", "-N", "-w", "10", STACK_IP, "7", input=data)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_stack_connects_out_to_a_linux_nc_listener(tap_stack: Setup) -> None:
    if shutil.which("nc") is None:
        pytest.skip("needs nc (netcat-openbsd)")
    listener = subprocess.Popen(
        ["ip", "netns", "exec", tap_stack.ns.name, "nc", "-l", "-N", KERNEL_IP, "9000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    payload = b"from summon.net to Linux\n" * 4000

    async def send() -> bytes:
        for _ in range(200):  # until nc listens
            try:
                reader, writer = await tap_stack.stack.open_connection(KERNEL_IP, 9000)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.02)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        await writer.wait_closed()
        return echoed

    try:
        assert tap_stack.loop.run(send()) == b""
        out, err = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert out == payload, err


def test_bulk_20_megabytes_from_linux_arrive_byte_exact(tap_stack: Setup) -> None:
    size = 20 << 20
    done: Future[tuple[str, float]] = Future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        start = time.perf_counter()
        while data := await reader.read(1 << 20):
            digest.update(data)
        done.set_result((digest.hexdigest(), time.perf_counter() - start))
        writer.close()

    tap_stack.loop.run(tap_stack.stack.start_server(sink, 5001))
    sender = (
        "import hashlib, os, socket, sys\n"
        f"data = os.urandom({size})\n"
        f"s = socket.create_connection(('{STACK_IP}', 5001))\n"
        "s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1)\n"
        "print(hashlib.sha256(data).hexdigest())\n"
    )
    result = netns_run(tap_stack.ns, sys.executable, "-c", sender, timeout=120)
    assert result.returncode == 0, result.stderr
    digest, seconds = done.result(60)
    assert digest == result.stdout.decode().strip()
    print(f"20 MB from Linux over the TAP: {size / seconds / 1e6:.0f} MB/s")


def test_bulk_20_megabytes_to_linux_arrive_byte_exact(tap_stack: Setup) -> None:
    data = os.urandom(20 << 20)

    async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for start in range(0, len(data), 1 << 20):
            writer.write(data[start : start + (1 << 20)])
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    tap_stack.loop.run(tap_stack.stack.start_server(source, 5002))
    receiver = (
        "import hashlib, socket\n"
        f"s = socket.create_connection(('{STACK_IP}', 5002))\n"
        "digest = hashlib.sha256()\n"
        "while data := s.recv(1 << 20):\n"
        "    digest.update(data)\n"
        "print(digest.hexdigest())\n"
    )
    result = netns_run(tap_stack.ns, sys.executable, "-c", receiver, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == hashlib.sha256(data).hexdigest()
    assert tap_stack.stack.counters["tcp__retransmit"] == 0


def test_linux_senders_to_an_app_that_does_not_read_wait_on_the_receive_budget(
    tap_stack: Setup,
) -> None:
    """Sixteen Linux connections send 1 MiB each to an app that reads nothing for a while:
    TCP holds its (here 1 MiB) budget and no more, Linux waits on the shrunk windows, and
    once the app reads, every byte arrives (the windows reopen as its reads free the budget)."""
    senders, each = 16, 1 << 20
    budget = tap_stack.stack.tcp.receive_budget  # type: ignore[union-attr]
    budget.limit = 1 << 20
    gate = asyncio.Event()
    digests: dict[int, str] = {}
    accepted: list[int] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await gate.wait()
        digest = hashlib.sha256()
        while data := await reader.read(1 << 20):
            digest.update(data)
        digests[writer.get_extra_info("peername")[1]] = digest.hexdigest()
        writer.close()

    tap_stack.loop.run(tap_stack.stack.start_server(slow, 5003))
    sender = (
        "import hashlib, json, os, socket, threading\n"
        "out = {}\n"
        "def send():\n"
        f"    data = os.urandom({each})\n"
        f"    s = socket.create_connection(('{STACK_IP}', 5003))\n"
        "    s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1)\n"
        "    out[s.getsockname()[1]] = hashlib.sha256(data).hexdigest()\n"
        f"threads = [threading.Thread(target=send) for _ in range({senders})]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(json.dumps(out))\n"
    )
    process = subprocess.Popen(
        ["ip", "netns", "exec", tap_stack.ns.name, sys.executable, "-c", sender],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        mss = MTU - 40
        for _ in range(3000):  # until the budget is spent (windows under an MSS close)
            if len(accepted) == senders and budget.used >= budget.limit - 2 * mss:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"budget never spent: {budget.used} of {budget.limit}")
        time.sleep(0.5)  # Linux has had its chance to push more: it must not have
        assert budget.used <= budget.limit + 256 * 1024
        assert process.poll() is None  # the senders wait
        tap_stack.loop.loop.call_soon_threadsafe(gate.set)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert {int(port): d for port, d in json.loads(out).items()} == digests
    assert budget.used == 0


# --- DHCP and DNS from dnsmasq ---------------------------------------------------------------


def test_dhcp_lease_and_names_from_dnsmasq() -> None:
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None:
        pytest.skip("needs dnsmasq (dnsmasq-base)")
    server_ip, name = "10.231.2.1", "box.summon.test"
    with NetNamespace(f"summon-dhcp-{os.getpid()}") as ns:
        link = run_inside(ns.path, lambda: TapLink.open("tap0"))
        ip(ns, "addr", "add", f"{server_ip}/24", "dev", "tap0")
        ip(ns, "link", "set", "tap0", "up")
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, dnsmasq, "--keep-in-foreground",
             "--conf-file=/dev/null", "--interface=tap0", "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--leasefile-ro", "--user=root", "--pid-file",
             "--dhcp-range=10.231.2.50,10.231.2.60,255.255.255.0,2m",
             f"--address=/{name}/{server_ip}", "--log-dhcp", "--log-facility=-", "--no-ping"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

        def serve_once() -> socket.socket:
            sock = socket.create_server((server_ip, 8080))
            return sock

        listener = run_inside(ns.path, serve_once)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"found by name")

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        loop = LoopThread()
        stack = DirectStack(link, parse_mac("02:5a:00:00:02:02"), mtu=1500)
        try:

            async def lease_and_fetch() -> tuple[str | None, bytes]:
                await asyncio.wait_for(stack.start(), 30)
                reader, writer = await stack.open_connection(name, 8080)
                data = await reader.read()
                writer.close()
                return stack.address, data

            address, data = loop.run(lease_and_fetch(), timeout=60)
        finally:
            loop.loop.call_soon_threadsafe(stack.close)
            loop.close()
            daemon.terminate()
            _, log = daemon.communicate(timeout=10)
            listener.close()
        assert address is not None and address.startswith("10.231.2.")
        assert 50 <= int(address.rsplit(".", 1)[1]) <= 60
        assert data == b"found by name"
        counters = stack.counters
        assert counters["dhcp__ack__bind"] == 1, log.decode(errors="replace")
        assert counters["dns__query__resolved"] == 1
        assert b"DHCPACK" in log


# --- iperf3 ---------------------------------------------------------------------------------

# iperf3's control protocol (esnet/iperf, src/iperf_api.h): one signed byte per state on the
# control connection, JSON as a 4-byte big-endian length and the text, a 37-byte cookie
# (36 characters and a NUL) first on every connection of a test.
IPERF_COOKIE_SIZE = 37
TEST_START, TEST_RUNNING, TEST_END = 1, 2, 4
PARAM_EXCHANGE, CREATE_STREAMS, EXCHANGE_RESULTS, DISPLAY_RESULTS, IPERF_DONE = 9, 10, 13, 14, 16
ACCESS_DENIED = -1


class Iperf3Server:
    """The server side of iperf3 on a DirectStack: one TCP test, one stream, client sending.

    The first connection is the control one; a later one with the same cookie is the data
    stream, whose bytes are counted until the client's TEST_END. `done` gets (the client's
    parameters, the client's results, bytes received, seconds).
    """

    def __init__(self) -> None:
        self.cookie: bytes | None = None
        self.received = 0
        self.streaming = asyncio.Event()
        self.done: Future[tuple[dict[str, Any], dict[str, Any], int, float]] = Future()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            cookie = await reader.readexactly(IPERF_COOKIE_SIZE)
            if self.cookie is None:
                self.cookie = cookie
                await self.control(reader, writer)
            elif cookie == self.cookie and not self.streaming.is_set():
                self.streaming.set()
                while data := await reader.read(1 << 20):  # after TEST_END: drained, not counted
                    if not self.done.done():
                        self.received += len(data)
            else:
                writer.write(ACCESS_DENIED.to_bytes(1, "big", signed=True))
        except Exception as e:  # the test's thread waits on `done`: hand it the failure
            if not self.done.done():
                self.done.set_exception(e)
        finally:
            writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def state(expected: int) -> None:
            got = int.from_bytes(await reader.readexactly(1), "big", signed=True)
            assert got == expected, f"iperf3 client sent state {got}, expected {expected}"

        async def read_json() -> dict[str, Any]:
            size = int.from_bytes(await reader.readexactly(4), "big")
            assert size < 1 << 20
            doc = json.loads(await reader.readexactly(size))
            assert isinstance(doc, dict)
            return doc

        def send(*states: int, doc: dict[str, Any] | None = None) -> None:
            if doc is not None:
                text = json.dumps(doc).encode()
                writer.write(len(text).to_bytes(4, "big") + text)
            writer.write(bytes(states))

        send(PARAM_EXCHANGE)
        params = await read_json()
        assert params.get("tcp") and params.get("parallel", 1) == 1, params
        assert not params.get("reverse") and not params.get("bidirectional"), params
        send(CREATE_STREAMS)
        await asyncio.wait_for(self.streaming.wait(), 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        send(TEST_START, TEST_RUNNING)
        await state(TEST_END)
        seconds, received = loop.time() - start, self.received
        send(EXCHANGE_RESULTS)
        client = await read_json()  # the client's results come first, then ours
        stream = {"id": 1, "bytes": received, "retransmits": -1, "jitter": 0, "errors": 0,
                  "packets": 0, "start_time": 0, "end_time": seconds}  # fmt: skip
        ours = {"cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0,
                "sender_has_retransmits": -1, "streams": [stream]}  # fmt: skip
        send(doc=ours)
        send(DISPLAY_RESULTS)
        await writer.drain()
        await state(IPERF_DONE)
        self.done.set_result((params, client, received, seconds))


def test_linux_iperf3_measures_tcp_throughput_to_the_stack(tap_stack: Setup) -> None:
    iperf3 = shutil.which("iperf3")
    if iperf3 is None:
        pytest.skip("needs iperf3")
    server = Iperf3Server()
    tap_stack.loop.run(tap_stack.stack.start_server(server.handle, 5201))
    result = netns_run(tap_stack.ns, iperf3, "-c", STACK_IP, "-t", "2", "-J", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    params, client, received, seconds = server.done.result(10)
    assert params["time"] == 2
    report = json.loads(result.stdout)["end"]
    sent = report["sum_sent"]["bytes"]
    # The client's own results agree with what it reports; ours are what it shows as received.
    assert client["streams"][0]["bytes"] == sent > 0
    assert report["sum_received"]["bytes"] == received
    assert 0.9 * sent <= received <= sent  # all but what was in flight at TEST_END
    assert 1.5 < seconds < 10
    counters = tap_stack.stack.counters
    assert counters["tcp__bad_checksum__drop"] == 0
    rate = report["sum_received"]["bits_per_second"] / 8e6
    print(f"iperf3 -c {STACK_IP} -t 2: {rate:.0f} MB/s received by summon.net")
