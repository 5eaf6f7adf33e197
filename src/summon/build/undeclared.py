"""Ports a recording run's app listens on that its manifest does not list.

An app that brings its own server (`app.run(port=8000)` in a script, a console script's
main()) often comes without `ports` in its manifest. The recording run exercises the ports a
manifest lists from the host; with none listed it used to wait for the app to end, so a
server was never talked to, its derived list lacked what serving takes (accept4, for one),
and the sealed image refused its first connection at run time.

So for such an app the build looks at the TCP sockets listening in the instance's network
namespace (its /proc/PID/net/tcp and tcp6: the namespace's, read from the host), and
exercises each from inside that namespace, as a client there would reach it. The build then
says which ports these were, so that the manifest can list them (`summon run -p` and the
gateway take their defaults from it).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket
POLL = 0.1  # seconds between looks while the app starts


def listening(pid: int | str) -> list[tuple[str, int]]:
    """(address to reach it at, port) of each TCP socket listening in pid's network
    namespace (pid "thread-self": the calling thread's), sorted; [] once the process is gone.
    A wildcard address is reached at the loopback address of its family."""
    found: set[tuple[str, int]] = set()
    for table, wildcard in (("tcp", "127.0.0.1"), ("tcp6", "::1")):
        try:
            text = Path(f"/proc/{pid}/net/{table}").read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != TCP_LISTEN:
                continue
            address = _address(fields[1].rpartition(":")[0])
            port = int(fields[1].rpartition(":")[2], 16)
            if address is None or not port:
                continue
            found.add((wildcard if address.is_unspecified else str(address), port))
    return sorted(found)


def _address(hex_text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host (little-endian)
    order, each as 8 hex digits."""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def wait_listening(pid: int, timeout: float, alive: Callable[[], bool]) -> list[tuple[str, int]]:
    """The listening sockets of pid's namespace once there are any (a short settle later,
    for a server that opens several), [] if the app ends or timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        found = listening(pid)
        if found:
            time.sleep(POLL * 3)  # a second listener opened right after the first
            return listening(pid) or found
        time.sleep(POLL)
    return []
