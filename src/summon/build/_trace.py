"""Runs under the image's interpreter to record which modules an app really loads.

Started by summon.build.closure as `python -S -E -B _trace.py IN OUT PHASE_FILE`. IN holds
repr() of a dict of plain literals; OUT receives JSON. Until the final snapshot of sys.modules
this script imports nothing (it reads input with eval and parses with compile(), which needs
no module), so that every module in sys.modules was loaded by the interpreter, the app or the
steps below, never by the tracer itself. Stdlib only: it runs under an interpreter summon does
not control.
"""

import sys

# typing is not imported at run time (it would land in every closure); mypy reads this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import FrameType
    from typing import Any

    Node = Any  # an _ast node
    Record = tuple[str, str, str | None, str, str | None, list[str]]

# ast.PyCF_ONLY_AST, spelled out so that `ast` (and its ~15 dependencies) stays unloaded.
_ONLY_AST = 0x400

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


class TraceFailure(Exception):
    def __init__(self, phase: str, message: str, exc: "BaseException | None") -> None:
        Exception.__init__(self, message)
        self.phase = phase
        self.message = message
        self.exc = exc


def _raised_by_environ(exc: BaseException) -> bool:
    """Whether exc came from os.environ[...] (the innermost frame: os's __getitem__)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    where = code.co_filename
    return code.co_name == "__getitem__" and (where == "<frozen os>" or where.endswith("os.py"))


def _walk(node: "Node") -> "Iterator[Node]":
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        for field in n._fields:
            v = getattr(n, field, None)
            if isinstance(v, list):
                stack.extend(x for x in v if hasattr(x, "_fields"))
            elif hasattr(v, "_fields"):
                stack.append(v)


def _parse(path: str) -> "Node":
    with open(path, "rb") as f:
        source = f.read()
    return compile(source, path, "exec", _ONLY_AST, dont_inherit=True)


def _package_of(modname: "str | None", is_pkg: bool) -> "str | None":
    if modname is None:
        return None
    return modname if is_pkg else modname.rpartition(".")[0]


def _absolute(node: "Node", package: "str | None") -> "str | None":
    """The module a From-import names, made absolute; None when it cannot be resolved."""
    if not node.level:
        module: str | None = node.module
        return module
    if not package:
        # Relative imports outside a package fail at run time too.
        return None
    parts = package.split(".")
    if node.level - 1 > len(parts) or (node.level - 1 == len(parts) and not node.module):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    if node.module:
        base.append(node.module)
    return ".".join(base) if base else None


def _imports_of(node: "Node", package: "str | None") -> "Iterator[tuple[str, list[str], int]]":
    """Yield (module, [names from it], lineno) for one import node or literal import call."""
    kind = type(node).__name__
    if kind == "Import":
        for alias in node.names:
            yield alias.name, [], node.lineno
    elif kind == "ImportFrom":
        mod = _absolute(node, package)
        if mod:
            yield mod, [a.name for a in node.names if a.name != "*"], node.lineno
    elif kind == "Call":
        # importlib.import_module("x") and __import__("x") with a literal name.
        f = node.func
        fname = getattr(f, "attr", None) or getattr(f, "id", None)
        if fname in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if type(arg).__name__ == "Constant" and isinstance(arg.value, str) and arg.value:
                if not arg.value.startswith("."):
                    yield arg.value, [], node.lineno


def _top_level_imports(tree: "Node") -> "tuple[list[Node], list[Node]]":
    """Split a script's module-level imports into those that always run and the rest.

    Imports in function bodies are left to the static scan of all app code.
    """
    always: list[Node] = []
    conditional: list[Node] = []

    def visit(stmts: "list[Node]", sure: bool) -> None:
        for st in stmts:
            kind = type(st).__name__
            if kind in ("Import", "ImportFrom"):
                (always if sure else conditional).append(st)
            elif kind == "If" and sure and _is_main_guard(st.test):
                visit(st.body, True)
                visit(st.orelse, False)
            else:
                conditional.extend(
                    n
                    for n in _walk_module_level(st)
                    if type(n).__name__ in ("Import", "ImportFrom", "Call")
                )

    visit(tree.body, True)
    return always, conditional


def _walk_module_level(node: "Node") -> "Iterator[Node]":
    """Like _walk, but not into function bodies: those run only when called."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if type(n).__name__ in ("FunctionDef", "AsyncFunctionDef", "Lambda"):
            continue
        for field in n._fields:
            v = getattr(n, field, None)
            if isinstance(v, list):
                stack.extend(x for x in v if hasattr(x, "_fields"))
            elif hasattr(v, "_fields"):
                stack.append(v)


