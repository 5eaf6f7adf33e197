"""The seal's audit hook (sys.addaudithook): what Python code may no longer do once sealed.

Refused after the seal, each with its rule in the PermissionError and said (seal_said.py):
- seal.code: compiling or running code from strings (the "compile" and "exec" events) unless
  the source is byte for byte an image file (under a module folder and on its file system),
  the code is what the image's Jinja makes of a template file the image ships from exactly
  that file's text, the compile only parses (ast.parse, ast.literal_eval), or it is
  typing.ForwardRef's of a string annotation with no lambda or comprehension in it (which
  ForwardRef._evaluate may run when it holds no code of its own), namedtuple's own template
  over identifiers, gettext's plural-forms function (seal_stdlib.py), dataclasses' methods
  of an image module's class as it is imported, or code the build learned (app.json
  "seal"/"code"; docs/sealing.md, "Code the build saw");
  new code objects ("code.__new__", code.replace), and marshal.loads of anything but an
  image .pyc read by the import system; setting a function's __code__; a new (sub-)
  interpreter, whose code no hook of this one would see; a trace or profile function;
- seal.import: an import while sys.path names a folder outside the image's module folders;
- seal.ctypes: importing ctypes, and every ctypes event (dlopen, dlsym, objects at raw
  addresses, and on Python 3.12+ foreign calls), but for the runtime's own shutdown (a VM's
  reboot). Python 3.11 audits no call through a function pointer made before the seal; no
  new ctypes object can be made (seal_ctypes.py; docs/sealing.md says what is left open);
- seal.write: opening a file for writing anywhere but under /tmp and the app's volumes (and
  /dev/null and its kin); with a relative path, a path with "..", or a path object (whose
  string could change between this check and the open); and new symbolic links, which could
  lead a later write out of /tmp;
- seal.heap: gc.get_objects / get_referrers / get_referents, which would reach the hook's
  own state.

How it stays shut against code that runs after the seal and can monkeypatch any module: the
hook reads nothing from module globals or builtins when it runs (every name it uses is a
closure variable bound here, to immutable data or to a C function), so patching `os`,
`builtins` or this module changes nothing it decides; str and bytes subclasses are reduced to
their real data; mutable sources (bytearray) and the heap walks that could reach the hook are
refused; audit hooks run with tracing off. Its helpers' cells, which a refusal's traceback
reaches (cell_contents), are checked after each decision against what they held at the seal
(seal.heap, then every watched event is refused).
"""

from __future__ import annotations

import os
import sys

from summon.runtime.seal_cells import closure_cells
from summon.runtime.seal_said import Said
from summon.runtime.seal_stdlib import stdlib_templates

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Report = Callable[[str, str, bool], None]
    Learn = Callable[[str, str], None]

RULE_CODE = "seal.code: no code from strings after the seal"
RULE_IMPORT = "seal.import: imports only from the image's own module folders"
RULE_CTYPES = "seal.ctypes: no foreign calls after the seal"
RULE_WRITE = "seal.write: writes only under /tmp and the app's volumes"
RULE_HEAP = "seal.heap: no walking the heap after the seal"
RULE_MEMORY = "seal.memory: no new executable memory after the seal"
# Also the seal filter's rule for execve (seal.py): said here, where the app's call is seen.
RULE_PROGRAM = "seal.program: no second program"

# Devices any app may write to: they store nothing and lead nowhere.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND
WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
WATCHED = frozenset(
    {
        "compile", "exec", "code.__new__", "marshal.loads", "marshal.load", "import", "open",
        "os.symlink", "object.__setattr__", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "os.exec", "os.posix_spawn", "cpython.PyInterpreterState_New",
        "sys.settrace", "sys.setprofile",
    }
)  # fmt: skip


