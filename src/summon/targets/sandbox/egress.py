"""Outbound connections for a sandboxed app: a route out of its network namespace through
slirp4netns, and the manifest's allowlist (summon.egress) enforced inside that namespace.

Without egress the namespace holds only lo, and nothing leaves it. With egress:
1. summon resolves the names in the list on the host (their addresses also go into the
   sandbox's /etc/hosts, etc.py, so that the app finds them without DNS);
2. it installs the rules below in the instance's namespace with iptables-restore, before any
   interface but lo exists there: everything leaving through any other interface is refused
   by the chain SUMMON-EGRESS-REFUSED unless it is an answer, goes to an allowed address
   and port, or is a DNS query to slirp4netns's resolver when the list names a host by
   name (a list of addresses and networks resolves nothing); nothing may come in unasked;
3. slirp4netns then gives the namespace tap0 (10.0.2.100/24, gateway 10.0.2.2, resolver
   10.0.2.3) and carries its connections out through the host's sockets.
The app runs with no capabilities (no CAP_NET_ADMIN), so it cannot change the rules or the
routes. The host's loopback is reachable at 10.0.2.2 only when an entry gives an address
there (a network inside slirp4netns's own); otherwise slirp4netns is told to refuse it too
(--disable-host-loopback).

slirp4netns runs with its seccomp filter (--enable-seccomp) but without --enable-sandbox: its
mount-namespace sandbox unmounts the namespace's bind mount under /run/netns on the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from summon.egress import (
    HOST_FROM_SANDBOX,
    HOST_FROM_VM,
    LOOPBACK,
    EgressRule,
    loopback_problem,
    parse_rules,
)
from summon.errors import TargetUnavailable, UserError

TAP_NAME = "tap0"
# slirp4netns's network: the namespace is .100, the gateway .2 (the host's loopback, when
# allowed), its DNS forwarder .3 (the host's resolvers). A VM's namespace uses another
# (qemu/outbound.py): 10.0.2.0/24 is QEMU's own guest network, whose .2 QEMU answers itself.
SANDBOX_CIDR = ipaddress.IPv4Network("10.0.2.0/24")
NAMESERVER = "10.0.2.3"
REFUSED_CHAIN = "SUMMON-EGRESS-REFUSED"
READY_TIMEOUT = 10.0
SLIRP_MISSING = "egress needs slirp4netns: apt-get install slirp4netns"
IPTABLES_MISSING = "egress needs iptables (iptables-restore): apt-get install iptables"

Resolver = Callable[[str], list[str]]


def resolve_ipv4(name: str) -> list[str]:
    """The IPv4 addresses of name, as the host resolves it."""
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def resolve(
    rules: Sequence[EgressRule],
    resolver: Resolver = resolve_ipv4,
    own: Sequence[ipaddress.IPv4Network] = (SANDBOX_CIDR,),
) -> tuple[list[tuple[EgressRule, ipaddress.IPv4Network]], dict[str, list[str]]]:
    """(rule, network) for every destination, names replaced by their addresses; and
    name -> addresses for /etc/hosts. A name that does not resolve is a UserError; so is one
    that resolves into `own`, the instance's own slirp4netns (and QEMU) networks, whose .2 is
    the host's loopback: only an entry that gives such an address opens it, never a name,
    whose answer is whoever controls its DNS's to choose."""
    out: list[tuple[EgressRule, ipaddress.IPv4Network]] = []
    names: dict[str, list[str]] = {}
    for rule in rules:
        network = rule.network
        if network is not None:
            out.append((rule, network))
            continue
        try:
            addresses = resolver(rule.host)
        except (OSError, UnicodeError) as e:
            raise UserError(
                f"egress {str(rule)!r}: {rule.host} does not resolve on this host ({e}); "
                "fix the name or give an address"
            ) from None
        if addresses and all(ipaddress.IPv4Address(a) in LOOPBACK for a in addresses):
            raise UserError(
                f"egress {str(rule)!r}: {rule.host} resolves to {', '.join(addresses)} here: "
                f"{loopback_problem(rule.port, rule.protocol)}"
            )
        inside = [a for a in addresses if any(ipaddress.IPv4Address(a) in n for n in own)]
        if inside:
            raise UserError(
                f"egress {str(rule)!r}: {rule.host} resolves to {', '.join(inside)} here, inside "
                f"the instance's own network ({', '.join(map(str, own))}), where the host's "
                "loopback answers; refused (a host service is reached by an entry that gives "
                f"its address: {HOST_FROM_SANDBOX} from a sandbox, {HOST_FROM_VM} from a VM)"
            )
        names[rule.host] = addresses
        out.extend((rule, ipaddress.IPv4Network(a)) for a in addresses)
    return out, names


