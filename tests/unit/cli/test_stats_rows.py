"""`summon stats`: memory is shown against a limit only where the target holds it to one."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any, cast

from rich.console import Console

from summon.cli.instances import _stats_row, _stats_table
from summon.instances.state import InstanceFolder

# The run asked for 96 MiB: the guest's RAM on qemu, the cgroup's limit in the sandbox.
FOLDER = cast(
    InstanceFolder,
    SimpleNamespace(
        id="9da757d2ec03" + "0" * 52, name="fa1", spec=lambda: {"run": {"memory": 96 * 2**20}}
    ),
)


def sample(**extra: Any) -> dict[str, Any]:
    return {"memory_bytes": 293_600_000, "cpu_seconds": 1.0, "clock": 10.0, **extra}


def test_a_qemu_process_is_not_shown_at_hundreds_of_percent_of_its_guest() -> None:
    """A QEMU instance's monitor reports no cap (its resident memory holds the guest's RAM
    and QEMU's translated code): no limit and no percentage, where it showed 291%."""
    row = _stats_row(FOLDER, None, sample(memory_limit=None))
    assert (row["memory_limit"], row["memory_percent"]) == (None, None)
    console = Console(file=io.StringIO(), width=200)
    console.print(_stats_table([row]))
    header, line = console.file.getvalue().splitlines()[:2]  # type: ignore[attr-defined]
    usage = line[header.index("MEM USAGE") : header.index("NET DROPS")].split()
    assert usage == ["293.6", "MB", "/", "-", "-"]  # usage / limit, then MEM %


def test_a_sandbox_is_shown_against_its_cgroup_limit() -> None:
    row = _stats_row(FOLDER, None, sample(memory_bytes=32 * 2**20, memory_limit=64 * 2**20))
    assert (row["memory_limit"], row["memory_percent"]) == (64 * 2**20, 50.0)


def test_an_instance_not_running_has_no_figures() -> None:
    row = _stats_row(FOLDER, None, None)
    assert (row["running"], row["memory_limit"], row["memory_percent"]) == (False, None, None)


def test_figures_an_app_writes_itself_are_shown_as_far_as_they_go() -> None:
    """An app may answer SIGQUIT itself and write any figures: gc2 without gc0 made `summon
    stats` end in "internal error: KeyError: 'gc0'"; the GC column is a dash instead."""
    row = _stats_row(FOLDER, None, sample(runtime={"seq": 1, "gc2": 7, "accepted": 3}))
    console = Console(file=io.StringIO(), width=200)
    console.print(_stats_table([row]))
    header, line = console.file.getvalue().splitlines()[:2]  # type: ignore[attr-defined]
    assert line[header.index("GC 0/1/2") : header.index("BLOCKS")].split() == ["-"]
    assert line[header.index("CONNS") :].split() == ["0/3"]
