"""The app's figures from a VM: a line on the control port, which the host takes."""

from __future__ import annotations

from summon.runtime.stats import STATS_PREFIX
from summon.runtime.vm import MARK
from summon.targets.qemu.serial import SerialConsole


def test_a_figures_line_is_taken_not_shown() -> None:
    console = SerialConsole()
    line = f"{MARK}{STATS_PREFIX}seq=1 gc0=5 gc1=0 gc2=0 blocks=900 rss=4096\r\n".encode()
    console.control(line[:20])
    console.control(line[20:])
    assert console.figures == {"seq": 1, "gc0": 5, "gc1": 0, "gc2": 0, "blocks": 900, "rss": 4096}
