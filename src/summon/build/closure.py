"""The module closure: which modules go into an image, and why each one does (or does not).

Correctness first: the image holds every module that shipped code can import (graph.py: a
static scan of every shipped module, function bodies included, followed transitively), every
module of the vendored distributions, and everything the image's own interpreter loads while
it imports the runtime, the entry and what the app's code names and runs the probe (the
trace, _trace.py, for what no static scan sees). The stdlib is pruned where that is safe:
optional imports, dead code, a short deny list (graph.py says which and why).

The trace and the static scan run at the same time (the trace is a child process).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import summon
from summon.build import tracing
from summon.build.graph import (
    ALWAYS_INCLUDE,
    REASON_ALWAYS,
    REASON_APP,
    REASON_CODEC,
    REASON_DIST,
    REASON_ENTRY,
    REASON_INCLUDE,
    REASON_PROBE,
    REASON_RUNTIME,
    REASON_STARTUP,
    REASON_STATIC,
    REASON_TRACE,
    Absent,
    Edge,
    ImportGraph,
)
from summon.build.python import Interpreter
from summon.build.resolve import Location, Resolver, SearchEntry
from summon.build.static_closure import check_exclude, distribution_modules, static_graph
from summon.build.tracing import TraceError
from summon.build.vendor import Package, read_packages
from summon.errors import BuildError
from summon.manifest import Entry

__all__ = [
    "ALWAYS_INCLUDE",
    "GROUPS",
    "KINDS",
    "OPTIONAL",
    "REASON_ALWAYS",
    "REASON_APP",
    "REASON_CODEC",
    "REASON_DIST",
    "REASON_ENTRY",
    "REASON_INCLUDE",
    "REASON_PROBE",
    "REASON_RUNTIME",
    "REASON_STARTUP",
    "REASON_STATIC",
    "REASON_TRACE",
    "Closure",
    "ModuleInfo",
    "TraceError",
    "app_sources",
    "compute_closure",
    "distribution_modules",
]

KINDS = (
    "builtin",
    "frozen",
    "source",
    "sourceless",
    "extension",
    "package",
    "namespace",
    "dynamic",
)
GROUPS = ("stdlib", "site", "app", "runtime", "builtin")

# Modules the stdlib imports only optionally (inside try/except ImportError) that cost much:
# the trace refuses them to stdlib and runtime code, as the image will, so that an asyncio
# app does not carry ssl with libssl and libcrypto (5.4 MB). The static scan leaves every
# optional stdlib import out the same way; this list is for the trace, which would otherwise
# load them as the stdlib asks.
OPTIONAL = ("ssl", "_ssl")


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the closure and where its file lives on the host."""

    name: str
    kind: str  # one of KINDS
    origin: Path | None  # the host file: .py, .pyc, .so, a package's __init__; None if none
    reason: str  # why it is in: what loaded it during the trace, or why the scan took it
    group: str  # one of GROUPS
    root: Path | None = None  # the sys.path folder it was found under
    alias_of: str | None = None  # sys.modules["os.path"] is posixpath
    search_locations: tuple[Path, ...] = ()  # a package's __path__
    via: Edge | None = None  # the import that brought it in; None for a root
    traced: bool = False  # loaded while the build traced the app (not only found by the scan)

    @property
    def relpath(self) -> PurePosixPath | None:
        """origin relative to root: where it goes under the image's matching folder."""
        if self.origin is None or self.root is None:
            return None
        return PurePosixPath(self.origin.relative_to(self.root).as_posix())