def ruleset(
    allowed: Sequence[tuple[EgressRule, ipaddress.IPv4Network]],
    dns: bool,
    nameserver: str = NAMESERVER,
) -> tuple[str, str]:
    """The iptables-restore and ip6tables-restore input for the instance's namespace.

    dns: queries to slirp4netns's resolver are allowed (the list names hosts by name).
    """
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{REFUSED_CHAIN} - [0:0]",
        # Nothing comes in through tap0 but answers: the port forwarder uses lo.
        f"-A INPUT -i {TAP_NAME} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A INPUT -i {TAP_NAME} -j DROP",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    if dns:
        lines += [
            f"-A OUTPUT -d {nameserver}/32 -p udp --dport 53 -j ACCEPT",
            f"-A OUTPUT -d {nameserver}/32 -p tcp --dport 53 -j ACCEPT",
        ]
    for rule, network in allowed:
        comment = f"egress {rule}".replace('"', "")
        lines.append(
            f"-A OUTPUT -d {network} -p {rule.protocol} --dport {rule.port} "
            f'-m comment --comment "{comment}" -j ACCEPT'
        )
    lines += [
        f"-A OUTPUT -j {REFUSED_CHAIN}",
        # A refused TCP connect fails at once (ECONNREFUSED), not after a timeout.
        f"-A {REFUSED_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {REFUSED_CHAIN} -j REJECT --reject-with icmp-admin-prohibited",
        "COMMIT",
        "",
    ]
    v6 = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT DROP [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A OUTPUT -o lo -j ACCEPT",
        "COMMIT",
        "",
    ]
    return "\n".join(lines), "\n".join(v6)


class Egress:
    """The route out of one instance's namespace and its allowlist. start() before the app
    starts, stop() (idempotent) when it is gone."""

    def __init__(
        self,
        netns_path: Path,
        entries: Sequence[str],
        log: Path,
        resolver: Resolver = resolve_ipv4,
        cidr: ipaddress.IPv4Network = SANDBOX_CIDR,
    ) -> None:
        """log: where slirp4netns's own messages go (it writes many; a pipe would fill).
        cidr: slirp4netns's network (its .2 is the host's loopback, .3 its resolver)."""
        self.netns_path = netns_path
        self.log = log
        self.cidr = cidr
        self.host_loopback = cidr.network_address + 2
        self.nameserver = str(cidr.network_address + 3)
        self.rules = parse_rules(list(entries))
        own = tuple(dict.fromkeys((cidr, SANDBOX_CIDR)))  # a VM's, and QEMU's guest network
        self.allowed, self.names = resolve(self.rules, resolver, own=own)
        self._proc: subprocess.Popen[bytes] | None = None
        self._exit_fd = -1

    def opens_host_loopback(self) -> bool:
        """Whether an entry gives an address of the host's loopback here (10.0.2.2): one whose
        network lies inside slirp4netns's own. A wider one that merely holds it (a company's
        10.0.0.0/8:443) means the networks out there, not the host's 127.0.0.1:443."""
        return any(
            self.host_loopback in network and network.subnet_of(self.cidr)
            for _rule, network in self.allowed
        )

    def start(self) -> None:
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            raise TargetUnavailable(SLIRP_MISSING)
        v4, v6 = ruleset(self.allowed, dns=bool(self.names), nameserver=self.nameserver)
        self._restore("iptables-restore", v4)
        self._restore("ip6tables-restore", v6)
        host_loopback = self.opens_host_loopback()
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        argv = [
            slirp, "--configure", "--mtu=65520", "--enable-seccomp",
            f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", "--netns-type=path",
            f"--cidr={self.cidr}",
            *([] if host_loopback else ["--disable-host-loopback"]),
            str(self.netns_path), TAP_NAME,
        ]  # fmt: skip
        try:
            with open(self.log, "wb") as log:
                self._proc = subprocess.Popen(
                    argv, pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True,
                )  # fmt: skip
        finally:
            os.close(ready_w)
            os.close(exit_r)
        self._exit_fd = exit_w  # slirp4netns exits when this closes, also if summon dies
        import select

        ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
        answer = os.read(ready_r, 1) if ready else b""
        os.close(ready_r)
        if answer != b"1":
            err = self._stop_and_read()
            raise UserError(f"slirp4netns did not set up the instance's network: {err}")

    def _restore(self, tool: str, rules: str) -> None:
        binary = shutil.which(tool)
        if binary is None:
            raise TargetUnavailable(IPTABLES_MISSING)
        done = subprocess.run(
            ["nsenter", f"--net={self.netns_path}", binary],
            input=rules, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise UserError(f"cannot install the egress rules ({tool}): {done.stderr.strip()}")

    def _stop_and_read(self) -> str:
        self.stop()
        proc = self._proc
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        status = "it did not start" if proc is None else f"exit status {proc.returncode}"
        return lines[-1] if lines else status

    def stop(self) -> None:
        if self._exit_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._exit_fd)
            self._exit_fd = -1
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
