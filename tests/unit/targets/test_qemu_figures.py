"""The app's figures from a VM: a marked console line the host takes and does not show."""

from __future__ import annotations

from summon.runtime.stats import STATS_PREFIX
from summon.runtime.vm import MARK
from summon.targets.qemu.serial import SerialConsole


def test_a_figures_line_is_taken_not_shown() -> None:
    console = SerialConsole()
    line = f"{MARK}{STATS_PREFIX}seq=1 gc0=5 gc1=0 gc2=0 blocks=900 rss=4096\r\n".encode()
    shown = console.feed(b"app says hi\r\n" + line[:20])
    shown += console.feed(line[20:] + b"more\r\n")
    assert shown == b"app says hi\nmore\n"
    assert console.figures == {"seq": 1, "gc0": 5, "gc1": 0, "gc2": 0, "blocks": 900, "rss": 4096}
