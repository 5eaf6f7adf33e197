"""The manifest's `ports`: what the app serves or listens on, each a number, "53/udp", or a
range such as "21000-21010" (FTP's passive ports) or "6000-6009/udp", each port once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp))?\Z", re.ASCII)
# Each is a listener in the recording run and a forward at every run: a typo such as
# "1-65535" would open every port.
MAX_PORTS = 1024


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "tcp"  # "tcp" | "udp"

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


def parse_ports(values: Any, bad: Any) -> tuple[Port, ...]:
    """The ports of the manifest's list; bad(why) is the error to raise."""
    if not isinstance(values, list):
        raise bad(f'{values!r} is not a list of ports such as [80, "53/udp", "21000-21010"]')
    out: list[Port] = []
    for value in values:
        for port in _parse(value, bad):
            if port in out:
                raise bad(f"{value!r}: port {port} is given twice")
            out.append(port)
            if len(out) > MAX_PORTS:
                raise bad(f"over {MAX_PORTS} ports: an app serves at most that many")
    return tuple(out)


def _parse(value: object, bad: Any) -> list[Port]:
    if isinstance(value, int) and not isinstance(value, bool):
        first = last = value
        proto = "tcp"
    elif isinstance(value, str) and (m := _PORT_RE.match(value)):
        first = int(m[1])
        last = int(m[2] or m[1])
        proto = m[3] or "tcp"
    else:
        raise bad(f'{value!r} is not a port such as 80, "53/udp" or a range "21000-21010"')
    check_range(first, last, value, bad)
    return [Port(n, proto) for n in range(first, last + 1)]


def check_range(first: int, last: int, value: object, bad: Any) -> None:
    """FIRST-LAST (or one port, first == last) as value wrote it: both port numbers, in
    order; bad(why) is the error to raise. The gateway's service ports are checked so too."""
    for number in (first, last):
        if not 1 <= number <= 65535:
            raise bad(f"{number} is not a port number (1-65535)")
    if last < first:
        raise bad(f"{value!r} ends before it begins; write a range FIRST-LAST")
