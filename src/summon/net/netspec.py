"""What the environment tells the direct stack: SUMMON_NET parsed (NetSpec), and the frame
link the target handed over (SUMMON_TAP_FD or SUMMON_NET_IFACE) opened.

Nothing here runs the stack: DirectStack.from_environ (stack.py) calls these and builds the
stack from what they return. See docs/direct.md for the variables.
"""

from __future__ import annotations

import os
from errno import EBADF

from summon.net.ethernet import parse_mac
from summon.net.ipv4 import parse_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from summon.net.links import Link

# A TAP can carry 64 KiB frames: with an MTU this large a TCP segment is ~64 KB, and the
# per-segment cost of Python (parsing, events, a syscall) is paid 44 times less than at 1500.
TAP_MTU = 65000
DEFAULT_MTU = 1500


class NetSpec:
    """The parsed SUMMON_NET: a static address or "dhcp", and the link settings.

        SUMMON_NET = ("dhcp" | ADDRESS/PREFIX) *("," KEY "=" VALUE)
        KEY        = "gateway" | "dns" (may repeat) | "mac" | "mtu"

    e.g. "10.7.0.2/30,gateway=10.7.0.1,dns=10.7.0.1,mtu=65000" or "dhcp,mtu=1500".
    """

    __slots__ = ("dhcp", "gateway", "ip", "mac", "mtu", "nameservers", "prefix_len")

    def __init__(
        self,
        ip: bytes | None = None,
        prefix_len: int = 24,
        gateway: bytes | None = None,
        nameservers: tuple[bytes, ...] = (),
        mac: bytes | None = None,
        mtu: int | None = None,
    ) -> None:
        self.dhcp = ip is None
        self.ip = ip
        self.prefix_len = prefix_len
        self.gateway = gateway
        self.nameservers = nameservers
        self.mac = mac
        self.mtu = mtu

    @classmethod
    def parse(cls, text: str) -> NetSpec:
        """The spec `text` describes; ValueError naming the bad item otherwise."""
        items = [item.strip() for item in text.split(",")]
        first, rest = items[0], items[1:]
        spec = cls()
        if first != "dhcp":
            address, slash, prefix = first.partition("/")
            try:
                spec.ip = parse_address(address)
            except ValueError:
                raise ValueError(_bad_net(first, "ADDRESS/PREFIX such as 10.7.0.2/30")) from None
            if not slash or not prefix.isdigit() or not 1 <= int(prefix) <= 32:
                raise ValueError(_bad_net(first, "ADDRESS/PREFIX with a prefix of 1..32"))
            spec.prefix_len = int(prefix)
            spec.dhcp = False
        nameservers = []
        for item in rest:
            key, eq, value = item.partition("=")
            try:
                if not eq:
                    raise ValueError
                if key == "gateway":
                    spec.gateway = parse_address(value)
                elif key == "dns":
                    nameservers.append(parse_address(value))
                elif key == "mac":
                    spec.mac = parse_mac(value)
                elif key == "mtu":
                    spec.mtu = int(value)
                    if not 576 <= spec.mtu <= 65535:
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    _bad_net(item, "gateway=IP, dns=IP, mac=MAC or mtu=576..65535")
                ) from None
        spec.nameservers = tuple(nameservers)
        return spec


def _bad_net(item: str, want: str) -> str:
    return f"SUMMON_NET: {item!r} is not {want}"


def open_link(environ: Mapping[str, str]) -> tuple[Link, bytes | None, int]:
    """(link, its MAC if it has one, its default MTU) from SUMMON_TAP_FD or SUMMON_NET_IFACE."""
    fd = environ.get("SUMMON_TAP_FD", "")
    iface = environ.get("SUMMON_NET_IFACE", "")
    if fd:
        if not fd.isdigit():
            raise ValueError(f"SUMMON_TAP_FD: {fd!r} is not a file descriptor number")
        from summon.net.links.tap import TapLink

        try:
            link = TapLink(int(fd))
        except OSError as e:
            why = "is not open" if e.errno == EBADF else "is not a TAP device"
            raise ValueError(
                f"SUMMON_TAP_FD: fd {fd} {why}; the target must pass the TAP device"
            ) from None
        return link, None, TAP_MTU
    if iface:
        from summon.net.links.packet import PacketLink

        try:
            nic = PacketLink.open(iface)
        except OSError as e:
            raise ValueError(f"SUMMON_NET_IFACE: cannot open {iface!r}: {e.strerror}") from None
        return nic, nic.mac, DEFAULT_MTU
    raise ValueError(
        'network = "direct" needs a network device from the target (SUMMON_TAP_FD or '
        "SUMMON_NET_IFACE); run it with --target sandbox"
    )


def random_mac() -> bytes:
    """A MAC for a link that has none: locally administered (bit 1), unicast (bit 0 clear), as
    Linux picks for a TAP."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)
