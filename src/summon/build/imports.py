"""The static import scan of one Python file: every import it can make, where, and how guarded.

Host side, with the stdlib's ast. For each file it records the import statements (module
level or in function bodies), the literal import-by-string calls (`importlib.import_module("x")`,
`__import__("x")`), module paths named in strings ("pkg.mod:attr", "pkg.mod.Class"), codec names
at codec call sites, and whether the file names strptime. Each import carries its guard:

- "optional": inside `try:` whose handlers catch ImportError (or ModuleNotFoundError,
  Exception, BaseException, a bare except), or `with contextlib.suppress(ImportError)`;
- "dead": under `if TYPE_CHECKING:`, or a test on sys.platform / os.name / platform.system() /
  sys.version_info that is false for the image (Linux, the image's Python version);
- "fallback": in such a handler (`except ImportError: import json`): needed only when the
  guarded import fails;
- "": none of these.

Apart from its guard, an import under `if __name__ == "__main__":` is marked `main`: it runs
only when the file is run as a script.

Results are cached on disk by content hash (scan_file), so a rebuild parses nothing again.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCAN_VERSION = 4  # bump when what a scan records changes: old cache entries are then ignored

GUARD_NONE = ""
GUARD_OPTIONAL = "optional"
GUARD_DEAD = "dead"
GUARD_FALLBACK = "fallback"  # in the handler of an import guard: runs if the guarded one fails

RUNS_IMPORT = "import"  # module level: runs when the module is imported
RUNS_CALL = "call"  # in a function body: runs when that function is called

HOW_STATEMENT = "statement"
HOW_CALL = "call"  # importlib.import_module("x"), __import__("x")
HOW_STRING = "string"  # "pkg.mod:attr" or "pkg.mod.Class" in a string literal

_IMPORT_ERRORS = frozenset(("ImportError", "ModuleNotFoundError", "Exception", "BaseException"))
# Calls whose string arguments name a codec (s.encode("cp1252"), codecs.lookup("koi8_r")...).
_CODEC_CALLS = frozenset(
    (
        "encode",
        "decode",
        "lookup",
        "getencoder",
        "getdecoder",
        "getincrementalencoder",
        "getincrementaldecoder",
        "getreader",
        "getwriter",
        "iterencode",
        "iterdecode",
    )
)
_CODEC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,38}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# "pkg.mod:attr" (entry-point style) or "pkg.mod.attr" (a dotted path, logging.config style).
_MODULE_STRING = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?$")


@dataclass(frozen=True)
class ScanContext:
    """What a guard is evaluated against: the image's platform and Python version."""

    version_info: tuple[int, int, int] = (3, 11, 0)
    platform: str = "linux"  # sys.platform
    os_name: str = "posix"  # os.name
    system: str = "Linux"  # platform.system()
    builtin_modules: tuple[str, ...] = ()  # sys.builtin_module_names

    def key(self) -> str:
        v = ".".join(str(x) for x in self.version_info)
        builtin = hashlib.sha256(" ".join(self.builtin_modules).encode()).hexdigest()[:16]
        return f"{SCAN_VERSION}/{v}/{self.platform}/{self.os_name}/{self.system}/{builtin}"


@dataclass(frozen=True)
class ImportRef:
    """One import a file can make."""

    module: str  # as written, without the leading dots ("" for `from . import x`)
    level: int  # the number of leading dots: 0 is absolute
    names: tuple[str, ...]  # `from M import a, b`: ("a", "b"); "*" for a star import
    line: int
    runs: str  # RUNS_IMPORT or RUNS_CALL
    guard: str  # GUARD_*
    how: str  # HOW_*
    # import_module(".x", P): "" = the file's package, "__name__", or P itself; for a string,
    # "colon" ("pkg.mod:attr") or "dotted" ("pkg.mod.attr")
    anchor: str = ""
    main: bool = False  # under `if __name__ == "__main__":`: runs only in a script
    # The import guard (a try statement, numbered in the file from 1) this import is guarded
    # by (guard "optional") or is the fallback of (guard "fallback"); 0 if none.
    block: int = 0

    def to_json(self) -> list[object]:
        return [
            self.module,
            self.level,
            list(self.names),
            self.line,
            self.runs,
            self.guard,
            self.how,
            self.anchor,
            self.main,
            self.block,
        ]

    @classmethod
    def from_json(cls, row: list[object]) -> ImportRef:
        module, level, names, line, runs, guard, how, anchor, main, block = row
        assert isinstance(names, list)
        return cls(
            str(module),
            int(str(level)),
            tuple(str(n) for n in names),
            int(str(line)),
            str(runs),
            str(guard),
            str(how),
            str(anchor),
            bool(main),
            int(str(block)),
        )


