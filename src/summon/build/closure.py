"""The module closure: which modules an app needs, found by importing it under the image's Python.

A static scan alone (modulefinder) counts every module any reachable code mentions; that is
about four times too many, because the stdlib imports lots lazily in functions the app never
calls. Here the image's interpreter, run as the image runs it (-S -E), imports the runtime, the
entry, and everything the app's own code names (even in function bodies), runs an optional
probe, then adds what C code imports by name. What is then in sys.modules is the closure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import summon
from summon.build.python import Interpreter
from summon.errors import BuildError
from summon.manifest import Entry

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

REASON_STARTUP = "startup"
REASON_RUNTIME = "runtime"
REASON_ENTRY = "entry import"
REASON_STATIC = "static import in app code"
REASON_PROBE = "probe"
REASON_ALWAYS = "always include: loaded by C code no scan sees"
REASON_INCLUDE = "manifest include"
REASON_CODEC = "codec named in loaded code"

# Modules that C code imports by name, so no import statement and no Python-level trace of
# the app's import time shows them. (module, trigger, why): the module is added when the
# trigger module is loaded ("" = always). Each was confirmed against Debian's 3.11.2 by
# diffing sys.modules around the call named in `why`.
ALWAYS_INCLUDE: tuple[tuple[str, str, str], ...] = (
    (
        "encodings.idna",
        "_socket",
        "_socket's getaddrinfo, gethostbyname, connect... encode str host names with the idna "
        "codec, imported on first use",
    ),
    ("stringprep", "_socket", "encodings.idna imports it"),
    ("encodings.idna", "_ssl", "_ssl encodes server_hostname with the idna codec"),
    ("stringprep", "_ssl", "encodings.idna imports it"),
    ("copyreg", "", "object.__reduce_ex__ (copy.copy, pickling any object) imports it from C"),
    (
        "unicodedata",
        "",
        "the compiler imports it for non-ASCII identifiers and \\N{...} escapes (builtin in "
        "Debian's build, an extension module in others)",
    ),
    # The C fast paths cover only a few spellings of utf-8, latin-1 and ascii; any other
    # spelling, and these codecs, are looked up by name through encodings.search_function.
    ("encodings.latin_1", "", "codec looked up by name at run time (open, bytes.decode)"),
    ("encodings.ascii", "", "codec looked up by name at run time"),
    ("encodings.utf_8_sig", "", "codec looked up by name at run time"),
    ("encodings.raw_unicode_escape", "", "codec looked up by name at run time"),
    ("encodings.unicode_escape", "", "codec looked up by name at run time"),
)

# Modules the stdlib imports only optionally (inside try/except ImportError) and that cost
# much: they go in only when the app's own code, a vendored package or the manifest's include
# list imports them. ssl brings libssl and libcrypto (5.4 MB) into every asyncio app.
OPTIONAL = ("ssl", "_ssl")

_TRACE = Path(__file__).with_name("_trace.py")
_TAIL = 40  # lines of the app's own output shown under a failure


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the closure and where its file lives on the host."""

    name: str
    kind: str  # one of KINDS
    origin: Path | None  # the host file: .py, .pyc, .so, a package's __init__; None if none
    reason: str  # why it is in: the first step that loaded it
    group: str  # one of GROUPS
    root: Path | None = None  # the sys.path folder it was found under
    alias_of: str | None = None  # sys.modules["os.path"] is posixpath
    search_locations: tuple[Path, ...] = ()  # a package's __path__

    @property
    def relpath(self) -> PurePosixPath | None:
        """origin relative to root: where it goes under the image's matching folder."""
        if self.origin is None or self.root is None:
            return None
        return PurePosixPath(self.origin.relative_to(self.root).as_posix())


