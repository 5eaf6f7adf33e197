"""The rules ARCHITECTURE.md states, kept by tests: each fails with the place that breaks it.

- Targets are plug-ins: no code outside src/summon/targets branches on a target's name.
- No import cycle among summon's modules, counting imports under TYPE_CHECKING and inside
  functions (a cycle there is a design knot even where Python tolerates it).
- No import hidden behind a string (importlib.import_module, __import__) but where a module
  must be named at run time: the two registries' lazy loading, and the app's own entry.
- No module over 600 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import summon
from summon import targets

SRC = Path(summon.__file__).resolve().parent
MAX_LINES = 600
# Where a module is imported by a name known only at run time, and why.
DYNAMIC_IMPORTS = {
    "targets/__init__.py": "the target registry imports a target's module when first used",
    "cli/main.py": "the verb table imports a verb's module when first used",
    "runtime/init.py": "the image's init imports the app's entry module, named in app.json",
    "targets/browser/inpage/boot.py": "the page's Python imports the app's entry, from app.json",
    "build/_trace.py": "the closure trace imports what the app names, to see what it loads",
    "build/_verify.py": "the build's check imports the app's entry inside the built image",
    "build/_interface_probe.py": "the build imports the app's entry to see if it is WSGI/ASGI",
}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def test_no_branch_on_a_target_name_outside_the_targets_package() -> None:
    names = set(targets.names())
    found = []
    for module, path in modules():
        if module == "summon.targets" or module.startswith("summon.targets."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert found == [], "target names outside summon.targets (use the registry): " + str(found)


def _imports(
    tree: ast.Module, module: str, is_package: bool, known: set[str]
) -> Iterator[str]:
    """The summon modules an import statement names. `from pkg import sub` names pkg.sub
    only, when every name it takes is a submodule (pkg's __init__ runs, but takes nothing)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            subs = [f"{base}.{alias.name}" for alias in node.names]
            if not all(sub in known for sub in subs):
                yield base
            yield from (sub for sub in subs if sub in known)


def import_graph() -> dict[str, set[str]]:
    found = dict(modules())
    graph: dict[str, set[str]] = {}
    for module, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = {
            name
            for name in _imports(tree, module, path.name == "__init__.py", set(found))
            if name in found and name != module
        }
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_summon_modules() -> None:
    assert cycles(import_graph()) == []


def test_imports_by_string_only_where_a_name_is_known_at_run_time_only() -> None:
    found = []
    for _module, path in modules():
        rel = str(path.relative_to(SRC))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = getattr(func, "attr", None) or getattr(func, "id", None)
                if name in ("import_module", "__import__") and rel not in DYNAMIC_IMPORTS:
                    found.append(f"{rel}:{node.lineno}")
    assert found == [], f"imports by string outside {sorted(DYNAMIC_IMPORTS)}: {found}"


@pytest.mark.parametrize("module", [m for m, _ in modules()])
def test_no_module_is_over_600_lines(module: str) -> None:
    path = dict(modules())[module]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines: split it by job"


def test_every_test_module_has_a_name_of_its_own() -> None:
    """pytest imports test files and their helpers by base name (rootdir-relative "prepend"
    mode): two files of one name in different folders make the whole suite fail to collect
    (one of them silently stands for the other in a partial run)."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("*.py"):
        parts = path.relative_to(tests).parts
        if "apps" in parts or path.name in ("__init__.py", "conftest.py"):
            continue  # apps are images' code, never imported by the suite
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {n: p for n, p in seen.items() if len(p) > 1} == {}