def _is_main_guard(test: "Node") -> bool:
    if type(test).__name__ != "Compare" or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [getattr(s, "id", None) for s in sides]
    consts = [getattr(s, "value", None) for s in sides]
    return "__name__" in names and "__main__" in consts


def _in_stdlib(path: object) -> bool:
    """Whether path is a file of the interpreter's own stdlib (not of site-packages)."""
    stdlib = getattr(sys, "_stdlib_dir", None) or ""
    return (
        isinstance(path, str)
        and bool(stdlib)
        and path.startswith(stdlib + "/")
        and "-packages/" not in path
    )


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Refused(ModuleNotFoundError):
    """An import the image cannot satisfy either: refused as the image would fail it."""


class OptionalBlocker:
    """A meta path finder that keeps out what the image will not hold.

    - The manifest's exclude list, for every importer.
    - Optional imports of some heavy modules by the stdlib: asyncio, http.client and urllib
      import ssl only inside `try: ... except ImportError`, and just lack TLS without it.
      When the importing code is the stdlib's or the runtime's, this finder answers as if
      the module were absent, exactly as the image will; when it is the app's own code (or
      a vendored package's, or the manifest's include list), the import goes ahead.
    Installed first in sys.meta_path.
    """

    def __init__(
        self,
        optional: "Sequence[str]",
        allowed_roots: "Sequence[str]",
        exclude: "Sequence[str]",
        include: "Sequence[str]" = (),
    ) -> None:
        self.optional = frozenset(optional)
        self.exclude = tuple(exclude)
        self.allowed_roots = tuple(r.rstrip("/") + "/" for r in allowed_roots)
        self.blocked: dict[str, str] = {}  # module -> the file whose import was refused
        self.allowed: set[str] = set()  # optional modules the app asked for: theirs go too
        # The manifest's include list asks for them whoever imports them first (the stdlib's
        # http.client before the app's code ever could).
        self.included = frozenset(i.partition(".")[0] for i in include)

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        for entry in self.exclude:
            if name == entry or name.startswith(entry + "."):
                raise Refused(f"No module named {name!r} (excluded by the manifest)", name=name)
        if name.partition(".")[0] not in self.optional:
            return None
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen "):
            frame = frame.f_back
        importer = frame.f_code.co_filename if frame is not None else ""
        importer_name = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
        if (
            importer == __file__
            or importer.startswith(self.allowed_roots)
            or importer_name.partition(".")[0] in self.allowed
            or name.partition(".")[0] in self.included
        ):
            self.allowed.add(name.partition(".")[0])
            return None
        self.blocked.setdefault(name, importer)
        raise Refused(f"No module named {name!r} (optional, left out)", name=name)