@dataclass
class Closure:
    """The modules an app needs, what shipped code names that is not in, and the report.

    left_out and modulefinder come from a modulefinder run that goes on in the background
    after compute_closure returns (it only feeds the report); reading either waits for it.
    """

    modules: dict[str, ModuleInfo]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    absent: dict[str, Absent] = field(default_factory=dict)
    libraries: list[Path] = field(default_factory=list)  # mapped in the trace (_trace.py)
    graph: ImportGraph | None = field(default=None, repr=False, compare=False)
    _left_out: dict[str, str] = field(default_factory=dict, repr=False)
    _modulefinder: dict[str, Path | None] | None = field(default=None, repr=False)
    _pending: tracing.Comparison | None = field(default=None, repr=False, compare=False)

    @property
    def left_out(self) -> dict[str, str]:
        """Modules modulefinder would put in but the closure does not, each with why not."""
        self.wait_comparison()
        return self._left_out

    @property
    def modulefinder(self) -> dict[str, Path | None] | None:
        """What modulefinder finds (name -> file or None); None if it was not run."""
        self.wait_comparison()
        return self._modulefinder

    def wait_comparison(self) -> None:
        """Wait for the background modulefinder run, if any, and fill in left_out."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        mf, took, problem = pending.result()
        if mf is None:
            self.warnings.append(f"{problem}; no comparison")
            return
        self.timings["modulefinder"] = took
        _compare(self, mf, pending.failed)

    def files(self) -> set[Path]:
        """Every host file the modules need (a package's __init__, an extension's .so)."""
        return {m.origin for m in self.modules.values() if m.origin is not None}

    def extension_modules(self) -> list[ModuleInfo]:
        """Extension modules (.so files), whose shared libraries elf.py must follow."""
        return sorted(
            (m for m in self.modules.values() if m.kind == "extension" and m.origin is not None),
            key=lambda m: m.name,
        )

    def extension_files(self, traced: bool | None = None) -> list[Path]:
        """The .so files of the extension modules (traced: only those the trace loaded, or
        only those it did not)."""
        return [
            m.origin
            for m in self.extension_modules()
            if m.origin is not None and (traced is None or m.traced == traced)
        ]

    def site_packages(self) -> list[str]:
        """Top-level names of the vendored packages the closure uses ("h11")."""
        return sorted({m.name.split(".")[0] for m in self.modules.values() if m.group == "site"})

    def in_group(self, group: str) -> list[ModuleInfo]:
        return sorted((m for m in self.modules.values() if m.group == group), key=lambda m: m.name)

    def size(self) -> int:
        """Bytes of the host files the closure keeps."""
        return sum(_size(p) for p in self.files())

    def modulefinder_size(self) -> int:
        """Bytes of the files modulefinder would keep (0 if it was not run)."""
        found = self.modulefinder
        if not found:
            return 0
        return sum(_size(p) for p in set(found.values()) if p is not None)

    def chain(self, name: str) -> list[Edge]:
        """The imports that brought `name` in, from a root down to it."""
        out: list[Edge] = []
        seen: set[str] = set()
        while name in self.modules and name not in seen:
            seen.add(name)
            via = self.modules[name].via
            if via is None:
                break
            out.append(via)
            name = via.importer
        return list(reversed(out))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def app_files(app_dir: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every file of the app folder that is the app's: its code and the files beside it
    (templates, static files, its own extension modules), sorted.

    Skips hidden files and folders, __pycache__, virtual environments and folders in exclude
    (the data folders, baked in under /data; a vendored site folder kept inside the app
    folder), whose files are not the app's.
    """
    excluded = {p.resolve() for p in exclude}
    seen: set[Path] = set()

    def walk(folder: Path) -> Iterator[Path]:
        real = folder.resolve()
        if real in seen:  # a symlink loop, or the same folder linked twice
            return
        seen.add(real)
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        if (folder / "pyvenv.cfg").exists():
            return
        for p in entries:
            if p.name.startswith(".") or p.name == "__pycache__":
                continue
            if p.is_dir():
                if p.resolve() not in excluded:
                    yield from walk(p)
            elif p.is_file():
                yield p

    return list(walk(app_dir))