@dataclass(frozen=True)
class FileScan:
    """What one file can import, and the codec names and strptime it mentions."""

    refs: tuple[ImportRef, ...] = ()
    codecs: tuple[str, ...] = ()  # lower-case literals at codec call sites
    strptime: bool = False  # names strptime (time.strptime imports _strptime from C)
    all_names: tuple[str, ...] | None = None  # a literal __all__, for star imports
    error: str = ""  # why the file could not be parsed ("" if it was)

    def to_json(self) -> dict[str, object]:
        return {
            "refs": [r.to_json() for r in self.refs],
            "codecs": list(self.codecs),
            "strptime": self.strptime,
            "all": list(self.all_names) if self.all_names is not None else None,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> FileScan:
        refs, codecs, all_names = doc["refs"], doc["codecs"], doc["all"]
        assert isinstance(refs, list) and isinstance(codecs, list)
        return cls(
            refs=tuple(ImportRef.from_json(r) for r in refs),
            codecs=tuple(str(c) for c in codecs),
            strptime=bool(doc["strptime"]),
            all_names=tuple(str(a) for a in all_names) if isinstance(all_names, list) else None,
            error=str(doc.get("error", "")),
        )


def scan_source(source: bytes, filename: str, ctx: ScanContext) -> FileScan:
    """Scan one file's source."""
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError) as e:
        return FileScan(error=f"{type(e).__name__}: {e}")
    scanner = _Scanner(ctx)
    scanner.module(tree)
    return FileScan(
        refs=tuple(scanner.refs),
        codecs=tuple(sorted(scanner.codecs)),
        strptime=scanner.strptime,
        all_names=scanner.all_names,
    )


class ScanCache:
    """Scans of files by content hash, kept in a folder (one small JSON file per scan).

    Writes go to a temporary name and are renamed into place, so builds running at the same
    time never read a torn entry. A folder of None keeps scans in memory only.
    """

    def __init__(self, folder: Path | None, ctx: ScanContext) -> None:
        self.folder = folder
        self.ctx = ctx
        self._memory: dict[str, FileScan] = {}
        self.hits = 0
        self.misses = 0

    def scan(self, path: Path) -> FileScan:
        try:
            source = path.read_bytes()
        except OSError as e:
            return FileScan(error=f"cannot read: {e.strerror}")
        digest = hashlib.sha256(self.ctx.key().encode() + b"\0" + source).hexdigest()
        if digest in self._memory:
            return self._memory[digest]
        entry = self.folder / digest[:2] / f"{digest[2:]}.json" if self.folder else None
        if entry is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, AssertionError, TypeError):
                result = FileScan.from_json(json.loads(entry.read_bytes()))
                self._memory[digest] = result
                self.hits += 1
                return result
        result = scan_source(source, str(path), self.ctx)
        self.misses += 1
        self._memory[digest] = result
        if entry is not None:
            _write_atomic(entry, json.dumps(result.to_json()).encode())
        return result


