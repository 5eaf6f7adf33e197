"""Sockets the host hands a socket-mode sandbox at start: its listeners, a gateway's channel.

For `-p HOST:GUEST` (TCP) summon binds and listens on the host's address and port, in the
host's network namespace, and passes the listening socket into the container (runc's
--preserve-fds) under systemd's convention: LISTEN_FDS sockets from fd 3, LISTEN_PID=1 (the
app is pid 1 of its pid namespace, which runc's own socket activation sets too), and
LISTEN_FDNAMES naming each by its guest port. The runtime's Stack accepts on it
(summon.runtime.socket_stack), so every connection is an ordinary kernel socket between the
client and the app: nothing is copied through summon.

Only where the runtime's Stack serves (RunSpec.stack_serves: network "socket", an entry
function or a WSGI/ASGI app), and only TCP: a UDP socket handed over could send anywhere
from the host's namespace, so UDP keeps the userspace forwarder (portfwd.py), as direct mode
and plain scripts (which bind their own ports) do. So does an app whose profile allows
connect() (RunSpec.takes_host_sockets): a connection it accepted on a host listener,
disconnected (connect(AF_UNSPEC)) and connected again, would reach anywhere from there.

A gateway's hand-off socketpair (RunSpec.handoff, summon.gateway.handoff) goes in after the
listeners, its number in SUMMON_HANDOFF_FD.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

from summon.targets.base import PortForward, PortTaken, RunSpec
from summon.targets.sandbox.spawn import FIRST_FD  # SD_LISTEN_FDS_START too

BACKLOG = 128  # the app's start_server sets its own when it adopts the socket


def split(
    spec: RunSpec, record: bool = False
) -> tuple[tuple[PortForward, ...], tuple[PortForward, ...]]:
    """(forwards whose listener is handed to the app, forwards left to the forwarder).

    None is handed to an app that could turn what it accepts into a connection of its own
    from the host's namespace (RunSpec.takes_host_sockets), except in the build's recording
    run (record): that runs the developer's own code, which the build ran on the host already.
    """
    if not (spec.stack_serves if record else spec.takes_host_sockets):
        return (), spec.ports
    handed = tuple(f for f in spec.ports if f.protocol == "tcp")
    entry = spec.app_config.get("entry")
    if isinstance(entry, dict) and entry.get("kind") in ("wsgi", "asgi"):
        # The runtime serves the app on the manifest's first TCP port only; another port is
        # one the app's own code opens (a metrics server beside it): the forwarder's.
        served = _first_tcp_port(spec.app_config.get("ports"))
        handed = tuple(f for f in handed if f.guest_port == served)
    return handed, tuple(f for f in spec.ports if f not in handed)


def unpublished(spec: RunSpec, handed: tuple[PortForward, ...]) -> tuple[int, ...]:
    """The TCP ports the runtime's Stack serves that no forward publishes (a run without
    -p). Each gets a listener made inside the instance's own network namespace: the app then
    serves there as behind -p. Left to the app, its socket() was refused (a profile recorded
    with handed listeners has none) with a line saying to allow socket, and asyncio, which
    skips a family whose socket() fails, started a server on no socket at all."""
    if not spec.stack_serves or spec.handoff is not None:  # a gateway hands connections
        return ()
    entry = spec.app_config.get("entry")
    if isinstance(entry, dict) and entry.get("kind") in ("wsgi", "asgi"):
        first = _first_tcp_port(spec.app_config.get("ports"))
        served = [] if first is None else [first]
    else:
        served = _tcp_ports(spec.app_config.get("ports"))
    published = {f.guest_port for f in handed}
    return tuple(p for p in served if p not in published)


def _tcp_ports(ports: object) -> list[int]:
    """The TCP ports of app.json's ports ("8000/tcp", "53/udp"...), in order, each once."""
    found = []
    for item in ports if isinstance(ports, list) else ():
        number, _, proto = str(item).partition("/")
        if (proto or "tcp") == "tcp" and number.isdigit() and int(number) not in found:
            found.append(int(number))
    return found


def _first_tcp_port(ports: object) -> int | None:
    """The first of them: the one a WSGI or ASGI app is served on (the runtime's http_port)."""
    return next(iter(_tcp_ports(ports)), None)


def listen(fwd: PortForward) -> socket.socket:
    """A socket on the forward's host address and port: listening for TCP, bound for UDP
    (the forwarder's). PortTaken if taken since `summon run` checked it, or never checked:
    the gateway's, a restart's."""
    family = socket.AF_INET6 if ":" in fwd.host_addr else socket.AF_INET
    tcp = fwd.protocol == "tcp"
    sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((fwd.host_addr, fwd.host_port))
        if tcp:
            sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise PortTaken(fwd, e) from None
    except BaseException:
        sock.close()
        raise
    return sock


class HandedSockets:
    """What goes into one container at fd 3 on: listeners (one per handed forward), then the
    gateway's channel if any. open() binds them; close() after runc has its copies."""

    def __init__(
        self,
        forwards: tuple[PortForward, ...],
        handoff: int | None = None,
        inside: tuple[int, ...] = (),
        netns: Path | None = None,
    ) -> None:
        """inside: ports listened on in the namespace at netns (unpublished), after forwards."""
        self.forwards = forwards
        self.handoff = handoff
        self.inside = inside if netns is not None else ()
        self.netns = netns
        self.listeners: list[socket.socket] = []
        # forward -> (host address, port) bound: the port a forward of port 0 got
        self.bound: dict[PortForward, tuple[str, int]] = {}

    def open(self) -> None:
        try:
            for fwd in self.forwards:
                sock = listen(fwd)
                self.listeners.append(sock)
                host, port = sock.getsockname()[:2]
                self.bound[fwd] = (host, port)
            if self.inside and self.netns is not None:
                from summon.targets.sandbox.netns import run_inside

                for port in self.inside:
                    inner = PortForward(port, port, host_addr="0.0.0.0")
                    self.listeners.append(run_inside(self.netns, functools.partial(listen, inner)))
        except BaseException:
            self.close()
            raise

    @property
    def fds(self) -> list[int]:
        """Their fds in this process, in the order they land in the container from fd 3."""
        fds = [s.fileno() for s in self.listeners]
        return fds if self.handoff is None else [*fds, self.handoff]

    def environment(self) -> dict[str, str]:
        """The app's variables that say what is where (LISTEN_*, SUMMON_HANDOFF_FD)."""
        env: dict[str, str] = {}
        ports = [*(f.guest_port for f in self.forwards), *self.inside]
        if ports:
            env["LISTEN_FDS"] = str(len(ports))
            env["LISTEN_PID"] = "1"
            env["LISTEN_FDNAMES"] = ":".join(map(str, ports))
        if self.handoff is not None:
            env["SUMMON_HANDOFF_FD"] = str(FIRST_FD + len(ports))
        return env

    def close(self) -> None:
        for sock in self.listeners:
            sock.close()
        self.listeners = []
