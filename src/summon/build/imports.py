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

Results are cached on disk by content hash (ScanCache), so a rebuild parses nothing again.
Which guards count, and how tests are judged, is guards.py.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from summon.build.guards import (
    SCAN_VERSION,
    Facts,
    ScanContext,
    assigned_once,
    catches_import_error,
    func_name,
    is_main_guard,
    main_only_functions,
    suppresses_import_error,
)

__all__ = [
    "GUARD_DEAD",
    "GUARD_FALLBACK",
    "GUARD_NONE",
    "GUARD_OPTIONAL",
    "HOW_CALL",
    "HOW_PACKAGE",
    "HOW_STATEMENT",
    "HOW_STRING",
    "RUNS_CALL",
    "RUNS_IMPORT",
    "SCAN_VERSION",
    "FileScan",
    "ImportRef",
    "ScanCache",
    "ScanContext",
    "scan_source",
]


GUARD_NONE = ""
GUARD_OPTIONAL = "optional"
GUARD_DEAD = "dead"
GUARD_FALLBACK = "fallback"  # in the handler of an import guard: runs if the guarded one fails

RUNS_IMPORT = "import"  # module level: runs when the module is imported
RUNS_CALL = "call"  # in a function body: runs when that function is called

HOW_STATEMENT = "statement"
HOW_CALL = "call"  # importlib.import_module("x"), __import__("x")
HOW_STRING = "string"  # "pkg.mod:attr" or "pkg.mod.Class" in a string literal
# import_module(f"pkg.{name}"), "pkg.{}".format(name), "pkg." + name: a module of pkg named at
# run time (a plugin, a codec): the ref's module is pkg, and any module directly in it may be it
HOW_PACKAGE = "package"

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
_CODEC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,38}\Z")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# "pkg.mod:attr" (entry-point style) or "pkg.mod.attr" (a dotted path, logging.config style).
_MODULE_STRING = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?\Z")


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
    facts: Facts = field(init=False)
    # Module-level functions called only from the `if __name__ == "__main__":` block (a
    # stdlib module's _test() or main()): their imports run only when it is a script.
    main_only: set[str] = field(default_factory=set)
    constants: set[str] = field(default_factory=set)  # names bound once, at top level
    consumed: set[int] = field(default_factory=set)  # string nodes already read as imports
    blocks: int = 0

    def __post_init__(self) -> None:
        self.facts = Facts(self.ctx)

    def module(self, tree: ast.Module) -> None:
        self.main_only = main_only_functions(tree)
        self.constants = assigned_once(tree)
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
            guarded = any(catches_import_error(h.type) for h in st.handlers)
            if not guarded:
                self.body(st.body, where)
                for h in st.handlers:
                    self.body(h.body, where)
            else:
                self.blocks += 1
                block = self.blocks
                self.body(st.body, where.with_guard(GUARD_OPTIONAL, block))
                for h in st.handlers:
                    fallback = catches_import_error(h.type)
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
            suppressed = any(suppresses_import_error(i.context_expr) for i in st.items)
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
        if is_main_guard(st.test):
            self.body(st.body, _Where(where.runs, where.guard, True, where.block))
            self.body(st.orelse, where)
            return
        truth = self.facts.truth(st.test)
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
            known: object = self.facts.truth(value)
            if known is None:
                known = self.facts.value(value)
            if known is not None:
                self.facts.known[name] = known

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
        fname = func_name(n.func)
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
            elif (package := _runtime_name_under(arg)) is not None:
                self.add(where, package, 0, (), n.lineno, HOW_PACKAGE)
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


def _is_docstring(st: ast.stmt) -> bool:
    return (
        isinstance(st, ast.Expr)
        and isinstance(st.value, ast.Constant)
        and isinstance(st.value.value, str)
    )


def _runtime_name_under(arg: ast.expr) -> str | None:
    """The package P of a module name made at run time as "P." and then one name: the
    f-string f"P.{x}", "P.{}".format(x) and "P." + x. None for anything else (a name with
    more after the run-time part names no module of P directly)."""
    prefix: object = None
    if isinstance(arg, ast.JoinedStr) and len(arg.values) == 2:
        head, tail = arg.values
        if isinstance(head, ast.Constant) and isinstance(tail, ast.FormattedValue):
            prefix = head.value
    elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
        if isinstance(arg.left, ast.Constant) and not isinstance(arg.right, ast.Constant):
            prefix = arg.left.value
    elif (
        isinstance(arg, ast.Call)
        and isinstance(arg.func, ast.Attribute)
        and arg.func.attr == "format"
        and isinstance(arg.func.value, ast.Constant)
        and isinstance(arg.func.value.value, str)
        and arg.func.value.value.endswith(".{}")
        and len(arg.args) == 1
    ):
        prefix = arg.func.value.value[:-2]
    if not isinstance(prefix, str) or not prefix.endswith(".") or prefix.startswith("."):
        return None
    package = prefix[:-1]
    if not all(part.isidentifier() for part in package.split(".")):
        return None
    return package
