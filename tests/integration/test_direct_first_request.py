"""A direct-mode instance answers its very first request without a retransmission wait.

The direct stack (summon.net) must be up with the instance, its link, address and ARP
announced before the app's first listen returns (runtime/init.py awaits DirectStack.start
before the entry runs): else the first SYN reaches nobody and its sender waits out a
retransmission timer (1 s for the kernel, seconds for QEMU's slirp) before trying again.
Checked on the wire, not by timing the client:
- sandbox: the kernel's own SYN retransmission counters in the instance's namespace, where
  the port forwarder's connections to the stack start;
- qemu: every frame on the VM's NIC, dumped by QEMU itself (filter-dump). QEMU's user
  network (slirp) holds a frame for the guest while it asks the guest's address by ARP,
  and drops it if no answer (an ARP reply, or the guest's own announcement) comes within
  one second; its TCP then resends that SYN seconds later. So every ARP request slirp makes
  for the guest must be answered within that second, and no SYN sent twice.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from summon_cli import EXAMPLES, Summon, free_port, needs_sandbox
from test_direct_sandbox import direct_copy
from test_native_paths import get_page_retrying
from test_qemu import Output, env, http_direct, make_spec, store  # noqa: F401  (fixtures)

from summon.store.image import Image
from summon.targets.base import PortForward

PAGE = (EXAMPLES / "http" / "static" / "index.html").read_bytes()


def netstat(pid: int) -> dict[str, int]:
    """The TCP counters of pid's network namespace (/proc/net/netstat and snmp, merged)."""
    found: dict[str, int] = {}
    for table in ("netstat", "snmp"):
        text = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "cat", f"/proc/net/{table}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        lines = text.splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=True):
            prefix = names.split(":")[0]
            for name, value in zip(names.split()[1:], values.split()[1:], strict=True):
                found[f"{prefix}.{name}"] = int(value)
    return found


@pytest.mark.sandbox
@needs_sandbox
@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
def test_sandbox_first_request_needs_no_syn_retransmission(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    summon = Summon(tmp_path_factory.mktemp("directfirst"))
    app = direct_copy("http", tmp_path_factory.mktemp("apps"))
    summon.ok("build", str(app), "-t", "http-direct:first")
    port = free_port()
    # The request goes out as soon as the forwarder listens: it beats the app's start.
    proc = summon.popen("run", "--name", "first", "http-direct:first", "-p", f"{port}:80")
    try:
        assert get_page_retrying(port, deadline=60) == PAGE
        pid = summon.ps()["first"]["pid"]
        counters = netstat(pid)
        assert counters["TcpExt.TCPSynRetrans"] == 0, counters
        assert counters["Tcp.RetransSegs"] == 0, counters
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


SLIRP_ARP_HOLD = 1.0  # seconds slirp holds a frame while it resolves the guest's address
GUEST = bytes([10, 0, 2, 15])  # QEMU's user network: the guest, and slirp itself
SLIRP = bytes([10, 0, 2, 2])


def frames(pcap: Path) -> list[tuple[float, bytes]]:
    """(seconds, Ethernet frame) of each packet in a pcap file."""
    data = pcap.read_bytes()
    found = []
    offset = 24  # the global header
    while offset + 16 <= len(data):
        sec, usec, length, _orig = struct.unpack_from("<IIII", data, offset)
        found.append((sec + usec / 1e6, data[offset + 16 : offset + 16 + length]))
        offset += 16 + length
    return found


def syn_counts(dump: list[tuple[float, bytes]], port: int) -> Counter[int]:
    """SYNs (without ACK) to TCP port, by source port."""
    counts: Counter[int] = Counter()
    for _at, frame in dump:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        tcp = frame[14 + (frame[14] & 0x0F) * 4 :]
        if len(tcp) < 14:
            continue
        src, dst = struct.unpack_from("!HH", tcp)
        if dst == port and tcp[13] & 0x02 and not tcp[13] & 0x10:
            counts[src] += 1
    return counts


def unanswered_arp(dump: list[tuple[float, bytes]]) -> list[float]:
    """When slirp asked for the guest's address and no answer came within its hold."""
    asked: list[float] = []
    told: list[float] = []
    for at, frame in dump:
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            continue
        op, sender, target = frame[21], frame[28:32], frame[38:42]
        if op == 1 and sender == SLIRP and target == GUEST:
            asked.append(at)
        elif sender == GUEST:  # a reply, or the guest's announcement of itself
            told.append(at)
    return [a for a in asked if not any(a <= t < a + SLIRP_ARP_HOLD for t in told)]


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU")
def test_qemu_first_request_needs_no_syn_retransmission(
    http_direct: Image,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from summon.targets.qemu import target as qemu_target
    from summon.targets.qemu.target import QemuTarget

    pcap = tmp_path / "nic.pcap"
    argv_of = qemu_target.qemu_argv

    def dumping(*args: object, **kw: object) -> list[str]:
        argv = argv_of(*args, **kw)  # type: ignore[arg-type]
        return [*argv, "-object", f"filter-dump,id=dump0,netdev=net0,file={pcap}"]

    monkeypatch.setattr(qemu_target, "qemu_argv", dumping)
    port = free_port()
    out = Output()
    spec = make_spec(http_direct, tmp_path, ports=(PortForward(port, 80),))
    instance = QemuTarget(output=out).start(spec)
    try:
        # From the moment the guest says it is up: every connection is a fresh slirp
        # connection to the guest's port 80, refused (RST) until the app listens.
        served = b""
        deadline = time.monotonic() + 90
        while not served and time.monotonic() < deadline:
            curl = subprocess.run(
                ["curl", "-sf", "-m", "20", f"http://127.0.0.1:{port}/"],
                capture_output=True,
                check=False,
            )
            served = curl.stdout if curl.returncode == 0 else b""
            if not served:
                time.sleep(0.05)
        assert served == PAGE, out.text()
    finally:
        instance.stop(grace=10)
    dump = frames(pcap)
    start = dump[0][0] if dump else 0.0
    late = [round(at - start, 3) for at in unanswered_arp(dump)]
    assert not late, f"slirp asked for the guest's address at {late} s and heard nothing in time"
    counts = syn_counts(dump, 80)
    assert counts, "no SYN to port 80 in the dump"
    retried = {src: n for src, n in counts.items() if n > 1}
    assert not retried, f"SYNs sent more than once (a retransmission wait): {retried}"
