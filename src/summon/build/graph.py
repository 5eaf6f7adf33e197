"""The static module closure: every module that shipped code can import, followed transitively.

Starting from roots (the runtime, the entry, the probe, the include list, every app file,
every module of the vendored distributions), each module's source is scanned (imports.py) and
every import it can make is followed: module level and function bodies alike, literal
import-by-string, module paths in strings of app and vendored code, codecs named at codec
call sites, _strptime where strptime is named, and modules C code imports (ALWAYS_INCLUDE).

What is not followed, and why (each becomes an Absent entry with its importers):
- an optional import (under try/except ImportError or an equivalent guard) in stdlib,
  runtime or vendored code: kept only when something else needs it, so that asyncio and
  http.client do not drag in ssl and libssl. (The app's own optional imports are followed
  when they resolve: there they say what the app wants when present. And what the trace
  sees vendored code import while the app starts is in, guarded or not.)
- dead code: under `if TYPE_CHECKING:`, a platform or version test false in the image, or
  `if __name__ == "__main__":` of a module (a script entry's own runs);
- a fallback (`except ImportError: import json`) whose guarded imports are all in;
- the runtime's imports in function bodies: runtime_modules (build/image.py) names what each
  image needs of summon's runtime, and its lazy imports serve other configurations;
- the manifest's exclude list, and the stdlib DENY list below;
- modules that are not there to find (a Windows module, an extra not installed).
"""

from __future__ import annotations

import ast
import encodings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from summon.build.imports import (
    GUARD_DEAD,
    GUARD_FALLBACK,
    GUARD_NONE,
    GUARD_OPTIONAL,
    HOW_CALL,
    HOW_PACKAGE,
    HOW_STATEMENT,
    HOW_STRING,
    RUNS_IMPORT,
    FileScan,
    ImportRef,
    ScanCache,
)
from summon.build.resolve import Location, Resolver, module_name, sysconfig_data

REASON_STARTUP = "startup"
REASON_RUNTIME = "runtime"
REASON_ENTRY = "entry import"
REASON_STATIC = "static import in app code"
REASON_PROBE = "probe"
REASON_ALWAYS = "always include: loaded by C code or the import system, where no scan sees"
REASON_INCLUDE = "manifest include"
REASON_CODEC = "codec named in shipped code"
REASON_STRPTIME = "strptime named in shipped code"
REASON_APP = "app code"
REASON_DIST = "part of a vendored distribution"
REASON_SHIPPED = "static import in shipped code"
REASON_TRACE = "loaded during the trace"
REASON_PACKAGE = "a module of a package that shipped code imports by a name made at run time"

HOW_CODEC = "codec"
HOW_STRPTIME = "strptime"
HOW_C = "c"  # imported by C code (ALWAYS_INCLUDE)

ABSENT_OPTIONAL = "optional"
ABSENT_EXCLUDED = "excluded"
ABSENT_DENIED = "deny-list"
ABSENT_MISSING = "not found"
ABSENT_FALLBACK = "fallback"

SCRIPT = "<script>"  # the importer name of a script entry's own imports

# Modules that C code (or the import system) imports by name, so no import statement that a
# scan follows shows them. (module, trigger,
# why): the module is added when the trigger module is in ("" = always). Each was confirmed
# against Debian's 3.11.2 by diffing sys.modules around the call named in `why`.
ALWAYS_INCLUDE: tuple[tuple[str, str, str], ...] = (
    (
        "encodings.idna",
        "_socket",
        "_socket's getaddrinfo, gethostbyname, connect... encode str host names with the idna "
        "codec, imported on first use",
    ),
    ("encodings.idna", "_ssl", "_ssl encodes server_hostname with the idna codec"),
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
    # Error paths: an uncaught exception in a thread, an asyncio callback or a socketserver
    # handler formats its traceback with these, imported at that moment (socketserver's
    # handle_error imports traceback lazily: without it one failed request kills the server).
    (
        "importlib.readers",
        "importlib.resources",
        "importlib.resources.files() asks the package's loader for a resource reader, and "
        "the import system's loaders import importlib.readers to make one, on first use",
    ),
    ("traceback", "", "error paths format tracebacks with it, imported lazily"),
    ("linecache", "", "traceback reads source lines through it"),
)

