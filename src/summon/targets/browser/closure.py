"""The app's closure against Pyodide's own stdlib, and Pyodide's stdlib archive pruned to it.

The image's bill of materials lists the stdlib modules the builder kept for CPython 3.11 on
Linux (its trace and static scan). In a tab the interpreter is Pyodide's CPython, which
loads modules of its own at start-up (its `pyodide` package, the event loop on the
browser's) and whose platform branches differ. So the export traces the app where it will
run: under Node, in Pyodide with its whole stdlib, booting the app as the page does and
answering one request (node/trace.js, inpage/trace.py). The site's python_stdlib.zip keeps
the modules that trace loaded, plus the BOM's stdlib modules (which the builder found the
app may import later, as its static scan saw them), plus their parent packages; nothing else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon.errors import TargetUnavailable, UserError
from summon.targets.browser import pyodide
from summon.targets.browser.archive import write_zip

TRACE_JS = Path(__file__).parent / "node" / "trace.js"
# Where Pyodide's stdlib modules are loaded from: the archive itself (zipimport), and a few
# it copies out at start (os, the site hooks).
STDLIB_DIRS = ("/lib/python311.zip/", "/lib/python3.11/")
TRACE_TIMEOUT = 120.0  # seconds; Pyodide starts in 2-7 s under Node here
NODE_MISSING = "node not found: apt-get install nodejs (the export traces the app in Pyodide)"
# Folders Pyodide expects in its stdlib tree whether or not a module of them is kept.
KEEP_ALWAYS = ("site-packages/",)


class AppFailsInPyodide(UserError):
    """The app does not start (or answer) in Pyodide: the site would show only an error."""


@dataclass(frozen=True)
class Trace:
    python: str  # Pyodide's CPython version, e.g. "3.11.3"
    builtin: frozenset[str]  # sys.builtin_module_names in Pyodide
    modules: dict[str, str | None]  # every module loaded: name -> __file__ (None: none)
    status: int  # the app's status for GET /


def run_trace(pyodide_dir: Path, bundle: Path, runtime_dir: str) -> Trace:
    """Boot the app in `bundle` in Pyodide under Node; its modules. AppFailsInPyodide if not."""
    node = shutil.which("node")
    if node is None:
        raise TargetUnavailable(NODE_MISSING)
    # The trace runs the image's code on this host: under Node's permission model (Node 20
    # and later), it may read these files only, and write nothing, start no process and no
    # worker. Debian 12's Node 18 has no such model; the trace runs there without it. The
    # model does not cover the network: a network namespace of its own does (no_network).
    sandbox = (
        [
            "--experimental-permission",
            f"--allow-fs-read={pyodide_dir}/*",
            f"--allow-fs-read={bundle}",
            f"--allow-fs-read={TRACE_JS}",
        ]
        if node_major(node) >= 20
        else []
    )
    argv = [
        *no_network(),
        node,
        "--no-warnings",
        *sandbox,
        str(TRACE_JS),
        str(pyodide_dir),
        str(bundle),
        runtime_dir,
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TRACE_TIMEOUT, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired:
        raise AppFailsInPyodide(
            f"the app did not start and answer GET / in Pyodide within {TRACE_TIMEOUT:g} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise AppFailsInPyodide(
            f"tracing the app in Pyodide under Node failed: {lines[-1] if lines else 'no output'}"
        )
    try:
        doc: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AppFailsInPyodide(f"the trace wrote no JSON: {done.stdout[:200]!r}") from None
    if doc.get("error"):
        error = str(doc["error"])
        said = _one_line(error)
        if doc.get("summary"):  # what the app raised, and where (a traceback's last line
            # may be the end of a message over several lines: Pyodide's URL)
            doing = error.splitlines()[0].split(" failed:")[0].removeprefix("AppFailed: ")
            said = f"{doing}: {doc['summary']}"
        if _UNVENDORED in error:
            said += (
                "; summon's browser sites hold Pyodide's core only (nothing is fetched from "
                "a CDN), which lacks the stdlib modules Pyodide ships as packages of their "
                "own (sqlite3, ssl, lzma...): run such an app on another target (summon run "
                "IMAGE), or for a tab keep its data in files on a volume"
            )
        raise AppFailsInPyodide(
            f"the app does not start in Pyodide {pyodide.VERSION} (CPython {doc.get('python')}): "
            + said
        )
    return Trace(
        python=str(doc.get("python", "")),
        builtin=frozenset(doc.get("builtin") or ()),
        modules={str(k): (str(v) if v else None) for k, v in (doc.get("modules") or {}).items()},
        status=int(doc.get("status") or 0),
    )


def no_network() -> list[str]:
    """The command prefix that runs a program in an empty network namespace ([] if none can
    be made here: then the trace can reach the network, as a build's probe can)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    for prefix in ([unshare, "--net", "--"], [unshare, "--user", "--net", "--"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return []


def node_major(node: str) -> int:
    """The major version of the Node at `node` (0 if it does not say)."""
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
        return int(done.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


# How Pyodide's importer says a module is one of its separate packages (0.25's wording).
_UNVENDORED = "unvendored from the Python standard library in the Pyodide distribution"


def _one_line(error: str) -> str:
    """The last line of a traceback (what was raised), after where it happened."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else error
    return f"{lines[0].split(' failed:')[0]}: {lines[-1]}"


def module_members(names: list[str]) -> dict[str, str]:
    """Module name -> archive member, for every module file in a stdlib archive's names."""
    found: dict[str, str] = {}
    for name in names:
        if not name.endswith(".py"):
            continue
        parts = name[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            found[".".join(parts)] = name
    return found


@dataclass(frozen=True)
class StdlibClosure:
    members: list[str]  # archive members kept, in the archive's order
    modules: list[str]  # module names kept
    left_out: list[str]  # BOM stdlib modules Pyodide's core lacks (and the trace never loaded)


def stdlib_closure(trace: Trace, bom: dict[str, Any], archive_names: list[str]) -> StdlibClosure:
    """What of Pyodide's stdlib archive the app needs: the trace's, the BOM's, their parents."""
    by_module = module_members(archive_names)
    wanted: set[str] = set()
    for name, file in trace.modules.items():
        if file and file.startswith(STDLIB_DIRS) and name in by_module:
            wanted.add(name)
    bom_stdlib = {
        str(m["name"])
        for m in bom.get("modules") or []
        if m.get("group") in ("stdlib", "builtin") and m.get("name")
    }
    wanted |= {name for name in bom_stdlib if name in by_module}
    for name in list(wanted):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in by_module:
                wanted.add(parent)
    available = set(by_module) | trace.builtin | set(trace.modules)
    left_out = sorted(name for name in bom_stdlib if name not in available)
    keep = {by_module[name] for name in wanted}
    members = [n for n in archive_names if n in keep or n in KEEP_ALWAYS]
    return StdlibClosure(members, sorted(wanted), left_out)


def prune_stdlib(source: Path, closure: StdlibClosure, dest: Path) -> None:
    """Write the members of `closure` from the stdlib archive `source` to `dest`."""
    keep = set(closure.members)
    with zipfile.ZipFile(source) as zf:
        entries = [(name, zf.read(name)) for name in zf.namelist() if name in keep]
    write_zip(dest, entries)


def prune_lock(source: Path, dest: Path) -> None:
    """pyodide-lock.json without its packages: the site loads none (its npm core has none)."""
    lock = json.loads(source.read_text())
    dest.write_text(json.dumps({"info": lock.get("info", {}), "packages": {}}, indent=1) + "\n")