@dataclass
class Closure:
    """The modules an app needs, and what a static scan would have added on top.

    left_out and modulefinder come from a modulefinder run that goes on in the background
    after compute_closure returns (it takes ~3x as long as the trace and only feeds the
    report); reading either waits for it.
    """

    modules: dict[str, ModuleInfo]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _left_out: dict[str, str] = field(default_factory=dict, repr=False)
    _modulefinder: dict[str, Path | None] | None = field(default=None, repr=False)
    _pending: _Comparison | None = field(default=None, repr=False, compare=False)

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
        if pending is not None:
            pending.finish(self)

    def files(self) -> set[Path]:
        """Every host file the modules need (a package's __init__, an extension's .so)."""
        return {m.origin for m in self.modules.values() if m.origin is not None}

    def extension_modules(self) -> list[ModuleInfo]:
        """Extension modules (.so files), whose shared libraries elf.py must follow."""
        return sorted(
            (m for m in self.modules.values() if m.kind == "extension" and m.origin is not None),
            key=lambda m: m.name,
        )

    def extension_files(self) -> list[Path]:
        """The .so files of the extension modules."""
        return [m.origin for m in self.extension_modules() if m.origin is not None]

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


class _Comparison:
    """A modulefinder child still running; owns the trace's temporary folder until done."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        work: Path,
        started: float,
        timeout: float,
        failed: Mapping[str, str],
    ) -> None:
        self.proc = proc
        self.work = work
        self.started = started
        self.timeout = timeout
        self.failed = dict(failed)
        # Never leave the child or the folder behind, even if nobody reads left_out.
        self._finalizer = weakref.finalize(self, _cleanup, proc, work)

    def finish(self, closure: Closure) -> None:
        try:
            remaining = max(0.0, self.started + self.timeout - time.monotonic())
            if not _wait(self.proc, remaining):
                closure.warnings.append(
                    f"modulefinder did not finish within {self.timeout:g} s; no comparison"
                )
                return
            closure.timings["modulefinder"] = time.monotonic() - self.started
            mf = _load(self.work / "mf.out")
            if mf is None:
                closure.warnings.append(
                    "modulefinder failed, so there is no comparison: "
                    + _tail(self.work / "mf.log", 1)
                )
                return
            _compare(closure, mf, self.failed)
        finally:
            self._finalizer()


def _cleanup(proc: subprocess.Popen[bytes], work: Path) -> None:
    if proc.poll() is None:
        _kill(proc)
    shutil.rmtree(work, ignore_errors=True)


class TraceError(BuildError):
    """The app failed during the trace; .detail holds the traceback and the app's output."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def app_sources(app_dir: Path, exclude: Sequence[Path] = ()) -> list[tuple[Path, str | None, bool]]:
    """The app's own .py files as (path, module name or None, is a package __init__).

    Skips hidden folders, __pycache__, virtual environments and folders in exclude (a
    vendored site folder kept inside the app folder), whose code is not the app's.
    """
    excluded = {p.resolve() for p in exclude}
    out: list[tuple[Path, str | None, bool]] = []
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
            elif p.suffix == ".py" and p.is_file():
                yield p

    for path in walk(app_dir):
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
    timeout: float = 60.0,
    compare: bool = True,
    env: Mapping[str, str] | None = None,
) -> Closure:
    """Trace the app under interp and return its module closure.

    search_path is the app's sys.path (app folder, vendored site folder); runtime_path is the
    folder holding the runtime modules (default: this summon's own package). timeout bounds
    the whole trace, probe included. compare also runs modulefinder, in the background, for
    Closure.left_out. env is the app's environment during the trace (the manifest's env).
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
        else:
            runtime_path = runtime_path.resolve()
            runtime_root = runtime_path
        site_dirs = [p.resolve() for p in search_path if p.resolve() != app_dir]
        site_dirs = [p for p in site_dirs if p != runtime_path]
        paths = [str(p) for p in [app_dir, *site_dirs, runtime_path]]
        sources = app_sources(app_dir, exclude=site_dirs)
        cfg_entry: dict[str, str] = {"kind": entry.kind}
        if entry.kind == "function":
            cfg_entry["module"] = entry.module
            cfg_entry["function"] = entry.function
        else:
            script = (app_dir / entry.script).resolve()
            cfg_entry["script"] = str(script)
            for path, name, _pkg in sources:
                if path.resolve() == script and name:
                    # Importing the script by name would run it.
                    cfg_entry["script_module"] = name
        cfg = {
            "mode": "trace",
            "app_dir": str(app_dir),
            "search_path": paths,
            "runtime_modules": list(runtime_modules),
            "entry": cfg_entry,
            "entry_label": str(entry),
            "app_files": [(str(p), n, pkg) for p, n, pkg in sources],
            "probe": probe,
            "always": [(name, trigger) for name, trigger, _why in ALWAYS_INCLUDE],
            "include": list(include),
            "optional": list(OPTIONAL),
            "app_roots": [str(app_dir), *(str(d) for d in site_dirs)],
            "scan_codecs": True,
        }
        child_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
        child_env.update(env or {})

        mf_proc = None
        mf_started = time.monotonic()
        if compare:
            # Started first so that it overlaps the trace and whatever the build does next.
            (work / "mf.in").write_text(repr({**cfg, "mode": "modulefinder"}))
            mf_proc = _start(
                interp,
                [str(work / "mf.in"), str(work / "mf.out"), str(work / "mf.phase")],
                work / "mf.log",
                app_dir,
                child_env,
            )
        try:
            result, timings = _run_trace(interp, cfg, work, app_dir, child_env, timeout)
            closure = _build(result, interp, app_dir, site_dirs, runtime_root, runtime_path, work)
        except BaseException:
            if mf_proc is not None:
                _kill(mf_proc)
            raise
        closure.timings = timings
        if mf_proc is not None:
            failed = result.get("failed")
            closure._pending = _Comparison(
                mf_proc, work, mf_started, timeout, failed if isinstance(failed, dict) else {}
            )
            handed_off = True
        return closure
    finally:
        if not handed_off:
            shutil.rmtree(work, ignore_errors=True)


def _run_trace(
    interp: Interpreter,
    cfg: dict[str, object],
    work: Path,
    app_dir: Path,
    env: Mapping[str, str],
    timeout: float,
) -> tuple[dict[str, object], dict[str, float]]:
    (work / "trace.in").write_text(repr(cfg))
    out_file, phase_file, log = work / "trace.out", work / "trace.phase", work / "trace.log"
    started = time.monotonic()
    proc = _start(
        interp, [str(work / "trace.in"), str(out_file), str(phase_file)], log, app_dir, env
    )
    finished = _wait(proc, timeout)
    timings = {"trace": time.monotonic() - started}
    if not finished:
        phase = _read(phase_file) or "starting"
        raise TraceError(
            f"the closure trace was stopped after {timeout:g} s while {phase}; "
            "make the app's import (and probe) finish sooner",
            _tail(log),
        )
    result = _load(out_file)
    if result is None:
        raise TraceError(
            f"the closure trace under {interp.executable} exited with status "
            f"{proc.returncode} before reporting; the app may have called os._exit "
            "or crashed the interpreter at import (its output follows)",
            _tail(log),
        )
    if result["error"]:
        raise _trace_error(result["error"], log)
    return result, timings


def _start(
    interp: Interpreter, args: list[str], log: Path, cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    # -S -E as in the image; -B only so that the trace leaves no __pycache__ in the app
    # folder (it does not change what gets imported).
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(interp.executable), "-S", "-E", "-B", str(_TRACE), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            # Its own process group, so that a timeout also stops whatever the app started.
            start_new_session=True,
        )


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        _kill(proc)
        return False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _load(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(log: Path, lines: int = _TAIL) -> str:
    text = _read(log)
    return "\n".join(text.splitlines()[-lines:])


def _trace_error(error: object, log: Path) -> TraceError:
    assert isinstance(error, dict)
    phase, message, detail = error["phase"], error["message"], error["detail"]
    hints = {
        "probe": "; fix the probe or remove probe = ... from the manifest",
        "include": "; remove it from include or add what provides it to requirements",
        "entry-function": "; fix entry = ... in the manifest",
    }
    output = _tail(log)
    if output:
        detail = f"{detail}\noutput of the app during the trace (last lines):\n{output}"
    line = " ".join(str(message).split())
    return TraceError(line + hints.get(phase, ""), detail)


def _build(
    result: dict[str, object],
    interp: Interpreter,
    app_dir: Path,
    site_dirs: Sequence[Path],
    runtime_root: Path,
    runtime_path: Path,
    tmp: Path,
) -> Closure:
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
    warnings = list(_strs(result["warnings"]))
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
    return Closure(modules=modules, warnings=warnings)


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
        closure._left_out[name] = (
            error
            if error.startswith("optional:")
            else f"not importable here: {error}"
            if error
            else "only referenced from code that never ran at import or probe time"
        )


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        yield ".".join(parts[:i])