# Stdlib parts no service needs, left out even when some shipped code names them (they stay
# importable if the app's own trace loads them or the manifest includes them).
DENY: dict[str, str] = {
    "test": "CPython's own test suite",
    "idlelib": "the IDLE editor, a desktop GUI",
    "tkinter": "Tk GUI bindings: an image has no display (and no libtk)",
    "turtle": "turtle graphics, on tkinter",
    "turtledemo": "turtle graphics demos",
    "ensurepip": "bundled pip wheels to install packages: an image has no package manager",
    "venv": "creates virtual environments",
    "lib2to3": "the Python 2 to 3 source converter (deprecated), with grammar pickles",
    "pydoc_data": "the text of the interactive help() topics",
    "distutils": "C-extension build tooling (deprecated, gone in 3.12)",
    "__phello__": "a frozen test package",
    "__hello__": "a frozen test module",
    "pdb": "the interactive debugger: an image has no terminal to drive it",
    "pydoc": "interactive help and its documentation server",
    "doctest": "a test runner",
    "multiprocessing": "worker processes need fork and exec, which the sandbox denies",
}

# Imports in function bodies that can only run once their target is loaded anyway, so they
# bring nothing in: (importer, target, why).
NEVER_FIRST: tuple[tuple[str, str, str], ...] = (
    (
        "importlib._bootstrap_external",
        "importlib.metadata",
        "PathFinder.find_distributions is called only by importlib.metadata itself",
    ),
    (
        "importlib._bootstrap_external",
        "importlib.readers",
        "the loaders' get_resource_reader is called only by importlib.resources",
    ),
    (
        "zipimport",
        "importlib.readers",
        "zipimporter.get_resource_reader is called only by importlib.resources",
    ),
)
# Folders of tests inside stdlib packages and vendored distributions: shipped only when
# non-test code imports them.
TEST_FOLDERS = frozenset(("test", "tests", "idle_test"))

# Byte-to-byte codecs: a literal such as "zlib" at a codec call site names these, and they
# would drag compression extension modules in for no text codec at all.
NOT_TEXT_CODECS = frozenset(
    ("base64_codec", "bz2_codec", "hex_codec", "quopri_codec", "uu_codec", "zlib_codec", "rot_13")
)


@dataclass(frozen=True)
class Edge:
    """One import shipped code can make: `importer` imports `target` at `line`."""

    importer: str  # a module name, or SCRIPT
    target: str
    line: int
    runs: str  # imports.RUNS_IMPORT (at import time) or RUNS_CALL (in a function body)
    guard: str  # imports.GUARD_NONE or GUARD_OPTIONAL (dead code makes no edge)
    how: str  # imports.HOW_* or HOW_CODEC, HOW_STRPTIME, HOW_C
    block: int = 0  # the import guard it is in or the fallback of (imports.ImportRef.block)

    @property
    def at_import(self) -> bool:
        """Runs, unguarded, when the importer itself is imported."""
        return (
            self.runs == RUNS_IMPORT
            and self.guard == GUARD_NONE
            and self.how in (HOW_STATEMENT, HOW_CALL)
        )


@dataclass
class Node:
    loc: Location
    reason: str
    via: Edge | None  # the edge that brought it in; None for a root


@dataclass
class Absent:
    """A module shipped code names that the image does not hold."""

    name: str
    why: str  # ABSENT_*
    detail: str
    importers: list[Edge]


