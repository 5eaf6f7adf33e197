"""The stack against real Linux: ping, UDP and ICMP errors over a TAP and over AF_PACKET.

Each test makes its own network namespace and removes it; every frame stays inside it. The
stack runs in this process on a thread, on a link opened inside the namespace.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from summon.net.ethernet import parse_mac
from summon.net.interface import Interface
from summon.net.ipv4 import format_address, parse_address
from summon.net.links import Link
from summon.net.links.packet import PacketLink
from summon.net.links.tap import TapLink
from summon.net.udp import UdpReceived
from summon.targets.sandbox.netns import NetNamespace, run_inside

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip"),
    pytest.mark.skipif(
        not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun for a TAP device"
    ),
]

KERNEL_IP = "10.231.0.1"
STACK_IP = "10.231.0.2"
STACK_MAC = parse_mac("02:5a:00:00:00:02")
ECHO_PORT = 7


def ip(ns: NetNamespace, *args: str) -> None:
    subprocess.run(["ip", "-n", ns.name, *args], check=True, capture_output=True)


class StackThread:
    """An Interface on a link, driven by a loop on a thread, with a UDP echo on port 7."""

    def __init__(self, link: Link, iface: Interface) -> None:
        self.link = link
        self.iface = iface
        self.echo = iface.udp_bind(ECHO_PORT)
        self.frames_in: list[bytes] = []
        self.frames_out: list[bytes] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="summon-net-test", daemon=True)

    def __enter__(self) -> StackThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                select.select([self.link.fileno()], [], [], 0.02)
                now = time.monotonic()
                for frame in self.link.receive():
                    self.frames_in.append(frame)
                    self.iface.receive_frame(frame, now)
                self.iface.timers(now)
                for event in self.echo.events():
                    if isinstance(event, UdpReceived):
                        self.echo.send_to(event.payload, event.src_ip, event.src_port)
                for frame in self.iface.frames_to_send():
                    self.frames_out.append(frame)
                    self.link.send(frame)
        except BaseException as e:  # reported by __exit__ on the test's thread
            self.error = e


@pytest.fixture
def tap_stack() -> Iterator[tuple[NetNamespace, StackThread]]:
    """A namespace whose tap0 has KERNEL_IP on Linux's side and the stack on the other."""
    with NetNamespace(f"summon-nettest-{os.getpid()}") as ns:
        link = run_inside(ns.path, lambda: TapLink.open("tap0"))
        try:
            ip(ns, "addr", "add", f"{KERNEL_IP}/24", "dev", "tap0")
            ip(ns, "link", "set", "tap0", "up")
            iface = Interface(STACK_MAC, parse_address(STACK_IP), 24)
            with StackThread(link, iface) as stack:
                yield ns, stack
        finally:
            link.close()


def netns_exec(
    ns: NetNamespace, *argv: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_linux_ping_gets_replies_from_the_stack_over_tap(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    if shutil.which("ping") is None:
        pytest.skip("needs ping (Debian iputils-ping)")
    ns, stack = tap_stack
    result = netns_exec(ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_IP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 packets transmitted, 3 received, 0% packet loss" in result.stdout
    counters = stack.iface.counters
    assert counters["icmp__echo_request__reply"] == 3
    assert counters["arp__request__reply"] >= 1  # Linux asked for our MAC first


def test_linux_large_ping_is_reassembled_and_the_reply_fragmented(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    if shutil.which("ping") is None:
        pytest.skip("needs ping (Debian iputils-ping)")
    ns, stack = tap_stack
    # 4000 bytes of ICMP data: three fragments each way on a 1500-byte MTU.
    result = netns_exec(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "4000", STACK_IP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 received" in result.stdout
    counters = stack.iface.counters
    assert counters["ipv4__reassembled__deliver"] == 2
    assert counters["ipv4__fragmented__send"] == 2


def _in_namespace(ns: NetNamespace, func: Callable[[], bytes]) -> bytes:
    return run_inside(ns.path, func)


def test_linux_udp_socket_gets_its_datagram_echoed(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    ns, stack = tap_stack

    def exchange() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"hello, library OS", (STACK_IP, ECHO_PORT))
            data, peer = s.recvfrom(2048)
            assert peer == (STACK_IP, ECHO_PORT)
            return data

    assert _in_namespace(ns, exchange) == b"hello, library OS"
    assert stack.iface.counters["udp__datagram__deliver"] == 1


def test_linux_nc_udp_gets_its_line_echoed(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    if shutil.which("nc") is None:
        pytest.skip("needs nc (Debian netcat-openbsd)")
    ns, _ = tap_stack
    result = subprocess.run(
        ["ip", "netns", "exec", ns.name, "nc", "-u", "-w", "1", STACK_IP, str(ECHO_PORT)],
        input="ping over udp\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "ping over udp\n", result.stderr


def test_linux_udp_to_a_closed_port_is_refused_by_icmp(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    ns, stack = tap_stack

    def refused() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            # A connected UDP socket reports the ICMP port unreachable as ECONNREFUSED.
            s.connect((STACK_IP, 9999))
            s.send(b"anyone?")
            with pytest.raises(ConnectionRefusedError):
                s.recv(100)
            return b"refused"

    assert _in_namespace(ns, refused) == b"refused"
    assert stack.iface.counters["udp__no_socket__icmp_unreachable"] == 1


def test_linux_large_udp_datagram_round_trips_in_fragments(
    tap_stack: tuple[NetNamespace, StackThread],
) -> None:
    ns, stack = tap_stack
    payload = bytes(range(256)) * 40  # 10240 bytes: 7 fragments each way

    def exchange() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(payload, (STACK_IP, ECHO_PORT))
            return s.recv(65535)

    assert _in_namespace(ns, exchange) == payload
    assert stack.iface.counters["ipv4__reassembled__deliver"] == 1
    assert stack.iface.counters["ipv4__fragmented__send"] == 1


def test_linux_ping_over_af_packet_on_a_veth() -> None:
    """The qemu target's path: the stack owns a NIC (one end of a veth) via AF_PACKET."""
    if shutil.which("ping") is None:
        pytest.skip("needs ping (Debian iputils-ping)")
    with NetNamespace(f"summon-nettest-pk-{os.getpid()}") as ns:
        ip(ns, "link", "add", "nic0", "type", "veth", "peer", "name", "peer0")
        ip(ns, "addr", "add", f"{KERNEL_IP}/24", "dev", "peer0")
        ip(ns, "link", "set", "nic0", "up")
        ip(ns, "link", "set", "peer0", "up")
        link = run_inside(ns.path, lambda: PacketLink.open("nic0"))
        try:
            iface = Interface(link.mac, parse_address(STACK_IP), 24)
            with StackThread(link, iface) as stack:
                result = netns_exec(ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_IP)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "3 received" in result.stdout
            assert stack.iface.counters["icmp__echo_request__reply"] == 3
        finally:
            link.close()
    assert format_address(iface.ip) == STACK_IP
