"""summon.net's promises as a package: stdlib only, cheap to import, counters behave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from summon.net.counters import Counters

# packet.py needs the socket module (AF_PACKET), which brings enum and selectors: it is
# only imported by images that use it, so it is checked for stdlib-only but not for weight.
STACK_MODULES = ["summon.net.interface", "summon.net.links.memory", "summon.net.links.tap"]


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        (STACK_MODULES, {"typing", "dataclasses", "inspect", "enum", "socket"}),
        (["summon.net.links.packet"], {"typing", "dataclasses", "inspect"}),
    ],
)
def test_the_stack_imports_nothing_outside_the_stdlib_and_no_heavy_stdlib(
    modules: list[str], heavy: set[str]
) -> None:
    code = (
        "import sys; before = set(sys.modules)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    # -S: no site (and its .pth imports), -I: no user paths; src is found via PYTHONPATH.
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": _src()},
    )
    new = set(result.stdout.split())
    ours = {m for m in new if m == "summon" or m.startswith("summon.")}
    assert all(m.startswith("summon.net") or m == "summon" for m in ours), ours
    # typing (~20 ms), dataclasses (~30 ms, with inspect) stay out of images.
    assert not heavy & new, sorted(heavy & new)
    foreign = {m for m in new - ours if m.split(".")[0] not in sys.stdlib_module_names}
    assert not foreign, foreign


def _src() -> str:
    import summon

    return str(__import__("pathlib").Path(summon.__file__).parent.parent)


def test_counters_read_zero_until_incremented() -> None:
    counters = Counters()
    assert counters["ipv4__bad_checksum__drop"] == 0
    counters.inc("ipv4__bad_checksum__drop")
    counters.inc("ipv4__bad_checksum__drop", 2)
    counters.inc("arp__cache_full__evict")
    assert counters["ipv4__bad_checksum__drop"] == 3
    assert counters.snapshot() == {"arp__cache_full__evict": 1, "ipv4__bad_checksum__drop": 3}
    assert counters.matching("ipv4__") == {"ipv4__bad_checksum__drop": 3}
    assert "arp__cache_full__evict" in repr(counters)


def test_the_direct_stack_adds_only_summon_net_and_devices_to_asyncio() -> None:
    """stack.py wraps the layers in asyncio: beyond asyncio itself it may bring only summon.net
    and the device interfaces (dhcp and dns load when used)."""
    code = (
        "import sys, asyncio; before = set(sys.modules)\n"
        "import summon.net.stack, summon.net.dhcp, summon.net.dns\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": _src()},
    )
    new = set(result.stdout.split())
    assert new, result.stderr
    outside = {
        m
        for m in new
        if not (
            m.startswith(("summon.net", "summon.devices.")) or m in ("summon", "summon.devices")
        )
    }
    assert outside <= {"__future__"}, sorted(outside)


def _imports_of(path: Path, module: str, is_package: bool) -> set[str]:
    """Every summon.net module `module` imports anywhere: top level, functions, and
    TYPE_CHECKING blocks alike (a cycle hidden from the interpreter is still a cycle)."""
    import ast

    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("summon.net")}


def test_summon_net_has_no_import_cycle() -> None:
    root = Path(_src()) / "summon" / "net"
    modules: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {
            m
            for m in _imports_of(path, name, path.name == "__init__.py")
            if m in modules and m != name
        }
        for name, path in modules.items()
    }
    # A package's __init__ that re-exports its modules is not a cycle with them: importing
    # summon.net.tcp.layer runs summon.net.tcp first, which is what Python does anyway.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_summon_net_module_is_over_600_lines() -> None:
    root = Path(_src()) / "summon" / "net"
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, long


@pytest.mark.parametrize(
    ("module", "name"),
    [("memory", "MemoryLink"), ("tap", "TapLink"), ("packet", "PacketLink")],
)
def test_each_link_declares_the_counters_it_increments(module: str, name: str) -> None:
    import ast
    import importlib

    path = Path(_src()) / "summon" / "net" / "links" / f"{module}.py"
    incremented = {
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "inc"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    link_class = getattr(importlib.import_module(f"summon.net.links.{module}"), name)
    assert incremented and incremented == set(link_class.COUNTERS)
