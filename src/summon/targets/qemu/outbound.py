"""Outbound connections for a VM: QEMU runs in a network namespace of its own, which has the
sandbox's route out and allowlist (targets/sandbox/egress.py), so the manifest's egress
holds for a VM where neither the guest nor its app can change it.

Without egress QEMU's user network runs with restrict=on and nothing leaves the VM. With
egress, QEMU (restrict=off) makes the guest's connections as ordinary sockets, inside that
namespace: they leave through slirp4netns only where the rules allow. The namespace's
slirp4netns network is 10.0.3.0/24, so from the guest the host's loopback is 10.0.3.2 (QEMU
answers 10.0.2.2, its own guest network's gateway, itself). QEMU's host forwards then listen
in the namespace, and the sandbox's port forwarder carries -p ports from the host's
loopback to them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from collections.abc import Sequence

from summon.targets.base import RunSpec
from summon.targets.sandbox.config import container_id
from summon.targets.sandbox.egress import Egress
from summon.targets.sandbox.netns import NetNamespace
from summon.targets.sandbox.portfwd import PortForwarder

VM_CIDR = ipaddress.IPv4Network("10.0.3.0/24")


class Outbound:
    """A VM's namespace, egress route and port forwarder. start() before QEMU, stop()
    (idempotent) after it."""

    def __init__(self, spec: RunSpec, entries: Sequence[str]) -> None:
        self.spec = spec
        self.netns = NetNamespace(container_id(spec.name))
        self.egress = Egress(self.netns.path, entries, spec.state_dir / "slirp4netns.log",
                             cidr=VM_CIDR)  # fmt: skip
        self.forwarder: PortForwarder | None = None

    def start(self) -> None:
        try:
            self.netns.create()
            self.egress.start()
            if self.spec.ports:
                # QEMU's host forwards listen on the guest's port numbers in the namespace.
                self.forwarder = PortForwarder(self.netns.path, self.spec.ports)
                self.forwarder.start()
        except BaseException:
            self.stop()
            raise

    def vm_spec(self) -> RunSpec:
        """The spec QEMU's command line is made from: forwards inside the namespace."""
        inside = tuple(
            dataclasses.replace(p, host_addr="127.0.0.1", host_port=p.guest_port)
            for p in self.spec.ports
        )
        return dataclasses.replace(self.spec, ports=inside)

    def wrap(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace (nsenter execs it: the same process)."""
        return ["nsenter", f"--net={self.netns.path}", "--", *argv]

    def stop(self) -> None:
        for step in (self._stop_forwarder, self.egress.stop, self.netns.remove):
            with contextlib.suppress(Exception):
                step()

    def _stop_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
