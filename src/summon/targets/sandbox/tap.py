"""The TAP device of a direct-mode sandbox: made in the instance's netns, its fd given to the app.

Inside the instance's network namespace summon creates tap0 and keeps the kernel's side of it:
HOST_ADDRESS/30, a large MTU, and a permanent neighbour entry for the app's address (so the
kernel never waits on ARP for an app that is still starting: its frames queue in the TAP).
The app's side is the TAP's file descriptor: runc passes it in as fd 3 (`--preserve-fds 1`),
and the runtime drives it with summon.net (SUMMON_TAP_FD=3, SUMMON_NET=STACK_ADDRESS/30,...).
The app has no other network: its seccomp filter denies socket().

Port forwards connect from inside the namespace to STACK_ADDRESS: the kernel's TCP there
talks to summon.net over the TAP. The runtime writes its counters to STATS_PATH inside the
container; `counters(pid)` reads them through /proc/PID/root.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from summon.net.ethernet import format_mac
from summon.net.links.tap import TapLink
from summon.targets.sandbox.netns import run_inside
from summon.targets.sandbox.procroot import read_file
from summon.targets.sandbox.spawn import FIRST_FD

TAP_NAME = "tap0"
HOST_ADDRESS = "10.7.0.1"  # the kernel's side, where forwarded connections come from
STACK_ADDRESS = "10.7.0.2"  # the app's summon.net
PREFIX_LEN = 30
# A TAP carries frames up to 64 KiB: large TCP segments cut Python's per-segment costs.
MTU = 65000
APP_FD = FIRST_FD  # where the TAP fd lands in the container
STATS_PATH = "/tmp/summon-net.json"
MAX_COUNTERS = 65536  # a JSON object of a few dozen counters
NUD_PERMANENT = 0x80  # <linux/neighbour.h>


class DirectNetwork:
    """tap0 in the namespace at netns_path; `fd` is the app's end. Call close() when done."""

    def __init__(self, netns_path: Path) -> None:
        self.netns_path = netns_path
        self.fd = -1
        # Chosen here so the kernel's neighbour entry can be made before the app runs.
        raw = bytearray(os.urandom(6))
        raw[0] = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
        self.mac = bytes(raw)

    def create(self) -> None:
        """Make tap0 and configure the kernel's side; OSError if the host cannot."""
        # With virtio-net headers: TCP checksums on the way out are the kernel's to finish.
        link = run_inside(self.netns_path, lambda: TapLink.open(TAP_NAME, vnet_hdr=True))
        self.fd = link.fd
        try:
            run_inside(self.netns_path, self._configure)
        except BaseException:
            self.close()
            raise

    def _configure(self) -> None:
        # On a thread inside the namespace: an IPRoute made here talks to it.
        from pyroute2 import IPRoute

        # IPv6 would only add router solicitations and MLD reports the stack drops.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{TAP_NAME}/disable_ipv6").write_text("1")
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname=TAP_NAME)
            ipr.link("set", index=index, mtu=MTU)
            ipr.addr("add", index=index, address=HOST_ADDRESS, prefixlen=PREFIX_LEN)
            ipr.neigh(
                "add",
                dst=STACK_ADDRESS,
                lladdr=format_mac(self.mac),
                ifindex=index,
                state=NUD_PERMANENT,
            )
            ipr.link("set", index=index, state="up")

    def app_environment(self) -> dict[str, str]:
        """What the runtime reads to drive the TAP (docs/direct.md)."""
        return {
            "SUMMON_TAP_FD": str(APP_FD),
            "SUMMON_NET": f"{STACK_ADDRESS}/{PREFIX_LEN},mac={format_mac(self.mac)},mtu={MTU}",
            "SUMMON_NET_STATS": STATS_PATH,
        }

    def close(self) -> None:
        """Close summon's copy of the fd (the device goes when the app's closes too)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def counters(pid: int) -> dict[str, int]:
    """The direct stack's counters as the app's runtime last wrote them; {} if none yet."""
    raw = read_file(pid, STATS_PATH, MAX_COUNTERS)  # the app may put a link there: procroot.py
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int)}
