"""The guards an import sits under, judged as the image would: platform and version tests,
TYPE_CHECKING, import-error handlers, __main__ blocks and the functions only they call.

Tests are evaluated against ScanContext, the image's facts (Linux, the image's Python version
and builtin modules), in three values: true, false, or unknown (None), which counts as live.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

SCAN_VERSION = 5  # bump when what a scan records changes: old cache entries are then ignored

_IMPORT_ERRORS = frozenset(("ImportError", "ModuleNotFoundError", "Exception", "BaseException"))


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


@dataclass
class Facts:
    """What a module's tests can be judged against: the image, and the module's constants."""

    ctx: ScanContext
    # Module-level names bound once to a known value (_mswindows = sys.platform == "win32",
    # _names = sys.builtin_module_names), so that `if _mswindows:` is judged as the test.
    known: dict[str, object] = field(default_factory=dict)

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
                subject = self.value(test.func.value)
                prefix = literal(test.args[0])
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
            lv, rv = self.value(left), literal(right)
            if lv is None:
                lv, rv = self.value(right), literal(left)
                if lv is None:
                    return None
                return compare(rv, test.ops[0], lv)
            return compare(lv, test.ops[0], rv)
        return None

    def value(self, node: ast.expr) -> object | None:
        """sys.platform, os.name, platform.system(), sys.version_info (and its parts) and
        module constants, as they are in the image; None when unknown."""
        if isinstance(node, ast.Name) and node.id in self.known:
            return self.known[node.id]
        name = dotted(node)
        if name == "sys.builtin_module_names":
            return self.ctx.builtin_modules
        if name == "sys.platform":
            return self.ctx.platform
        if name == "os.name":
            return self.ctx.os_name
        version = (*self.ctx.version_info, "final", 0)
        if name == "sys.version_info":
            return version
        if name == "sys.version_info.major":
            return version[0]
        if name == "sys.version_info.minor":
            return version[1]
        if isinstance(node, ast.Call) and dotted(node.func) == "platform.system" and not node.args:
            return self.ctx.system
        if isinstance(node, ast.Subscript) and dotted(node.value) == "sys.version_info":
            sl = node.slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, int):
                return version[sl.value]
            if isinstance(sl, ast.Slice) and sl.lower is None and sl.step is None:
                upper = literal(sl.upper) if sl.upper is not None else None
                if isinstance(upper, int):
                    return version[:upper]
        return None


def main_only_functions(tree: ast.Module) -> set[str]:
    """Module-level functions used only by the __main__ block, directly or through other
    such functions (a stdlib module's _test() and the helpers only it calls)."""
    functions: dict[str, set[str]] = {}  # function -> the names its def mentions
    main: set[str] = set()  # names the __main__ blocks mention
    rest: set[str] = set()  # names every other statement mentions
    for st in tree.body:
        names = _mentioned(st)
        if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef) and st.name not in functions:
            functions[st.name] = names - {st.name}
        elif isinstance(st, ast.If) and is_main_guard(st.test):
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


def assigned_once(tree: ast.Module) -> set[str]:
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


def compare(left: object, op: ast.cmpop, right: object) -> bool | None:
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


def literal(node: ast.expr) -> object | None:
    try:
        value: object = ast.literal_eval(node)
        return value
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def func_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def is_main_guard(test: ast.expr) -> bool:
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def names_of(node: ast.expr | None) -> Iterator[str]:
    if node is None:
        yield "BaseException"  # a bare except
    elif isinstance(node, ast.Tuple):
        for e in node.elts:
            yield from names_of(e)
    elif isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr


def catches_import_error(node: ast.expr | None) -> bool:
    return any(n in _IMPORT_ERRORS for n in names_of(node))


def suppresses_import_error(node: ast.expr) -> bool:
    if isinstance(node, ast.Call) and func_name(node.func) == "suppress":
        return any(catches_import_error(a) for a in node.args)
    return False
