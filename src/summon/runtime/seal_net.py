"""When a script's seal closes: at its first use of an internet socket that the network can
answer (docs/sealing.md, "When the seal closes", point 5).

A script brings its own server or client (uvicorn, aiohttp, http.server), whose listening
the runtime cannot see otherwise, and no byte from the network reaches it before its first
bind(), connect(), sendto() or sendmsg() of an internet socket. One call does not count: a
connect() to the instance's own loopback (127.0.0.0/8, ::1, or the unspecified address,
which Linux connects to the local host). Before the script has bound anything, nothing in
the instance listens there (one process; the sandbox's port forwarder only connects in), so
it brings no byte from outside; NiceGUI's ui.run() polls its own port that way before
uvicorn binds it, and its startup then lists the interfaces with ctypes, which the seal
refuses. sendto() and sendmsg() still close it wherever they go: a UDP socket that sends
first is bound by the kernel to every address.

Stdlib only, imported by the runtime inside the image.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not from typing: its import costs every start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

INTERNET = (2, 10)  # AF_INET, AF_INET6: no import of socket needed
EVENTS = ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg")
UNSPECIFIED = ("0.0.0.0", "::", "::1")


def own_loopback(address: object) -> bool:
    """Whether a connect() to address stays in the instance: a numeric host on loopback
    (127.x.x.x, ::1, ::ffff:127.x.x.x) or the unspecified address. Names (localhost) are
    resolved by the socket module after the event, so they count as the network."""
    host = address[0] if isinstance(address, tuple) and address else None
    if type(host) is not str:
        return False
    if host.startswith("::ffff:"):
        host = host[7:]
    if host in UNSPECIFIED:
        return True
    parts = host.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) < 256 for p in parts)
    )


def watch(sealed: Callable[[], bool], reached: Callable[[str], None]) -> None:
    """Call reached("the script's first bind()", ...) at the script's first use of an
    internet socket the network can answer, before the call goes through. A small audit
    hook of its own (hooks cannot be removed: once sealed() it returns at once); AF_UNIX
    sockets (syslog, a local helper) do not count."""

    def first_network_use(
        event: str,
        args: tuple[Any, ...],
        events: tuple[str, ...] = EVENTS,
        internet: tuple[int, ...] = INTERNET,
        local: Callable[[object], bool] = own_loopback,
    ) -> None:
        # The event first: nothing the app can patch is read for the others, and the
        # interpreter's last event must reach the seal's exit (seal_end.py).
        if event not in events or sealed():
            return
        if getattr(args[0], "family", None) not in internet:
            return
        if event == "socket.connect" and len(args) > 1 and local(args[1]):
            return
        reached(f"the script's first {event[7:]}()")

    sys.addaudithook(first_network_use)