class Tracer:
    def __init__(self, cfg: "dict[str, Any]", phase_file: str) -> None:
        self.cfg = cfg
        self.phase_file = phase_file
        self.reasons: dict[str, str] = {}
        self.warnings: list[str] = []
        self.failed: dict[str, str] = {}
        self.blocker = OptionalBlocker(
            cfg.get("optional", ()),
            cfg.get("app_roots", ()),
            cfg.get("exclude", ()),
            cfg.get("include", ()),
        )

    def phase(self, text: str) -> None:
        with open(self.phase_file, "w") as f:
            f.write(text)

    def mark(self, reason: str) -> None:
        for name in list(sys.modules):
            if name not in self.reasons:
                self.reasons[name] = reason

    def must_import(self, name: str, phase: str, what: str) -> None:
        try:
            __import__(name)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            raise TraceFailure(phase, f"{what}: {_describe(e)}", e) from None

    def try_import(self, name: str, names: "Sequence[str]" = (), where: str = "") -> None:
        """Import name (and names from it that are submodules); warn instead of failing."""
        if name not in sys.modules:
            try:
                __import__(name)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                self.cannot_import(name, where, e)
                return
        mod = sys.modules.get(name)
        if mod is None or not hasattr(mod, "__path__"):
            return
        for sub in names:
            full = name + "." + sub
            if full in sys.modules:
                continue
            try:
                __import__(full)
            except ModuleNotFoundError as e:
                # `from pkg import attr` where attr is no submodule: nothing to import.
                if e.name != full:
                    self.cannot_import(full, where, e)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                self.cannot_import(full, where, e)

    def cannot_import(self, name: str, where: str, e: BaseException) -> None:
        self.failed.setdefault(name, _describe(e))
        self.warnings.append(
            f"{where or 'app code'} imports {name}, which does not import here "
            f"({_describe(e)}); it is left out"
        )

    def run(self) -> None:
        cfg = self.cfg
        self.mark("startup")
        # sys.path[0] is this script's folder (summon's source), which the app must not
        # see. The image's init puts the app's path in front of the stdlib's, as here, and
        # does not add a script entry's own folder.
        sys.path[:] = [p for p in cfg["search_path"] if p] + sys.path[1:]
        sys.meta_path.insert(0, self.blocker)
        entry = cfg["entry"]

        self.phase("importing the runtime modules")
        for name in cfg["runtime_modules"]:
            self.must_import(name, "runtime", f"runtime module {name} failed to import")
        self.mark("runtime")

        self.phase("importing the entry " + cfg["entry_label"])
        is_async = False
        if entry["kind"] == "function":
            self.must_import(
                entry["module"], "entry", "app failed to import during the closure trace"
            )
            is_async = self.check_entry_function(entry["module"], entry["function"])
        else:
            self.script_imports(entry["script"])
        self.mark("entry import")
        if is_async:
            # The runtime runs a coroutine function under asyncio.run.
            self.must_import("asyncio", "runtime", "asyncio failed to import")
            self.mark("runtime")

        self.phase("importing what the app's code imports")
        script_mod = entry.get("script_module")
        for path, modname, is_pkg in cfg["app_files"]:
            try:
                tree = _parse(path)
            except (SyntaxError, ValueError, OSError) as e:
                self.warnings.append(
                    f"{path} cannot be parsed ({_describe(e)}); its imports are not scanned"
                )
                continue
            package = _package_of(modname, is_pkg)
            rel = path[len(cfg["app_dir"]) + 1 :] if path.startswith(cfg["app_dir"]) else path
            for node in _walk(tree):
                for mod, names, line in _imports_of(node, package):
                    if mod == script_mod:
                        continue
                    self.try_import(mod, names, f"{rel}:{line}")
        self.mark("static import in app code")

        if cfg["probe"]:
            self.phase("running the probe " + cfg["probe"])
            self.run_probe(cfg["probe"])
            self.mark("probe")

        self.phase("importing the manifest's include list")
        for name in cfg["include"]:
            self.must_import(
                name, "include", f"include = [{name!r}] in the manifest cannot be imported"
            )
        self.mark("manifest include")

        # Codecs named in code, _strptime where strptime is named and the modules C code
        # imports are found by the static scan (graph.py), for all shipped code.

    def check_entry_function(self, module: str, function: str) -> bool:
        """Fail as the image would if the function is missing; True if it is async."""
        fn = getattr(sys.modules[module], function, None)
        if fn is None or not callable(fn):
            raise TraceFailure(
                "entry-function",
                f"entry {module}:{function}: module {module!r} has no function {function!r}",
                None,
            )
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        code = getattr(fn, "__code__", None)
        return bool(code is not None and code.co_flags & _CO_COROUTINE)

    def script_imports(self, script: str) -> None:
        try:
            tree = _parse(script)
        except SyntaxError as e:
            raise TraceFailure(
                "entry", f"the entry script does not compile: {_describe(e)}", e
            ) from None
        always, conditional = _top_level_imports(tree)
        for node in always:
            for mod, names, _line in _imports_of(node, None):
                self.must_import(mod, "entry", "app failed to import during the closure trace")
                self.try_import(mod, names, "the entry script")
        for node in conditional:
            for mod, names, line in _imports_of(node, None):
                self.try_import(mod, names, f"the entry script:{line}")

    def run_probe(self, probe: str) -> None:
        module, _, func = probe.partition(":")
        self.must_import(module, "probe", f"the probe {probe} failed to import")
        try:
            fn = getattr(sys.modules[module], func)
        except AttributeError as e:
            raise TraceFailure("probe", f"the probe {probe} does not exist", e) from None
        try:
            result = fn()
            if type(result).__name__ == "coroutine":
                import asyncio

                asyncio.run(result)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            raise TraceFailure("probe", f"the probe {probe} failed: {_describe(e)}", e) from None