def app_sources(app_dir: Path, exclude: Sequence[Path] = ()) -> list[tuple[Path, str | None, bool]]:
    """The app's own .py files as (path, module name or None, is a package __init__),
    among app_files()."""
    out: list[tuple[Path, str | None, bool]] = []
    for path in app_files(app_dir, exclude):
        if path.suffix != ".py":
            continue
        parts = list(path.relative_to(app_dir).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        name = ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None
        out.append((path, name, is_pkg))
    return out


def compute_closure(
    interp: Interpreter,
    app_dir: Path,
    entry: Entry,
    search_path: Sequence[Path],
    probe: str = "",
    include: Sequence[str] = (),
    runtime_modules: Sequence[str] = ("summon.runtime",),
    runtime_path: Path | None = None,
    *,
    exclude: Sequence[str] = (),
    packages: Sequence[Package] | None = None,
    timeout: float = 60.0,
    compare: bool = True,
    env: Mapping[str, str] | None = None,
    scan_cache: Path | None = None,
    optional: Sequence[str] = OPTIONAL,
    volumes: Sequence[str] = (),
    table: str = "the manifest",
) -> Closure:
    """The module closure of the app under interp.

    search_path is the app's sys.path (app folder, vendored site folders); runtime_path is the
    folder holding the runtime modules (default: this summon's own package). packages are the
    vendored distributions (default: read from the site folders). timeout bounds the trace,
    probe included. compare also runs modulefinder, in the background, for Closure.left_out.
    env is the app's environment during the trace (the manifest's env). scan_cache is where
    file scans are kept (default: summon's cache folder). optional: what the trace keeps from
    the stdlib's and the runtime's optional imports (default OPTIONAL; a runtime module that
    needs one for real, such as the openssl TLS backend's ssl, takes it off this list).
    """
    app_dir = app_dir.resolve()
    work = Path(tempfile.mkdtemp(prefix="summon-trace-"))
    handed_off = False
    try:
        if runtime_path is None:
            # A folder holding only `summon`, so that nothing else from the host's
            # site-packages becomes importable during the trace.
            package = Path(summon.__file__).parent.resolve()
            runtime_path = work / "runtime"
            runtime_path.mkdir()
            (runtime_path / "summon").symlink_to(package)
            runtime_root = package.parent
            runtime_entry = SearchEntry(runtime_root, "runtime", only="summon")
        else:
            runtime_path = runtime_path.resolve()
            runtime_root = runtime_path
            runtime_entry = SearchEntry(runtime_path, "runtime")
        site_dirs = [p.resolve() for p in search_path if p.resolve() != app_dir]
        site_dirs = [p for p in site_dirs if p != runtime_path]
        if packages is None:
            packages = [p for d in site_dirs if d.is_dir() for p in read_packages(d)]
        paths_ = [str(p) for p in [app_dir, *site_dirs, runtime_path]]
        sources = app_sources(app_dir, exclude=site_dirs)
        script_path: Path | None = None
        cfg_entry: dict[str, str] = {"kind": entry.kind}
        if entry.kind == "function":
            cfg_entry["module"] = entry.module
            cfg_entry["function"] = entry.function
        else:
            script_path = (app_dir / entry.script).resolve()
            cfg_entry["script"] = str(script_path)
            for path, name, _pkg in sources:
                if path.resolve() == script_path and name:
                    # Importing the script by name would run it.
                    cfg_entry["script_module"] = name
        cfg: dict[str, object] = {
            "mode": "trace",
            "app_dir": str(app_dir),
            "search_path": paths_,
            "runtime_modules": list(runtime_modules),
            "entry": cfg_entry,
            "entry_label": str(entry),
            "app_files": [(str(p), n, pkg) for p, n, pkg in sources],
            "probe": probe,
            "include": list(include),
            "optional": list(optional),
            "exclude": list(exclude),
            "app_roots": [str(app_dir), *(str(d) for d in site_dirs)],
        }
        child_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
        child_env.update(env or {})

        resolver = Resolver(
            [
                SearchEntry(app_dir, "app"),
                *(SearchEntry(d, "site") for d in site_dirs),
                runtime_entry,
                SearchEntry(interp.stdlib, "stdlib"),
                SearchEntry(interp.dynload, "stdlib"),
            ],
            builtin=interp.builtin_modules,
            frozen=interp.frozen_modules,
            ext_suffixes=interp.ext_suffixes,
            stdlib=interp.stdlib,
            roots=[
                (app_dir, "app"),
                (runtime_root, "runtime"),
                *((d, "site") for d in site_dirs),
                (interp.stdlib, "stdlib"),
                *(
                    [(interp.dynload, "stdlib")]
                    if not interp.dynload.is_relative_to(interp.stdlib)
                    else []
                ),
            ],
        )
        check_exclude(exclude, include, resolver)

        mf_proc = None
        mf_started = time.monotonic()
        if compare:
            # Started first so that it overlaps the trace and whatever the build does next.
            (work / "mf.in").write_text(repr({**cfg, "mode": "modulefinder"}))
            mf_proc = tracing.start(
                interp,
                [str(work / "mf.in"), str(work / "mf.out"), str(work / "mf.phase")],
                work / "mf.log",
                app_dir,
                child_env,
            )
        started = time.monotonic()
        trace_proc = tracing.start_trace(interp, cfg, work, app_dir, child_env, volumes)
        try:
            # The static scan runs while the trace does.
            graph = static_graph(
                interp,
                resolver,
                entry,
                script_path,
                sources,
                probe,
                include,
                exclude,
                runtime_modules,
                packages,
                cfg_entry.get("script_module"),
                scan_cache,
            )
            static_time = time.monotonic() - started
            result = tracing.finish_trace(interp, trace_proc, work, timeout, volumes, table)
            trace_time = time.monotonic() - started
            traced = _traced(result, interp, app_dir, site_dirs, runtime_root, runtime_path, work)
            closure = _merge(graph, traced, result)
        except BaseException:
            for proc in (trace_proc, mf_proc):
                if proc is not None and proc.poll() is None:
                    tracing.kill(proc)
            raise
        closure.timings = {"trace": trace_time, "static": static_time}
        closure.libraries = [Path(p) for p in _strs(result.get("libraries"))]
        closure.warnings += tracing.app_writes_warnings(work / "app-writes")
        if mf_proc is not None:
            failed = result.get("failed")
            closure._pending = tracing.Comparison(
                mf_proc, work, mf_started, timeout, failed if isinstance(failed, dict) else {}
            )
            handed_off = True
        return closure
    finally:
        if not handed_off:
            shutil.rmtree(work, ignore_errors=True)


def _traced(
    result: dict[str, object],
    interp: Interpreter,
    app_dir: Path,
    site_dirs: Sequence[Path],
    runtime_root: Path,
    runtime_path: Path,
    tmp: Path,
) -> tuple[dict[str, ModuleInfo], list[str]]:
    """The trace's modules as ModuleInfo, with warnings about those that cannot go in."""
    # Most specific root first: a site folder may sit inside the app folder. lib-dynload
    # stays under the stdlib root so that relpath keeps its "lib-dynload/" prefix.
    roots: list[tuple[Path, str]] = [(app_dir, "app"), (runtime_root, "runtime")]
    roots += [(d, "site") for d in site_dirs]
    roots.append((interp.stdlib, "stdlib"))
    if not interp.dynload.is_relative_to(interp.stdlib):
        roots.append((interp.dynload, "stdlib"))
    if runtime_path != runtime_root:
        roots.append((runtime_path, "runtime"))
    roots.sort(key=lambda r: len(r[0].parts), reverse=True)

    def place(path: Path) -> tuple[Path, Path, str] | None:
        if path.is_relative_to(tmp):
            path = path.resolve()  # the runtime symlink folder made above
        for root, group in roots:
            if path.is_relative_to(root):
                return path, root, group
        return None

    def relocate(path: Path) -> Path:
        placed = place(path)
        return placed[0] if placed else path

    modules: dict[str, ModuleInfo] = {}
    warnings = _strs(result["warnings"])
    raw = result["modules"]
    assert isinstance(raw, list)
    for name, kind, origin, reason, alias_of, locations in raw:
        locs = tuple(Path(p) for p in locations)
        if kind == "builtin" or (kind == "frozen" and origin is None) or kind == "dynamic":
            modules[name] = ModuleInfo(name, kind, None, reason, "builtin", None, alias_of, locs)
            continue
        probe_path = Path(origin) if origin else (locs[0] if locs else None)
        placed = place(probe_path) if probe_path is not None else None
        if placed is None:
            warnings.append(
                f"module {name} was loaded from {probe_path}, outside the app, vendored, "
                "runtime and stdlib folders; it is left out of the image"
            )
            continue
        resolved, root, group = placed
        locs = tuple(relocate(p) for p in locs)
        modules[name] = ModuleInfo(
            name, kind, resolved if origin else None, reason, group, root, alias_of, locs
        )
    return modules, warnings


def _swapped_in(name: str, info: ModuleInfo) -> bool:
    """Whether the module the trace saw under `name` is a file of another name, put in
    sys.modules by the app's code (gevent's import_c_accel swaps gevent.queue for its
    compiled gevent._gevent_cqueue): both files ship, and the image swaps them alike."""
    if info.origin is None or info.root is None or not info.origin.is_relative_to(info.root):
        return False
    parts = info.origin.relative_to(info.root).parts
    stem = parts[-1].split(".", 1)[0]
    own = [*parts[:-1]] if stem == "__init__" else [*parts[:-1], stem]
    return ".".join(own) != name


def _merge(
    graph: ImportGraph,
    traced: tuple[dict[str, ModuleInfo], list[str]],
    result: Mapping[str, object],
) -> Closure:
    """The trace's modules and the static closure as one; what the trace loaded is in."""
    modules, warnings = traced
    for name, info in sorted(modules.items()):
        entry = graph.excluded(name)
        if entry is not None:
            raise BuildError(
                f"exclude = [{entry!r}] in the manifest removes {name}, but the app loads it "
                f"while it starts ({info.reason}); remove it from exclude"
            )
        graph.allow_denied.add(name)
    for name in sorted(modules):
        if name not in graph.nodes:
            graph.add_root(name, REASON_TRACE)
    graph.run()
    out: dict[str, ModuleInfo] = {}
    for name, info in modules.items():
        node = graph.nodes.get(name)
        if node is not None and info.origin is not None and node.loc.origin is not None:
            if node.loc.origin.resolve() != info.origin.resolve() and not _swapped_in(name, info):
                warnings.append(
                    f"module {name}: the trace loaded {info.origin} but the image would find "
                    f"{node.loc.origin}; report a closure bug"
                )
        out[name] = ModuleInfo(
            info.name,
            info.kind,
            info.origin,
            info.reason,
            info.group,
            info.root,
            info.alias_of,
            info.search_locations,
            node.via if node else None,
            traced=True,
        )
    for name, node in graph.nodes.items():
        if name not in out:
            out[name] = _from_location(node.loc, node.reason, node.via)
    absent = {n: a for n, a in graph.absent().items() if n not in out}
    return Closure(
        modules=out,
        warnings=[*tracing.unless_kept(warnings, result.get("failed"), out), *graph.warnings],
        absent=absent,
        graph=graph,
    )


def _from_location(loc: Location, reason: str, via: Edge | None) -> ModuleInfo:
    return ModuleInfo(
        loc.name,
        loc.kind,
        loc.origin,
        reason,
        loc.group,
        loc.root,
        loc.alias_of,
        loc.search_locations,
        via,
    )


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _compare(closure: Closure, mf: dict[str, object], failed: Mapping[str, str]) -> None:
    found = mf.get("modules")
    assert isinstance(found, dict)
    closure._modulefinder = {n: Path(p) if p else None for n, p in found.items()}
    for name in sorted(found):
        if name in closure.modules:
            continue
        error = failed.get(name) or next((failed[p] for p in _parents(name) if p in failed), "")
        absent = closure.absent.get(name)
        if error.startswith("optional:"):
            why = error
        elif error:
            why = f"not importable here: {error}"
        elif absent is not None:
            why = f"{absent.why}: {absent.detail}"
        else:
            why = (
                "named only in code that cannot run in the image (another platform, "
                "TYPE_CHECKING, a __main__ block) or in modules that are left out"
            )
        closure._left_out[name] = why


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        yield ".".join(parts[:i])