def _write_atomic(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass
class _Where:
    runs: str = RUNS_IMPORT
    guard: str = GUARD_NONE
    main: bool = False
    block: int = 0

    def with_guard(self, guard: str, block: int = 0) -> _Where:
        rank = {GUARD_NONE: 0, GUARD_FALLBACK: 1, GUARD_OPTIONAL: 2, GUARD_DEAD: 3}
        if rank[guard] > rank[self.guard]:
            return _Where(self.runs, guard, self.main, block or self.block)
        return _Where(self.runs, self.guard, self.main, self.block)

    def function(self, main: bool) -> _Where:
        """Where a function body defined here runs: when called; a guard around the def does
        not guard the call, so only "dead" carries over."""
        dead = self.guard == GUARD_DEAD
        return _Where(RUNS_CALL, GUARD_DEAD if dead else GUARD_NONE, self.main or main)


@dataclass
class _Scanner:
    ctx: ScanContext
    refs: list[ImportRef] = field(default_factory=list)
    codecs: set[str] = field(default_factory=set)
    strptime: bool = False
    all_names: tuple[str, ...] | None = None
    # Module-level names bound to a platform or version test (_mswindows = sys.platform ==
    # "win32"), so that `if _mswindows:` is judged as the test itself.
    known: dict[str, object] = field(default_factory=dict)
    # Module-level functions called only from the `if __name__ == "__main__":` block (a
    # stdlib module's _test() or main()): their imports run only when it is a script.
    main_only: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)  # names bound once, at top level
    consumed: set[int] = field(default_factory=set)  # string nodes already read as imports
    blocks: int = 0

    def module(self, tree: ast.Module) -> None:
        self.main_only = _main_only_functions(tree)
        self.constants = _assigned_once(tree)
        for st in tree.body:
            if isinstance(st, ast.Assign):
                self.assignment(st)
        self.body(tree.body, _Where())

    def add(
        self,
        where: _Where,
        module: str,
        level: int,
        names: Sequence[str],
        line: int,
        how: str,
        anchor: str = "",
    ) -> None:
        self.refs.append(
            ImportRef(
                module,
                level,
                tuple(names),
                line,
                where.runs,
                where.guard,
                how,
                anchor,
                where.main,
                where.block,
            )
        )

    def body(self, stmts: Sequence[ast.stmt], where: _Where) -> None:
        for i, st in enumerate(stmts):
            if i == 0 and _is_docstring(st):
                continue
            self.stmt(st, where)

    def stmt(self, st: ast.stmt, where: _Where) -> None:
        if isinstance(st, ast.Import):
            for alias in st.names:
                self.add(where, alias.name, 0, (), st.lineno, HOW_STATEMENT)
        elif isinstance(st, ast.ImportFrom):
            names = [a.name for a in st.names]
            self.add(where, st.module or "", st.level or 0, names, st.lineno, HOW_STATEMENT)
        elif isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in [*st.decorator_list, *st.args.defaults, *st.args.kw_defaults]:
                if node is not None:
                    self.expr(node, where)
            main_only = where.runs == RUNS_IMPORT and st.name in self.main_only
            self.body(st.body, where.function(main_only))
        elif isinstance(st, ast.ClassDef):
            for node in [*st.decorator_list, *st.bases, *(k.value for k in st.keywords)]:
                self.expr(node, where)
            self.body(st.body, where)
        elif isinstance(st, ast.Try | ast.TryStar):
            guarded = any(_catches_import_error(h.type) for h in st.handlers)
            if not guarded:
                self.body(st.body, where)
                for h in st.handlers:
                    self.body(h.body, where)
            else:
                self.blocks += 1
                block = self.blocks
                self.body(st.body, where.with_guard(GUARD_OPTIONAL, block))
                for h in st.handlers:
                    fallback = _catches_import_error(h.type)
                    self.body(
                        h.body, where.with_guard(GUARD_FALLBACK, block) if fallback else where
                    )
            self.body(st.orelse, where)
            self.body(st.finalbody, where)
        elif isinstance(st, ast.If):
            self.if_stmt(st, where)
        elif isinstance(st, ast.With | ast.AsyncWith):
            for item in st.items:
                self.expr(item.context_expr, where)
            suppressed = any(_suppresses_import_error(i.context_expr) for i in st.items)
            self.body(st.body, where.with_guard(GUARD_OPTIONAL) if suppressed else where)
        elif isinstance(st, ast.AnnAssign):
            if st.value is not None:  # the annotation is not evaluated (or only by typing)
                self.expr(st.value, where)
        else:
            for child in ast.iter_child_nodes(st):
                if isinstance(child, ast.stmt):
                    self.stmt(child, where)
                elif isinstance(child, ast.expr):
                    self.expr(child, where)
                else:  # excepthandler, match_case...: walk their parts
                    for sub in ast.iter_child_nodes(child):
                        if isinstance(sub, ast.stmt):
                            self.stmt(sub, where)
                        elif isinstance(sub, ast.expr):
                            self.expr(sub, where)

    def if_stmt(self, st: ast.If, where: _Where) -> None:
        self.expr(st.test, where)
        if _is_main_guard(st.test):
            self.body(st.body, _Where(where.runs, where.guard, True, where.block))
            self.body(st.orelse, where)
            return
        truth = self.truth(st.test)
        body_where = where.with_guard(GUARD_DEAD) if truth is False else where
        else_where = where.with_guard(GUARD_DEAD) if truth is True else where
        self.body(st.body, body_where)
        self.body(st.orelse, else_where)

    def assignment(self, st: ast.Assign) -> None:
        if len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            name = st.targets[0].id
            value = st.value
            if name == "__all__" and isinstance(value, ast.List | ast.Tuple):
                items = [e.value for e in value.elts if isinstance(e, ast.Constant)]
                if all(isinstance(i, str) for i in items) and len(items) == len(value.elts):
                    self.all_names = tuple(str(i) for i in items)
            if name not in self.constants:
                return  # bound elsewhere too (`try: ... else: _mswindows = True`): unknown
            known: object = self.truth(value)
            if known is None:
                known = self.known_value(value)
            if known is not None:
                self.known[name] = known

    def expr(self, node: ast.expr, where: _Where) -> None:
        # Iterative: deeply nested expressions (generated tables) must not hit the
        # recursion limit.
        stack: list[tuple[ast.AST, _Where]] = [(node, where)]
        while stack:
            n, w = stack.pop()
            if isinstance(n, ast.Lambda):
                for d in [*n.args.defaults, *n.args.kw_defaults]:
                    if d is not None:
                        stack.append((d, w))
                stack.append((n.body, w.function(False)))
                continue
            if isinstance(n, ast.JoinedStr):
                # The literal parts of an f-string name nothing on their own.
                stack.extend((v.value, w) for v in n.values if isinstance(v, ast.FormattedValue))
                continue
            if isinstance(n, ast.Call):
                self.call(n, w)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                self.string(n, w)
            elif isinstance(n, ast.Attribute) and n.attr == "strptime":
                self.strptime = True
            elif isinstance(n, ast.Name) and n.id == "strptime":
                self.strptime = True
            stack.extend((c, w) for c in ast.iter_child_nodes(n))

    def call(self, n: ast.Call, where: _Where) -> None:
        fname = _func_name(n.func)
        if fname in ("import_module", "__import__") and n.args:
            arg = n.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value:
                self.consumed.add(id(arg))  # an import by name, not also a module string
                text = arg.value
                level = len(text) - len(text.lstrip("."))
                anchor = ""
                if level and fname == "import_module":
                    pkg = n.args[1] if len(n.args) > 1 else None
                    for kw in n.keywords:
                        if kw.arg == "package":
                            pkg = kw.value
                    if isinstance(pkg, ast.Name) and pkg.id in ("__name__", "__package__"):
                        anchor = "__name__" if pkg.id == "__name__" else ""
                    elif isinstance(pkg, ast.Constant) and isinstance(pkg.value, str):
                        anchor = pkg.value
                    else:
                        return  # relative to a package named at run time: unknowable
                elif level:
                    return  # __import__(".x") is not valid without globals
                self.add(where, text[level:], level, (), n.lineno, HOW_CALL, anchor)
        if fname in _CODEC_CALLS and isinstance(n.func, ast.Attribute):
            for a in n.args[:2]:
                self._codec(a)
        elif fname in ("str", "bytes", "bytearray") and len(n.args) >= 2:
            self._codec(n.args[1])
        elif fname == "open" and isinstance(n.func, ast.Attribute) and len(n.args) >= 3:
            self._codec(n.args[2])  # codecs.open(name, mode, encoding)
        for kw in n.keywords:
            if kw.arg == "encoding":
                self._codec(kw.value)

    def _codec(self, node: ast.expr) -> None:
        # The literals anywhere in the argument: b.decode(self.encoding or "cp437").
        for n in ast.walk(node):
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                if _CODEC_NAME.match(n.value):
                    self.codecs.add(n.value.lower())

    def string(self, n: ast.Constant, where: _Where) -> None:
        text = n.value
        if not isinstance(text, str) or id(n) in self.consumed:
            return
        if len(text) > 200 or ("." not in text and ":" not in text) or " " in text:
            return
        if _MODULE_STRING.match(text):
            module, colon, _attr = text.partition(":")
            self.add(where, module, 0, (), n.lineno, HOW_STRING, "colon" if colon else "dotted")

    def truth(self, test: ast.expr) -> bool | None:
        """Whether a test on the platform or Python version holds in the image (None: unknown)."""
        if isinstance(test, ast.Name):
            if test.id == "TYPE_CHECKING":
                return False
            value = self.known.get(test.id)
            return value if isinstance(value, bool) else None
        if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
            return False
        if isinstance(test, ast.Constant) and isinstance(test.value, bool):
            return test.value
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.truth(test.operand)
            return None if inner is None else not inner
        if isinstance(test, ast.BoolOp):
            values = [self.truth(v) for v in test.values]
            if isinstance(test.op, ast.And):
                if False in values:
                    return False
                return True if all(v is True for v in values) else None
            if True in values:
                return True
            return False if all(v is False for v in values) else None
        if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute):
            if test.func.attr in ("startswith", "endswith") and len(test.args) == 1:
                subject = self.known_value(test.func.value)
                prefix = _literal(test.args[0])
                if isinstance(subject, str) and isinstance(prefix, str | tuple):
                    if isinstance(prefix, tuple) and not all(isinstance(p, str) for p in prefix):
                        return None
                    method = (
                        subject.startswith if test.func.attr == "startswith" else subject.endswith
                    )
                    return method(prefix)
            return None
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, right = test.left, test.comparators[0]
            lv, rv = self.known_value(left), _literal(right)
            if lv is None:
                lv, rv = self.known_value(right), _literal(left)
                if lv is None:
                    return None
                return _compare(rv, test.ops[0], lv)
            return _compare(lv, test.ops[0], rv)
        return None

    def known_value(self, node: ast.expr) -> object | None:
        """sys.platform, os.name, platform.system(), sys.version_info (and its parts) and
        module constants, as they are in the image; None when unknown."""
        if isinstance(node, ast.Name) and node.id in self.known:
            return self.known[node.id]
        dotted = _dotted(node)
        if dotted == "sys.builtin_module_names":
            return self.ctx.builtin_modules
        if dotted in ("sys.platform",):
            return self.ctx.platform
        if dotted in ("os.name",):
            return self.ctx.os_name
        version = (*self.ctx.version_info, "final", 0)
        if dotted == "sys.version_info":
            return version
        if dotted == "sys.version_info.major":
            return version[0]
        if dotted == "sys.version_info.minor":
            return version[1]
        if isinstance(node, ast.Call) and _dotted(node.func) == "platform.system" and not node.args:
            return self.ctx.system
        if isinstance(node, ast.Subscript) and _dotted(node.value) == "sys.version_info":
            sl = node.slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, int):
                return version[sl.value]
            if isinstance(sl, ast.Slice) and sl.lower is None and sl.step is None:
                upper = _literal(sl.upper) if sl.upper is not None else None
                if isinstance(upper, int):
                    return version[:upper]
        return None