def _module_record(name: str, mod: object, reason: str) -> "Record":
    """(name, kind, origin, reason, alias_of, search_locations) for one sys.modules entry."""
    spec = getattr(mod, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    alias_of = spec_name if spec_name and spec_name != name else None
    locations = []
    if spec is not None and spec.submodule_search_locations is not None:
        locations = [str(p) for p in spec.submodule_search_locations]
    origin = getattr(spec, "origin", None) if spec is not None else None
    if spec is None:
        if name in sys.builtin_module_names:
            return name, "builtin", None, reason, None, []
        # Every module the import system loads has a spec: this one was made in code
        # (types.ModuleType). Its __file__, if any, is its maker's (bottle.ext says bottle.py),
        # which comes into the image as that module; no file provides this name.
        return name, "dynamic", None, reason, None, []
    if origin == "built-in":
        return name, "builtin", None, reason, alias_of, []
    if origin == "frozen":
        state = getattr(spec, "loader_state", None)
        file = getattr(state, "filename", None)
        origname = getattr(state, "origname", None)
        # Frozen code runs without its file, but the stdlib ones keep it as a landmark
        # (getpath looks for os.py); a module frozen under another name (_frozen_importlib
        # is importlib._bootstrap) never reads its file.
        if alias_of or origname != name:
            file = None
        return name, "frozen", file, reason, alias_of, locations
    if origin is None or not spec.has_location:
        if locations:
            return name, "namespace", None, reason, alias_of, locations
        file = getattr(mod, "__file__", None)
        if isinstance(file, str):
            return name, _kind_by_suffix(file), file, reason, alias_of, locations
        return name, "dynamic", None, reason, alias_of, locations
    loader = type(spec.loader).__name__
    if loader == "ExtensionFileLoader":
        kind = "extension"
    elif locations:
        kind = "package"
    elif loader == "SourcelessFileLoader":
        kind = "sourceless"
    elif loader == "SourceFileLoader":
        kind = "source"
    else:
        kind = _kind_by_suffix(origin)
    return name, kind, origin, reason, alias_of, locations


def _kind_by_suffix(path: str) -> str:
    if path.endswith(".py"):
        return "source"
    if path.endswith(".pyc"):
        return "sourceless"
    if path.endswith(".so"):
        return "extension"
    return "dynamic"


def modulefinder_main(cfg: "dict[str, Any]", out: str) -> None:
    """The over-approximation, for the report only: what modulefinder would put in."""
    import json
    import modulefinder

    path = [p for p in cfg["search_path"] if p] + sys.path[1:]
    finder = modulefinder.ModuleFinder(path=path)
    errors = []
    roots = list(cfg["runtime_modules"])
    entry = cfg["entry"]
    if entry["kind"] == "function":
        roots.append(entry["module"])
    for _path, modname, _is_pkg in cfg["app_files"]:
        if modname and modname != entry.get("script_module"):
            roots.append(modname)
    for name in roots:
        try:
            finder.import_hook(name)
        except Exception as e:
            errors.append(f"{name}: {_describe(e)}")
    if entry["kind"] == "script":
        try:
            finder.run_script(entry["script"])
        except Exception as e:
            errors.append(entry["script"] + ": " + _describe(e))
    modules = {
        name: (
            getattr(m, "__file__", None) if isinstance(getattr(m, "__file__", None), str) else None
        )
        for name, m in finder.modules.items()
        if name != "__main__"
    }
    with open(out, "w") as f:
        json.dump({"modules": modules, "errors": errors, "bad": sorted(finder.badmodules)}, f)


def _mapped_libraries() -> "list[str]":
    """The shared objects this process has mapped: with those its modules need (DT_NEEDED),
    the ones code loaded by name (ctypes.CDLL("libmagic.so.1"), cffi's dlopen)."""
    try:
        with open("/proc/self/maps") as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return []
    paths = {x[5].strip() for x in fields if len(x) == 6 and x[5].startswith("/")}
    return sorted(p for p in paths if ".so" in p.rpartition("/")[2])


def main() -> None:
    with open(sys.argv[1]) as f:
        cfg = eval(f.read(), {"__builtins__": {}}, {})
    out = sys.argv[2]
    if cfg["mode"] == "modulefinder":
        modulefinder_main(cfg, out)
        return
    tracer = Tracer(cfg, sys.argv[3])
    error = None
    try:
        tracer.run()
    except TraceFailure as e:
        error = e
    # The snapshot comes first: what follows may import (json, traceback).
    snapshot = []
    main_module = sys.modules.get("__main__")
    for name, mod in list(sys.modules.items()):
        if name == "__main__" or mod is main_module:
            continue  # this tracer (multiprocessing aliases it as __mp_main__)
        reason = tracer.reasons.get(name, "unknown")
        try:
            snapshot.append(_module_record(name, mod, reason))
        except Exception:
            # A lazy proxy or other oddity the app put in sys.modules: no file to keep.
            snapshot.append((name, "dynamic", None, reason, None, []))
    for name, importer in tracer.blocker.blocked.items():
        if name not in sys.modules:
            tracer.failed.setdefault(
                name,
                f"optional: only the stdlib asks for it ({importer}), inside try/except "
                f"ImportError; add include = [{name!r}] to keep it",
            )
    result = {
        "modules": snapshot,
        "warnings": tracer.warnings,
        "failed": tracer.failed,
        "error": None,
        "libraries": _mapped_libraries(),
    }
    if error is not None:
        import traceback

        detail = ""
        if error.exc is not None:
            # From the app's first frame: the tracer's own (this file's) say nothing to a user.
            tb = error.exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next
            detail = "".join(traceback.format_exception(type(error.exc), error.exc, tb))
        report = {"phase": error.phase, "message": error.message, "detail": detail}
        exc = error.exc
        if type(exc) is ModuleNotFoundError and exc.name:
            # Not in the image's search path at all (not refused): a requirement missing?
            report["missing"] = exc.name
        elif type(exc) is KeyError and exc.args and _raised_by_environ(exc):
            report["env"] = str(exc.args[0])  # os.environ["NAME"] at import
        elif isinstance(exc, ImportError) and _in_stdlib(exc.path) and tracer.blocker.blocked:
            # `from urllib.request import HTTPSHandler` (prometheus_client): names the stdlib
            # defines only when an optional import of its succeeds (http.client's ssl).
            first = min(tracer.blocker.blocked, key=lambda n: (n.startswith("_"), n))
            report["optional"] = first.partition(".")[0]
        result["error"] = report
    import json

    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads the app started must not keep the trace alive, nor atexit hooks run its code.
    import os

    os._exit(0)