def make_hook(
    *,
    roots: tuple[str, ...],
    writable: tuple[str, ...],
    enforce: bool,
    trusted_callers: frozenset[object],
    report: Report,
    known_code: frozenset[tuple[str, str]] = frozenset(),
    learn: Learn | None = None,
    dataclasses: Any = None,
    said: Any = None,
) -> Callable[[str, tuple[object, ...]], None]:
    """The audit hook of a sealed instance.

    roots: the image's module folders; writable: /tmp and the volumes; enforce: refuse (else
    only report); trusted_callers: code objects that may still make ctypes calls (the
    runtime's shutdown); report(what, rule, enforce) says a refusal as said (a Said: a
    quota per rule) lets it. known_code: (SHA-256 of the source's UTF-8, file name) of each
    compile the build's recording run saw after the seal: let through, and run by name.
    learn: the build's recording run only: what seal.code would refuse is let through and
    told to learn(sha256, file name) instead (the name alone, sha256 "", for an exec).
    """
    import io

    # Everything the hook touches, bound now. See the module docstring for why.
    _str, _bytes, _int, _list, _code = str, bytes, int, list, type(compile("", "", "exec"))
    # issubclass of the type, never isinstance: isinstance reads an object's __class__,
    # which a property of the app's can answer, running its code inside the hook.
    _memoryview, _type, _len, _issubclass = memoryview, type, len, issubclass
    _tuple_roots = tuple(_str(r).rstrip("/") for r in roots)
    _tuple_writable = tuple(_str(w).rstrip("/") for w in writable)
    # Each root's device: an image file read for its code must be on it, so a link inside the
    # image to /tmp or a volume cannot pass what the app wrote there as the image's.
    _root_devs = []
    for _root in _tuple_roots:
        try:
            # lstat: a root that is itself a link counts where the link is, not its target
            _root_devs.append((_root + "/", os.lstat(_root).st_dev))
        except OSError:
            pass  # a sys.path entry that is not there holds no file
    _tuple_root_devs = tuple(_root_devs)
    del _root_devs
    try:
        _workdir = _str(os.getcwd())  # "" when it is gone: a relative name then names nothing
    except OSError:
        _workdir = ""
    _fstat = os.fstat
    _devices = DEVICES
    _write_flags = WRITE_FLAGS
    _watched = WATCHED
    _permission_error, _exception = PermissionError, Exception
    _import_error = ImportError
    _os_error, _value_error = OSError, ValueError
    _getframe = sys._getframe
    _open = io.open
    # ast.parse, known by its file: no code can be made with that name after the seal, and
    # importing ast here would cost every sealed start ~1 ms.
    _stdlib = getattr(sys, "_stdlib_dir", None) or "/nonexistent"
    _ast_file = f"{_stdlib}/ast.py"
    # typing.ForwardRef compiles a string annotation in __init__ and evals it in _evaluate
    # (typing.get_type_hints, pydantic, msgspec, FastAPI): known by typing's file too.
    _typing_file = f"{_stdlib}/typing.py"
    # namedtuple's template, gettext's plural forms: their own code over text they checked
    _namedtuple_template, _plural_form = stdlib_templates(_stdlib)
    _collections_file = f"{_stdlib}/collections/__init__.py"
    # dataclasses compiles each class's __init__, __repr__, __eq__... from text made of its
    # field names: let through while an image module is being imported (its top level, or a
    # class body in it, applies @dataclass), so a module imported late (anyio's backend at a
    # FastAPI app's first sync endpoint) works; never for a dataclass made at run time.
    _dataclasses_file = f"{_stdlib}/dataclasses.py"
    # threading's invoke_excepthook: C's traceback parses each line shown for its carets
    _threading_file = f"{_stdlib}/threading.py"
    _frozen_import = "<frozen importlib._bootstrap"
    _compile, _only_ast = compile, 0x400  # the builtin; ast.PyCF_ONLY_AST
    # dataclasses' globals when the seal closed (the module, imported then): (dict, items).
    _dc = None if dataclasses is None else (vars(dataclasses), tuple(vars(dataclasses).items()))
    # Non-identifier characters to spaces: what is left splits into the annotation's words.
    # A str, not a dict: nothing the hook reads may be changed in place (see _cells below).
    _word_table = "".join(c if c.isalnum() or c == "_" else " " for c in map(chr, range(128)))
    _importlib = sys.modules.get("_frozen_importlib_external")
    _bytecode_code = getattr(getattr(_importlib, "_compile_bytecode", None), "__code__", None)
    _python_suffixes = (".py", ".pyc", ".pyw", ".so")
    # Jinja compiles a template file's code in Environment._compile, called by
    # Environment.compile with the template's text in its local `source_hint`.
    _jinja_file = "/jinja2/environment.py"
    _digits = "0123456789"
    _trusted = frozenset(trusted_callers)
    _known = frozenset((_str(d), _str(n)) for d, n in known_code)
    # Only an image with learned code (or the build's learning run) hashes what it compiles.
    _sha256: Any = None
    _ast_digest: Any = None
    if _known or learn is not None:
        from summon.runtime import seal_digest

        _sha256 = seal_digest.load_sha256()
        _ast_digest = seal_digest.make_ast_digest(_sha256)
    _known_names = frozenset(n for _d, n in _known)
    _learn, _enforce, _report = learn, bool(enforce), report
    _changed: Any = None  # (what, rule) once a change to the state was seen: for good
    _tell = (said or Said()).tell  # decides what is said, never what passes
    _rules = (RULE_CODE, RULE_IMPORT, RULE_CTYPES, RULE_WRITE, RULE_HEAP, RULE_PROGRAM)

    def _caller() -> Any:
        """The code that raised the event, or None when no Python frame did (native code in
        a thread of its own: a ValueError). None exempts nothing; the rules that do not ask
        who calls (an image file's source) still hold."""
        try:
            return _getframe(3).f_code  # 0 this, 1 _decide, 2 the hook, 3 the caller
        except _value_error:
            return None

    def _in_image(name: str) -> bool:
        """Whether a real str path names a file under the image's module folders."""
        if not name.startswith("/") or ".." in name.split("/"):
            return False
        for root in _tuple_roots:
            if name.startswith(root + "/"):
                return True
        return False

    def _image_content(name: str) -> bytes | None:
        """The bytes of the file `name` (a real str) if it is under an image module folder and
        on that folder's file system (checked on the open file: no race with a rename); a
        relative name is the working folder's when the seal closed (Jinja2Templates'
        "templates"), whatever os.chdir says since."""
        if not name.startswith("/"):
            name = _workdir + "/" + name
        if not name.startswith("/") or ".." in name.split("/"):
            return None
        for root, dev in _tuple_root_devs:
            if name.startswith(root):
                try:
                    with _open(name, "rb") as f:
                        if _fstat(f.fileno()).st_dev != dev:
                            return None
                        content: bytes = f.read()
                        return content
                except (_os_error, _value_error):
                    return None
        return None

    def _dataclass_at_import() -> bool:
        """Whether dataclasses makes code for a class an image module defines as it is
        imported: above the dataclasses frames, only image code up to a module's top level
        that the import system runs."""
        frame: Any
        try:
            frame = _getframe(3)  # 0 this, 1 _decide, 2 the hook, 3 what raised the event
        except _value_error:
            return False
        if frame.f_back is None or frame.f_code.co_filename != _dataclasses_file:
            return False
        # The text it compiles is made by dataclasses' functions (module globals): each must
        # be what it was at the seal, or a patched _field_assign writes the code.
        if _dc is None or frame.f_globals is not _dc[0] or _len(_dc[0]) != _len(_dc[1]):
            return False
        for key, value in _dc[1]:
            if _dc[0].get(key, _dc) is not value:
                return False
        while frame is not None and frame.f_code.co_filename == _dataclasses_file:
            frame = frame.f_back
        while frame is not None:
            code = frame.f_code
            if not _in_image(code.co_filename):
                return False
            if code.co_name == "<module>":
                back = frame.f_back
                return back is not None and back.f_code.co_filename.startswith(_frozen_import)
            frame = frame.f_back
        return False

    def _ast_only() -> bool:
        """Whether ast.parse asks the builtin compile for a tree: its flags local holds
        PyCF_ONLY_AST, and neither that global nor `compile` was changed (ast.PyCF_ONLY_AST
        = 0 after the seal had ast.parse return code, run with types.FunctionType)."""
        try:
            frame: Any = _getframe(3)  # 0 this, 1 _decide, 2 the hook, 3 ast.parse
        except _value_error:
            return False
        flags, only = frame.f_locals.get("flags"), frame.f_globals.get("PyCF_ONLY_AST")
        if _type(flags) is not _int or _type(only) is not _int or only != _only_ast:
            return False
        if frame.f_globals.get("compile", _dc) is not _dc:
            return False
        return bool(flags & _only_ast) and frame.f_builtins.get("compile") is _compile

    def _jinja_template(content: bytes) -> bool:
        """Whether Jinja compiles the template file whose content is given: the compile
        comes from Environment._compile, called by Environment.compile (both the image's
        Jinja) on exactly the file's text. Any other code under a template's name, a compile
        called straight, or the code of other template text, is not the file's."""
        frame: Any
        try:
            frame = _getframe(3)  # 0 this, 1 _decide, 2 the hook, 3 what called compile()
        except _value_error:
            return False
        code = frame.f_code
        if code.co_name != "_compile" or not code.co_filename.endswith(_jinja_file):
            return False
        if not _in_image(code.co_filename):
            return False
        outer = frame.f_back
        if outer is None or outer.f_code.co_name != "compile":
            return False
        if outer.f_code.co_filename != code.co_filename:
            return False
        hint: Any = outer.f_locals.get("source_hint")
        if _type(hint) is not _str:
            return False
        try:
            text = content.decode("utf-8")
        except _value_error:
            return False
        # FileSystemLoader reads the file in text mode: universal newlines.
        same: bool = text == hint or text.replace("\r\n", "\n").replace("\r", "\n") == hint
        return same

    def _makes_code(words: list[str]) -> bool:
        """Whether an annotation's words hold a lambda or a comprehension's `for`, also
        written after a number (`[1for x in y]` is a comprehension)."""
        for word in words:
            if word == "lambda" or word == "for":
                return True
            if word[:1] in _digits and ("for" in word or "lambda" in word):
                return True
        return False

    def _decide(event: str, args: tuple[Any, ...]) -> Any:
        """None to let the event through, else (what, the index of its rule)."""
        what = ""
        rule = -1
        if event == "open":
            path, _mode, flags = args
            if _type(flags) is not _int or not (flags & _write_flags):
                return
            if _type(path) is _int:
                return  # an fd the process holds already; no new file is opened
            if _issubclass(_type(path), _bytes):
                path = b"".join((path,)).decode("utf-8", "surrogateescape")
            elif _issubclass(_type(path), _str):
                path = "".join((path,))  # a str subclass's real data
            else:
                what, rule = "open for writing with a path object (pass a str)", 3
            if rule < 0:
                name = path
                if not name.startswith("/") or ".." in name.split("/"):
                    what, rule = f"open({name!r}) for writing", 3
                elif name in _devices:
                    return
                else:
                    for folder in _tuple_writable:
                        if name == folder or name.startswith(folder + "/"):
                            return
                    what, rule = f"open({name!r}) for writing", 3
        elif event == "compile":
            source, filename = args[0], args[1]
            caller = _caller()
            if caller is not None and caller.co_name == "parse" and caller.co_filename == _ast_file:
                if _ast_only():
                    return  # ast.parse: a tree, never code
            if caller is not None and caller.co_filename == _threading_file:
                if caller.co_name == "invoke_excepthook":
                    return "", 0  # refused, unsaid: the traceback shows, carets coarser
            if (
                caller is not None
                and caller.co_name == "__init__"
                and caller.co_filename == _typing_file
                and (_issubclass(_type(source), _bytes) or _issubclass(_type(source), _str))
            ):
                # A string annotation made a ForwardRef: an expression of names the app
                # already has. Nothing in it may compile to code of its own (a lambda, a
                # comprehension); a word "for" inside a literal is refused too, to be sure.
                if _issubclass(_type(source), _bytes):  # what compile() gives the event: UTF-8
                    annotation = b"".join((source,)).decode("utf-8", "replace")
                else:
                    annotation = "".join((source,))
                if not _makes_code(annotation.translate(_word_table).split()):
                    return
                what, rule = f"compile of the annotation {annotation[:80]!r} (it makes code)", 0
            elif _namedtuple_template(caller, source):
                return  # a namedtuple's __new__: a tuple of its fields, no other code
            elif _plural_form(caller):
                return  # gettext's function over the plural-forms expression it parsed
            elif (
                caller is not None
                and caller.co_name == "_create_fn"
                and caller.co_filename == _dataclasses_file
                and _dataclass_at_import()
            ):
                return  # @dataclass in a module the image imports, as it is imported
            else:
                if _issubclass(_type(filename), _bytes):
                    filename = b"".join((filename,)).decode("utf-8", "surrogateescape")
                name = "".join((filename,)) if _issubclass(_type(filename), _str) else ""
                content = None
                if _issubclass(_type(source), _bytes) or _issubclass(_type(source), _str):
                    content = _image_content(name)
                if content is not None:
                    data = b"".join((source,)) if _issubclass(_type(source), _bytes) else None
                    text = "".join((source,)) if data is None else None
                    try:
                        if data is not None and content == data:
                            return
                        if text is not None and content.decode("utf-8") == text:
                            return
                        if not name.endswith(_python_suffixes) and _jinja_template(content):
                            # A template the image ships: the code is what Jinja makes of
                            # that read-only file, named by its path. A template from a
                            # string ("<template>"), or other code under its name, is not.
                            return
                    except (_os_error, _value_error):
                        pass
                digest = None
                if _sha256 is None:
                    pass  # no code learned: nothing to look up
                elif _issubclass(_type(source), _bytes) or _issubclass(_type(source), _str):
                    if _issubclass(_type(source), _bytes):
                        data = b"".join((source,))
                    else:
                        data = "".join((source,)).encode("utf-8", "surrogatepass")
                    digest = _sha256(data).hexdigest()
                elif _ast_digest is not None:
                    digest = _ast_digest(source)  # None: not plain syntax tree data
                if digest is not None:
                    if (digest, name) in _known:
                        return  # code the build saw compiled, byte for byte, by this name
                    if _learn is not None:
                        try:
                            _learn(digest, name)
                        except _exception:
                            pass
                        return
                what, rule = f"compile of code from {name or 'a string'!r}", 0
        elif event == "exec":
            code = args[0]
            if _type(code) is _code:
                name = code.co_filename
                if name.startswith("<frozen "):
                    return
                caller = _caller()
                if (
                    caller is not None
                    and caller.co_name == "_evaluate"
                    and caller.co_filename == _typing_file
                    and name == "<string>"
                ):
                    # A ForwardRef's annotation, compiled under the rule above: an expression
                    # that made no code of its own (whatever its text looked like).
                    for const in code.co_consts:
                        if _type(const) is _code:
                            break
                    else:
                        return
                if (
                    name == "<string>"
                    and caller is not None
                    and caller.co_name == "namedtuple"
                    and caller.co_filename == _collections_file
                ):
                    return  # the template compiled under the rule above
                if name == "<string>" and _plural_form(caller):
                    return  # the function compiled under the rule above
                if (
                    name == "<string>"
                    and caller is not None
                    and caller.co_name == "_create_fn"
                    and caller.co_filename == _dataclasses_file
                    and _dataclass_at_import()
                ):
                    return  # a dataclass's methods, compiled under the rule above
                if _in_image(name):
                    return
                if not name.startswith("/") and _image_content(name) is not None:
                    return  # a relative name of an image file (as it compiles, above)
                if name in _known_names:
                    # Compiled under a name the build learned: by a known source after the
                    # seal (any other compile is refused), or by the app before it.
                    return
                if _learn is not None:
                    try:
                        _learn("", name)
                    except _exception:
                        pass
                    return
                what, rule = f"exec of code from {name!r}", 0
            else:
                what, rule = "exec of an object that is not code", 0
        elif event == "marshal.loads":
            data = args[0]
            try:
                frame = _getframe(2)  # 0 this, 1 the hook, 2 what raised the event
            except _value_error:
                frame = None  # no Python caller: native code, not the import system
            ok = False
            if frame is not None and frame.f_code is _bytecode_code and _bytecode_code is not None:
                if _type(data) is _memoryview and data.readonly and _type(data.obj) is _bytes:
                    data = data.tobytes()
                pyc: Any = frame.f_locals.get("bytecode_path")
                if _type(data) is _bytes and _type(pyc) is _str:
                    content = _image_content(pyc)
                    ok = content is not None and content[16:] == data
            if ok:
                return
            what, rule = "marshal.loads of code that is not an image .pyc", 0
        elif event == "marshal.load" or event == "code.__new__":
            what, rule = event, 0
        elif event == "object.__setattr__":
            if args[1] != "__code__":
                return
            what, rule = "setting a function's __code__", 0
        elif event == "import":
            module = args[0]
            paths = args[2]
            if module == "ctypes" or module == "_ctypes" or module.startswith("ctypes."):
                what, rule = f"import of {module!r}", 2
            elif paths is None:
                return
            elif _type(paths) is not _list:
                what, rule = f"import of {args[0]!r} with a sys.path that is not a list", 1
            else:
                for entry in paths:
                    if _issubclass(_type(entry), _bytes):
                        entry = b"".join((entry,)).decode("utf-8", "surrogateescape")
                    elif _issubclass(_type(entry), _str):
                        entry = "".join((entry,))
                    else:
                        continue  # the path finder skips what is neither str nor bytes
                    inside = entry.startswith("/") and ".." not in entry.split("/")
                    if inside:
                        inside = False
                        for root in _tuple_roots:
                            if entry == root or entry.startswith(root + "/"):
                                inside = True
                                break
                    if not inside:
                        what, rule = f"import of {args[0]!r} with {entry!r} on sys.path", 1
                        break
                else:
                    return
        elif event == "os.symlink":
            what, rule = "os.symlink() (a new link could lead a later write out of /tmp)", 3
        elif event.startswith("gc."):
            what, rule = f"{event}()", 4
        elif event == "sys.settrace" or event == "sys.setprofile":
            # A trace function rewrites the locals of running frames (f_locals), those of
            # the code the rules above let compile (ast.parse's flags, Jinja's source).
            # (The event has no arguments: turning it off is refused too.)
            what, rule = f"{event}() (it rewrites running code's locals)", 0
        elif event == "cpython.PyInterpreterState_New":
            # A sub-interpreter (_xxsubinterpreters, _testcapi.run_in_subinterp) has audit
            # hooks of its own, none: code from strings would run there unseen.
            what, rule = "a new interpreter (no seal sees the code it runs)", 0
        elif event in ("os.exec", "os.posix_spawn"):
            # The seal's filter answers EPERM before the sandbox's gate could say a word.
            what, rule = f"{event}() of {args[0]!r}", 5
        else:  # ctypes.*
            caller = _caller()
            for code in _trusted:
                if code is caller:  # identity: code objects compare equal by content
                    return
            what, rule = f"a ctypes call ({event})", 2
        return what, rule

    # The helpers are closures, and a closure's cells can be written (cell_contents): code
    # after the seal reaches them from the hook's frame, which the traceback of any refusal
    # holds (frame.f_locals names _makes_code, _image_content...). So every cell the hook's
    # decision reads, through _decide and each function in its reach, is checked after
    # each decision against what it held when the seal closed; the values are immutable.
    _cells = tuple(closure_cells(_decide))

    def sealed_audit_hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal _changed
        if event not in _watched and not event.startswith("ctypes."):
            return
        # For good once seen: a thread undoing its change around another's decision is seen.
        verdict = _changed or _decide(event, args)
        for cell, value in _cells:
            try:
                same = cell.cell_contents is value
            except _value_error:  # emptied
                same = False
            if not same:
                verdict = _changed = ("a change to the seal's own state", 4)
                break
        if verdict is None:
            return
        what, rule = verdict
        text = _rules[rule]
        try:
            line = _tell(what, text) if what else None
            _ = line is None or _report(line, text, _enforce)
        except _exception:
            pass  # a line is not worth letting the operation through
        if _enforce:
            message = f"{what} refused by the seal ({text})"
            if rule == 2 and what[:10] == "import of ":
                # An ImportError: a library that tries ctypes and does without it (numpy,
                # imported in a handler after the seal) goes on, as where ctypes is missing.
                raise _import_error(message, name=what[11:-1])
            raise _permission_error(1, message)

    return sealed_audit_hook