def _main_only_functions(tree: ast.Module) -> set[str]:
    """Module-level functions used only by the __main__ block, directly or through other
    such functions (a stdlib module's _test() and the helpers only it calls)."""
    functions: dict[str, set[str]] = {}  # function -> the names its def mentions
    main: set[str] = set()  # names the __main__ blocks mention
    rest: set[str] = set()  # names every other statement mentions
    for st in tree.body:
        names = _mentioned(st)
        if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef) and st.name not in functions:
            functions[st.name] = names - {st.name}
        elif isinstance(st, ast.If) and _is_main_guard(st.test):
            main |= names
        else:
            rest |= names
    candidates = {f for f in functions if f not in rest}
    while True:
        # A candidate mentioned by a function that is not main-only is needed elsewhere.
        used = set().union(*(functions[f] for f in functions if f not in candidates))
        keep = {f for f in candidates if f not in used}
        if keep == candidates:
            break
        candidates = keep
    reached: set[str] = set()
    todo = [f for f in candidates if f in main]
    while todo:  # only what the __main__ block really reaches
        f = todo.pop()
        if f not in reached:
            reached.add(f)
            todo += [g for g in functions[f] if g in candidates]
    return reached


def _mentioned(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            names.add(n.value)  # __all__ entries, getattr(module, "name")
    return names


def _assigned_once(tree: ast.Module) -> set[str]:
    """Names bound exactly once in the whole module, by a top-level `NAME = value`."""
    counts: dict[str, int] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            counts[n.id] = counts.get(n.id, 0) + 1
        elif isinstance(n, ast.alias):
            bound = n.asname or n.name.partition(".")[0]
            counts[bound] = counts.get(bound, 0) + 1
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            counts[n.name] = counts.get(n.name, 0) + 1
        elif isinstance(n, ast.Global | ast.Nonlocal):
            for name in n.names:
                counts[name] = counts.get(name, 0) + 2
    top = {
        st.targets[0].id
        for st in tree.body
        if isinstance(st, ast.Assign)
        and len(st.targets) == 1
        and isinstance(st.targets[0], ast.Name)
    }
    return {name for name in top if counts.get(name) == 1}


def _compare(left: object, op: ast.cmpop, right: object) -> bool | None:
    if right is None:
        return None
    try:
        if isinstance(op, ast.Eq):
            return bool(left == right)
        if isinstance(op, ast.NotEq):
            return bool(left != right)
        if isinstance(op, ast.In) and isinstance(right, tuple | list | str):
            return left in right
        if isinstance(op, ast.NotIn) and isinstance(right, tuple | list | str):
            return left not in right
        if (isinstance(left, tuple) and isinstance(right, tuple)) or (
            isinstance(left, int) and isinstance(right, int)
        ):
            if isinstance(op, ast.Lt):
                return bool(left < right)  # type: ignore[operator]
            if isinstance(op, ast.LtE):
                return bool(left <= right)  # type: ignore[operator]
            if isinstance(op, ast.Gt):
                return bool(left > right)  # type: ignore[operator]
            if isinstance(op, ast.GtE):
                return bool(left >= right)  # type: ignore[operator]
    except TypeError:
        return None
    return None


def _literal(node: ast.expr) -> object | None:
    try:
        value: object = ast.literal_eval(node)
        return value
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _func_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _is_docstring(st: ast.stmt) -> bool:
    return (
        isinstance(st, ast.Expr)
        and isinstance(st.value, ast.Constant)
        and isinstance(st.value.value, str)
    )


def _is_main_guard(test: ast.expr) -> bool:
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def _names_of(node: ast.expr | None) -> Iterator[str]:
    if node is None:
        yield "BaseException"  # a bare except
    elif isinstance(node, ast.Tuple):
        for e in node.elts:
            yield from _names_of(e)
    elif isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr


def _catches_import_error(node: ast.expr | None) -> bool:
    return any(n in _IMPORT_ERRORS for n in _names_of(node))


def _suppresses_import_error(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and _func_name(node.func) == "suppress":
        return any(_catches_import_error(a) for a in node.args)
    return False
