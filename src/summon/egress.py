"""The egress allowlist: what an app may connect to outside its instance, as the manifest's
`egress = ["HOST:PORT", "CIDR:PORT", ...]` says. None by default.

Each entry is a destination and one port: `db.example:5432` (a name, resolved when the
instance starts), `10.1.2.3:6379` (an address), `10.0.0.0/8:443` (a network), with
`/udp` after the port for UDP (`10.0.0.53:53/udp`). The targets enforce it where the app
cannot change it (docs/sandbox.md).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# A DNS name: labels of letters, digits and hyphens (RFC 1123), dot-separated.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
FORMAT = '"HOST:PORT", "ADDRESS:PORT" or "CIDR:PORT" (add /udp after the port for UDP)'


# Where an instance reaches its host's own loopback services (slirp4netns's gateway for a
# sandboxed one, QEMU's user network's for a VM): 127.0.0.1 inside is the instance's own.
HOST_FROM_SANDBOX, HOST_FROM_VM = "10.0.2.2", "10.0.3.2"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class EgressError(ValueError):
    """An allowlist entry that does not parse; the message names the entry and the reason."""


def loopback_problem(port: int, protocol: str = "tcp") -> str:
    """Why an entry naming loopback can never connect, and what to write instead."""
    suffix = "/udp" if protocol == "udp" else ""
    return (
        "loopback inside an instance is the instance's own, so this entry can never reach "
        f"the host; a service on the host's 127.0.0.1 is {HOST_FROM_SANDBOX} from a sandbox "
        f'({HOST_FROM_VM} from a VM): allow "{HOST_FROM_SANDBOX}:{port}{suffix}" and have the '
        f"app connect to {HOST_FROM_SANDBOX}"
    )


@dataclass(frozen=True)
class EgressRule:
    """One allowed destination: a name or an IPv4 network, one port, one protocol."""

    host: str  # as written: a DNS name, an address or a network in CIDR form
    port: int
    protocol: str = "tcp"  # "tcp" | "udp"

    @property
    def network(self) -> ipaddress.IPv4Network | None:
        """The IPv4 network the entry names, or None for a DNS name."""
        try:
            return ipaddress.IPv4Network(self.host, strict=False)
        except ValueError:
            return None

    def __str__(self) -> str:
        suffix = "/udp" if self.protocol == "udp" else ""
        return f"{self.host}:{self.port}{suffix}"


def parse_rule(entry: str) -> EgressRule:
    """One allowlist entry; EgressError says what is wrong with it."""
    if not isinstance(entry, str) or ":" not in entry:
        raise EgressError(f"{entry!r} is not {FORMAT}")
    host, _, port_text = entry.rpartition(":")
    number, _, protocol = port_text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise EgressError(f"{entry!r}: the protocol after the port is tcp or udp, not {protocol!r}")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise EgressError(f"{entry!r}: {number!r} is not a port number (1-65535)")
    if host.startswith("[") or ":" in host:
        raise EgressError(f"{entry!r}: IPv6 destinations are not supported; give an IPv4 one")
    if any(c.isdigit() or c in "./" for c in host) and (
        host.replace(".", "").replace("/", "").isdigit()
    ):
        try:
            network = ipaddress.IPv4Network(host, strict=True)
        except ValueError as e:
            raise EgressError(
                f"{entry!r}: {host!r} is not an IPv4 address or network ({e})"
            ) from None
        if network.prefixlen == 0:
            raise EgressError(
                f"{entry!r}: 0.0.0.0/0 allows everywhere; name the networks the app needs"
            )
        if network.subnet_of(LOOPBACK):
            raise EgressError(f"{entry!r}: {loopback_problem(int(number), protocol)}")
    elif not _NAME.fullmatch(host):
        raise EgressError(f"{entry!r}: {host!r} is not a host name, address or network")
    elif host.rstrip(".").lower() in ("localhost", "ip6-localhost", "ip6-loopback") or (
        host.rstrip(".").lower().endswith(".localhost")
    ):
        raise EgressError(f"{entry!r}: {loopback_problem(int(number), protocol)}")
    return EgressRule(host.rstrip(".").lower(), int(number), protocol)


def parse_rules(entries: list[str] | tuple[str, ...]) -> tuple[EgressRule, ...]:
    """Every entry parsed, in order, duplicates dropped."""
    return tuple(dict.fromkeys(parse_rule(e) for e in entries))