@dataclass
class ImportGraph:
    """The closure being computed; add roots, then run() to follow their imports."""

    resolver: Resolver
    scans: ScanCache
    exclude: Sequence[str] = ()
    codec_aliases: dict[str, str] = field(default_factory=dict)
    script: Path | None = None  # a script entry's file: its __main__ block runs
    allow_denied: set[str] = field(default_factory=set)  # deny-listed but loaded or included
    nodes: dict[str, Node] = field(default_factory=dict)
    out: dict[str, list[Edge]] = field(default_factory=dict)  # importer -> its edges
    into: dict[str, list[Edge]] = field(default_factory=dict)  # target -> edges naming it
    warnings: list[str] = field(default_factory=list)
    unscannable: list[str] = field(default_factory=list)
    _queue: deque[str] = field(default_factory=deque)
    # Fallback imports waiting to see whether what they stand in for is in:
    # (importer, its location, block) -> fallback edges, and -> the guarded targets.
    _fallbacks: dict[tuple[str, int], list[Edge]] = field(default_factory=dict)
    _guarded: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    # --- roots -----------------------------------------------------------------------------

    def add_root(self, name: str, reason: str) -> Location | None:
        """Put a module in as a root; None if it is not to be found (or excluded)."""
        if name in self.nodes:
            return self.nodes[name].loc
        if self.excluded(name):
            return None
        loc = self.resolver.find(name)
        if loc is None:
            return None
        if self.denied(loc) and name not in self.allow_denied:
            return None
        self._add(name, loc, reason, None)
        return loc

    def add_script(self, script: Path) -> None:
        """Follow a script entry's imports (its own file is app code, shipped as such)."""
        self.script = script
        scan = self.scans.scan(script)
        if scan.error:
            return
        self._follow_scan(SCRIPT, None, "app", scan)

    # --- following -------------------------------------------------------------------------

    def run(self) -> None:
        """Follow imports from everything added until nothing new comes in."""
        while True:
            self._drain()
            # `try: import X / except ImportError: import Y` needs one of the two: X, as on
            # the host, when it is there to take (even where X alone would be optional);
            # else the fallback Y.
            pending = [
                key
                for key in self._fallbacks
                if not all(t in self.nodes for t in self._guarded.get(key, ()))
            ]
            if not pending:
                return
            for key in pending:
                fallbacks = self._fallbacks.pop(key)
                guarded = [
                    e
                    for e in self.out.get(key[0], ())
                    if e.block == key[1] and e.guard == GUARD_OPTIONAL
                ]
                if guarded and all(self._takeable(e.target) for e in guarded):
                    for edge in guarded:
                        self._follow(edge.target, edge, False)
                else:
                    for edge in fallbacks:
                        self._follow(edge.target, edge, False)

    def _drain(self) -> None:
        while self._queue:
            name = self._queue.popleft()
            node = self.nodes[name]
            for target, trigger, _why in ALWAYS_INCLUDE:
                if trigger == name:
                    self._follow(target, Edge(name, target, 0, RUNS_IMPORT, "", HOW_C), False)
            for target in sysconfig_data(name, node.loc):
                self._follow(target, Edge(name, target, 0, RUNS_IMPORT, "", HOW_C), False)
            source = node.loc.source
            if source is None:
                continue
            scan = self.scans.scan(source)
            if scan.error:
                self.unscannable.append(f"{source}: {scan.error}")
                if node.loc.group == "app":
                    self.warnings.append(
                        f"{source} cannot be parsed ({scan.error}); its imports are not scanned"
                    )
                continue
            self._follow_scan(name, node.loc, node.loc.group, scan)

    def _follow_scan(self, name: str, loc: Location | None, group: str, scan: FileScan) -> None:
        # The app's own optional imports are what its author chose to use when present:
        # followed when they resolve. The stdlib's, the runtime's and vendored code's are
        # kept only when something else needs them (the trace included: what vendored code
        # imports while the app starts is in).
        follow_optional = group == "app"
        strings = group in ("app", "site")
        for ref in scan.refs:
            if ref.guard == GUARD_DEAD or (ref.main and name != SCRIPT):
                continue
            if group == "runtime" and ref.runs != RUNS_IMPORT:
                continue
            base = self._absolute(name, loc, ref)
            if not base or any(i == name and t == base for i, t, _ in NEVER_FIRST):
                continue
            optional = ref.guard == GUARD_OPTIONAL and not follow_optional
            if ref.how == HOW_STRING:
                if strings:
                    self._string(name, ref, base)
                continue
            if ref.how == HOW_PACKAGE:
                # The app's and vendored code's plugins and codecs; never the stdlib's own
                # (encodings' search function would bring every codec into every image).
                if strings and not optional:
                    self._package(name, ref, base)
                continue
            edges = [Edge(name, base, ref.line, ref.runs, ref.guard, ref.how, ref.block)]
            edges += [
                Edge(name, sub, ref.line, ref.runs, ref.guard, ref.how, ref.block)
                for sub in self._from_names(base, ref.names)
            ]
            for edge in edges:
                if ref.block and ref.guard == GUARD_OPTIONAL:
                    self._guarded.setdefault((name, ref.block), []).append(edge.target)
                if ref.guard == GUARD_FALLBACK:
                    self._fallbacks.setdefault((name, ref.block), []).append(edge)
                    self.out.setdefault(name, []).append(edge)
                    self.into.setdefault(edge.target, []).append(edge)
                else:
                    self._follow(edge.target, edge, optional)
        for codec in scan.codecs:
            module = self.codec_module(codec)
            if module:
                self._follow(module, Edge(name, module, 0, RUNS_IMPORT, "", HOW_CODEC), False)
        if scan.strptime and name != "_strptime":
            edge = Edge(name, "_strptime", 0, RUNS_IMPORT, "", HOW_STRPTIME)
            self._follow("_strptime", edge, False)

    def _from_names(self, base: str, names: Sequence[str]) -> Iterator[str]:
        """Submodules among `from base import names` (the rest are attributes)."""
        if not names or self.excluded(base):
            return
        pkg = self.resolver.find(base)
        if pkg is None or not pkg.is_package:
            return
        if "*" in names:
            all_names: Sequence[str] = ()
            if pkg.source is not None:
                all_names = self.scans.scan(pkg.source).all_names or ()
            names = [n for n in names if n != "*"] + list(all_names)
        for n in names:
            sub = f"{base}.{n}"
            if self.resolver.find(sub) is not None or self.excluded(sub):
                yield sub

    def _string(self, importer: str, ref: ImportRef, text: str) -> None:
        """A module path in a string: followed when its longest module prefix resolves and
        is more than a bare top-level name ("ssl.CERT_NONE" in a help text must not bring
        ssl in), or when it is written "pkg.mod:attr"."""
        parts = text.split(".")
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if self.resolver.find(candidate) is not None:
                if n >= 2 or ref.anchor == "colon":
                    edge = Edge(importer, candidate, ref.line, ref.runs, ref.guard, HOW_STRING)
                    self._follow(candidate, edge, False)
                return

    def _package(self, importer: str, ref: ImportRef, package: str) -> None:
        """import_module(f"pkg.{name}"): any module directly in pkg may be the one, so all
        of them come (a codec detector trying every codec, a plugin folder), tests aside."""
        loc = self.resolver.find(package)
        if loc is None or not loc.is_package:
            return
        subs: set[str] = set()
        for folder in loc.search_locations:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir():
                    sub = entry.name if (entry / "__init__.py").is_file() else None
                else:
                    sub = module_name(PurePosixPath(entry.name), self.resolver.ext_suffixes)
                if sub and sub.isidentifier() and sub not in TEST_FOLDERS:
                    subs.add(sub)
        for sub in sorted(subs):
            target = f"{package}.{sub}"
            edge = Edge(importer, target, ref.line, ref.runs, ref.guard, HOW_PACKAGE)
            self._follow(target, edge, False)

    def _absolute(self, name: str, loc: Location | None, ref: ImportRef) -> str | None:
        if not ref.level:
            return ref.module
        if ref.anchor and ref.anchor not in ("__name__", "colon", "dotted"):
            package = ref.anchor
        elif ref.anchor == "__name__":
            package = name
        elif loc is None:
            return None  # a relative import in a script fails at run time too
        else:
            package = name if loc.is_package else name.rpartition(".")[0]
        parts = package.split(".") if package else []
        up = ref.level - 1
        if up > len(parts) or (up == len(parts) and not ref.module):
            return None
        base = parts[: len(parts) - up]
        if ref.module:
            base.append(ref.module)
        return ".".join(base) or None

    def _follow(self, target: str, edge: Edge, optional: bool) -> None:
        self.out.setdefault(edge.importer, []).append(edge)
        self.into.setdefault(target, []).append(edge)
        if target in self.nodes or optional or self.excluded(target):
            return
        loc = self.resolver.find(target)
        if loc is None:
            return
        if self.denied(loc) and target not in self.allow_denied:
            if not self._needs_denied(edge, loc):
                return
            # Vendored or app code that cannot import without it (werkzeug.debug's
            # `from multiprocessing import Value`, which Dash's backend imports by a name
            # made at run time): the package is the app's then, as if it loaded it.
            self.allow_denied.add(loc.name.split(".")[0])
        reason = {
            HOW_CODEC: REASON_CODEC,
            HOW_STRPTIME: REASON_STRPTIME,
            HOW_C: REASON_ALWAYS,
            HOW_PACKAGE: REASON_PACKAGE,
        }
        self._add(target, loc, reason.get(edge.how, REASON_SHIPPED), edge)

    def _needs_denied(self, edge: Edge, loc: Location) -> bool:
        """Whether a deny-listed module must come in for `edge`: a top-level, unguarded
        import in vendored or app code (stdlib code naming it is on paths no service takes,
        such as concurrent.futures' process pool). Not a test folder."""
        importer = self.nodes.get(edge.importer)
        group = importer.loc.group if importer is not None else "app"
        return (
            edge.at_import
            and group in ("site", "app")
            and loc.name.split(".")[0] in DENY
            and not any(p in TEST_FOLDERS for p in loc.name.split("."))
        )

    def _takeable(self, name: str) -> bool:
        """Whether name may come in: it exists, and neither exclude nor DENY keeps it out."""
        if name in self.nodes:
            return True
        loc = self.resolver.find(name)
        if loc is None or self.excluded(name):
            return False
        return not self.denied(loc) or name in self.allow_denied

    def _add(self, name: str, loc: Location, reason: str, via: Edge | None) -> None:
        # Importing a.b.c imports a and a.b first: their __init__ must be there too.
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in self.nodes:
                ploc = self.resolver.find(parent)
                if ploc is not None:
                    self.nodes[parent] = Node(ploc, reason, via)
                    self._queue.append(parent)
        self.nodes[name] = Node(loc, reason, via)
        self._queue.append(name)

    # --- rules -----------------------------------------------------------------------------

    def excluded(self, name: str) -> str | None:
        """The exclude entry that covers name (itself or a parent package), if any."""
        for entry in self.exclude:
            if name == entry or name.startswith(entry + "."):
                return entry
        return None

    def denied(self, loc: Location) -> str | None:
        """Why a stdlib module is on the deny list (or is a test folder), if it is."""
        if loc.group != "stdlib":
            return None
        parts = loc.name.split(".")
        # A package the app itself loads (or includes) is the app's choice: what it imports
        # later, lazily (multiprocessing's managers, pool...), comes with it.
        if parts[0] in DENY and parts[0] not in self.allow_denied:
            return DENY[parts[0]]
        if any(p in TEST_FOLDERS for p in parts):
            return "a test suite"
        return None

    def codec_module(self, literal: str) -> str | None:
        """encodings.X for a codec name as written ("CP-1252" -> encodings.cp1252)."""
        norm = encodings.normalize_encoding(literal.lower())
        target = (
            self.codec_aliases.get(norm) or self.codec_aliases.get(norm.replace(".", "_")) or norm
        )
        if target in NOT_TEXT_CODECS or not target.isidentifier():
            return None
        module = "encodings." + target
        return module if self.resolver.find(module) is not None else None

    # --- results -----------------------------------------------------------------------------

    def absent(self) -> dict[str, Absent]:
        """Modules shipped code names that are not in: why, and who names them."""
        out: dict[str, Absent] = {}
        for target, edges in self.into.items():
            if target in self.nodes:
                continue
            entry = self.excluded(target)
            loc = self.resolver.find(target)
            if entry is not None:
                why, detail = ABSENT_EXCLUDED, f"exclude = [{entry!r}] in the manifest"
            elif loc is None:
                why, detail = ABSENT_MISSING, "no such module in the image's search path"
            elif (reason := self.denied(loc)) is not None:
                why, detail = ABSENT_DENIED, reason
            elif all(e.guard == GUARD_FALLBACK for e in edges):
                why, detail = ABSENT_FALLBACK, "a fallback for an import that is in the image"
            else:
                why, detail = (
                    ABSENT_OPTIONAL,
                    "only imported under a guard (try/except ImportError)",
                )
            out[target] = Absent(target, why, detail, edges)
        return out

    def chain(self, name: str) -> list[Edge]:
        """The imports that brought name in, from a root down to it (empty for a root)."""
        edges: list[Edge] = []
        seen: set[str] = set()
        while name in self.nodes and name not in seen:
            seen.add(name)
            via = self.nodes[name].via
            if via is None:
                break
            edges.append(via)
            name = via.importer
        return list(reversed(edges))

    def needed_at_start(self, roots: Iterable[str]) -> Iterator[tuple[Edge, list[Edge]]]:
        """Edges run while the roots are imported (module level, unguarded), each with the
        chain of such edges that leads to it from a root."""
        chains: dict[str, list[Edge]] = {}
        queue: deque[str] = deque()
        for r in roots:
            if r not in chains:
                chains[r] = []
                queue.append(r)
        while queue:
            name = queue.popleft()
            for edge in self.out.get(name, ()):
                if not edge.at_import and not (name == SCRIPT and edge.runs == RUNS_IMPORT):
                    continue
                path = [*chains[name], edge]
                yield edge, path
                for t in _with_parents(edge.target):
                    if t not in chains and t in self.nodes:
                        chains[t] = path
                        queue.append(t)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def read_codec_aliases(stdlib: Path) -> dict[str, str]:
    """encodings.aliases.aliases of the image's stdlib, read without importing it."""
    try:
        tree = ast.parse((stdlib / "encodings" / "aliases.py").read_bytes())
    except (OSError, SyntaxError, ValueError):
        return {}
    for st in tree.body:
        if isinstance(st, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "aliases" for t in st.targets
        ):
            try:
                value = ast.literal_eval(st.value)
            except ValueError:
                return {}
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    return {}
