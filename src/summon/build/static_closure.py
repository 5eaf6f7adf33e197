"""The static side of the closure: its roots, added tier by tier, and the exclude checks.

Roots go in by tiers, each followed to the end before the next, so that a module's chain
(`summon inspect --why`) starts at the entry where one does, rather than at "part of a
distribution": the runtime, the entry, the probe and include; then the app's files; then
the interpreter's start-up modules and the always-include list; then every module of the
vendored distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from summon import paths
from summon.build.graph import (
    ALWAYS_INCLUDE,
    REASON_ALWAYS,
    REASON_APP,
    REASON_DIST,
    REASON_ENTRY,
    REASON_INCLUDE,
    REASON_PROBE,
    REASON_RUNTIME,
    REASON_STARTUP,
    SCRIPT,
    TEST_FOLDERS,
    ImportGraph,
    read_codec_aliases,
)
from summon.build.imports import ScanCache, ScanContext
from summon.build.python import Interpreter
from summon.build.resolve import Resolver, module_name
from summon.build.vendor import Package
from summon.errors import BuildError
from summon.manifest import Entry


def distribution_modules(pkg: Package, ext_suffixes: Sequence[str]) -> list[str]:
    """The modules a vendored distribution installs, but for those in its test folders."""
    names = set()
    for f in pkg.files:
        if any(part in TEST_FOLDERS for part in f.parts[:-1]):
            continue
        name = module_name(f, ext_suffixes)
        if name is not None:
            names.add(name)
    return sorted(names)


def check_exclude(exclude: Sequence[str], include: Sequence[str], resolver: Resolver) -> None:
    for name in exclude:
        if name in include:
            raise BuildError(
                f"{name!r} is in both include and exclude in the manifest; keep one of them"
            )
        if resolver.find(name) is None:
            raise BuildError(
                f"exclude = [{name!r}] in the manifest: no module {name} in the image's "
                "search path (app, vendored packages, stdlib); check the name"
            )


def static_graph(
    interp: Interpreter,
    resolver: Resolver,
    entry: Entry,
    script: Path | None,
    sources: Sequence[tuple[Path, str | None, bool]],
    probe: str,
    include: Sequence[str],
    exclude: Sequence[str],
    runtime_modules: Sequence[str],
    packages: Sequence[Package],
    script_module: str | None,
    scan_cache: Path | None,
) -> ImportGraph:
    """The static closure from the roots, tier by tier (so that `--why` shows the chain from
    the entry where there is one, rather than "part of a distribution")."""
    ctx = ScanContext(interp.version_tuple, builtin_modules=tuple(sorted(interp.builtin_modules)))
    cache_dir = scan_cache if scan_cache is not None else paths.cache_dir() / "imports"
    graph = ImportGraph(
        resolver,
        ScanCache(cache_dir, ctx),
        exclude=list(exclude),
        codec_aliases=read_codec_aliases(interp.stdlib),
        allow_denied=set(include),
    )
    starting: list[str] = list(runtime_modules)
    for name in runtime_modules:
        graph.add_root(name, REASON_RUNTIME)
    if entry.kind == "function":
        graph.add_root(entry.module, REASON_ENTRY)
        starting.append(entry.module)
    elif script is not None:
        graph.add_script(script)
        starting.append(SCRIPT)
    if probe:
        module = probe.partition(":")[0]
        graph.add_root(module, REASON_PROBE)
        starting.append(module)
    for name in include:
        graph.add_root(name, REASON_INCLUDE)
    graph.run()
    check_needed_at_start(graph, starting, script)

    for _path, app_module, _pkg in sources:
        if app_module and app_module != script_module:
            graph.add_root(app_module, REASON_APP)
    graph.run()
    for name in sorted(interp.startup_modules - {"__main__"}):
        graph.add_root(name, REASON_STARTUP)
    for name, trigger, _why in ALWAYS_INCLUDE:
        if not trigger:
            graph.add_root(name, REASON_ALWAYS)
    graph.run()
    for pkg in packages:
        for name in distribution_modules(pkg, interp.ext_suffixes):
            graph.add_root(name, REASON_DIST)
    graph.run()
    return graph


def check_needed_at_start(graph: ImportGraph, roots: Sequence[str], script: Path | None) -> None:
    """Fail when the exclude list removes a module the app imports while it starts."""
    if not graph.exclude:
        return
    for edge, chain in graph.needed_at_start(roots):
        entry = graph.excluded(edge.target)
        if entry is None:
            continue
        importer = script.name if edge.importer == SCRIPT and script else edge.importer
        route = " -> ".join([chain[0].importer, *(e.target for e in chain)])
        if edge.importer == SCRIPT and script:
            route = route.replace(SCRIPT, script.name)
        raise BuildError(
            f"module {edge.target} (imported by {importer}, line {edge.line}) is excluded by "
            f"exclude = [{entry!r}], but the app needs it to start ({route}); remove it "
            "from exclude"
        )
