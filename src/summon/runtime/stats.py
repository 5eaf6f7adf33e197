"""Figures from inside the running app, written for the host only when it asks.

The host asks with SIGQUIT (as a JVM is asked for a thread dump): the runtime's handler
(init.py) imports this module then, and writes one line of `name=value` figures

    seq=3 gc0=152 gc1=13 gc2=1 blocks=52810 rss=11534336 uptime=42.1
    accepted=17 active=2 handed=9 requests=31

- in the sandbox, to the file SUMMON_STATS names (in the instance's /tmp, a tmpfs), which
  the host reads through /proc/PID/root; written whole (temporary name, rename);
- in a VM, as a line on the control port (summon.runtime.vm.control_line, ttyS1), where
  the host's serial reader takes it; the host asks by writing ^\\ (0x1c) to the console's
  serial line, which the guest's tty turns into SIGQUIT for PID 1.

So nothing is computed, written or kept when nobody asks, no socket is made, and until the
first request this module is not even imported. gc0..gc2 are collections per generation
since start (not gc.get_objects(): walking the heap is what a sealed instance refuses, and
it costs in proportion to the heap); blocks the interpreter's allocated memory blocks; rss
the resident memory in bytes; accepted/active the connections the Stack took and is
serving; handed those a gateway handed over; requests the HTTP requests the runtime's
server answered. A figure the app's configuration does not have (no Stack, no HTTP server)
is left out.
"""

from __future__ import annotations

import gc
import os
import sys
import time

STATS_PREFIX = "summon-stats: "
_seq = 0


def figures() -> list[tuple[str, float]]:
    """The figures now, in a fixed order (see the module docstring)."""
    global _seq
    _seq += 1
    out: list[tuple[str, float]] = [("seq", _seq)]
    for generation, entry in enumerate(gc.get_stats()):
        out.append((f"gc{generation}", entry.get("collections", 0)))
    out.append(("blocks", sys.getallocatedblocks()))
    out.append(("rss", _resident()))
    out.append(("uptime", round(time.monotonic() - _started(), 3)))
    stack = sys.modules.get("summon.runtime.socket_stack")
    if stack is not None:
        out.append(("accepted", getattr(stack, "accepted", 0)))
        out.append(("active", getattr(stack, "active", 0)))
    handoff = sys.modules.get("summon.runtime.handoff")
    if handoff is not None:
        out.append(("handed", getattr(handoff, "handed", 0)))
    server = sys.modules.get("summon.runtime.http.server")
    if server is not None:
        out.append(("requests", getattr(server, "requests", 0)))
    return out


def line() -> str:
    return " ".join(f"{name}={value}" for name, value in figures())


def parse(text: str) -> dict[str, float]:
    """The figures of one line (for the host); what does not parse is left out.

    The app writes the line (any app may answer SIGQUIT itself): a figure is a name that is
    an identifier and a finite number. `nan` or `inf` made `summon stats --json` and the
    gateway's status JSON print NaN and Infinity, which no JSON reader takes."""
    found: dict[str, float] = {}
    for token in text.split():
        name, eq, value = token.partition("=")
        if not eq or not name.isidentifier():
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if number != number or number in (float("inf"), float("-inf")):
            continue  # NaN, or an infinity (1e999 too)
        found[name] = int(number) if number.is_integer() and "." not in value else number
    return found


def write(path: str) -> None:
    """The line into path, whole: a reader sees the last one or this one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(line() + "\n")
    os.replace(tmp, path)


def report(path: str | None, console: bool) -> None:
    """What the SIGQUIT handler does: the figures to the file and/or the control port."""
    if path:
        try:
            write(path)
        except OSError:
            pass  # a full /tmp: the host sees no new figures and says so
    if console:
        from summon.runtime.vm import control_line

        control_line(STATS_PREFIX + line())


def _resident() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _started() -> float:
    """The monotonic time the process started, from /proc (the clock's zero is boot)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic()
