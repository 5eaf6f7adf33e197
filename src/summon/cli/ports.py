"""Whether `summon run`'s and `summon start`'s host ports can be listened on, said before
anything starts (a module of its own: both verbs use it, and neither imports the other)."""

from __future__ import annotations

import socket

from summon.targets.base import PortForward, PortTaken


def check_ports_free(ports: tuple[PortForward, ...]) -> None:
    """A port already taken, or an address not on this host, is the user's to fix: say so
    here, in one line, not later from inside a forwarder."""
    for f in ports:
        kind = socket.SOCK_DGRAM if f.protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((f.host_addr, f.host_port))
            except OSError as e:
                raise PortTaken(f, e) from None
