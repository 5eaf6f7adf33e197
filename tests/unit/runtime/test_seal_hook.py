"""The seal's audit hook: what it refuses, what it lets through, and that patching cannot open it.

An audit hook cannot be removed once added, so each case runs in a child interpreter that
installs the hook (roots: its own stdlib and a folder standing for the image's /app; writable:
a folder standing for /tmp) and then tries everything, printing one JSON object.
"""

from __future__ import annotations

import dis
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from summon.runtime import seal_hook

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import builtins, collections, ctypes, dataclasses, gc, gettext, io, json, marshal, os, pathlib
import sys, typing
app, tmp, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:] = [p for p in sys.path if p]  # -c put the working folder first; images do not
sys.path.insert(0, app)
from summon.runtime import seal_hook
said = []
os.chdir(app)  # the working folder when the seal closes: the image's /app
roots = tuple(p for p in sys.path if p.startswith("/") and not p.startswith(tmp))
hook = seal_hook.make_hook(roots=roots, writable=(tmp,), enforce=(mode == "on"),
                           trusted_callers=frozenset(), dataclasses=dataclasses,
                           report=lambda what, rule, enforce: said.append([what, rule]))
libc = ctypes.CDLL(None)
getpid = libc.getpid
with open(os.path.join(app, "imagemod.py")) as f:
    image_source = f.read()
dumped = marshal.dumps(compile("1", "y", "eval"))
page = os.path.join(app, "templates", "page.html")
with open(page) as f:
    page_text = f.read()
from jinja2.environment import Environment  # the stand-in of the image's Jinja (below)
comprehension = compile("[x for x in ()]", "<string>", "eval")  # made before the seal
relative_missing = compile("1", "templates/gone.html", "exec")  # named after no image file
relative_early = compile("1", "templates/page.html", "exec")

POLISH = "(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2)"

def plural_patched():
    # gettext's parser patched after the seal: c2py would exec what it returns
    parse = gettext._parse
    gettext._parse = lambda tokens, priority=-1: ("(lambda: os.system('true'))()", "")
    try:
        return gettext.c2py("n != 1")
    finally:
        gettext._parse = parse

def c2py(plural):  # gettext's function, not gettext's code
    ns = {}
    exec("def func(n):\n    return int(%s)" % plural, ns)
    return ns["func"]

def relative_after_chdir():
    # Jinja2Templates(directory="templates") in /tmp after an os.chdir: its file is not the
    # image's (the name is the working folder's when the seal closed)
    os.chdir(tmp)
    try:
        with open("templates/page.html") as f:
            return Environment().compile(f.read(), "page.html", "templates/page.html")
    finally:
        os.chdir(app)
import pickle
class Compiled:  # pickle's reduce to compile(), then to exec() of what it made
    def __reduce__(self):
        return (compile, ("import os", page, "exec"))
class Executed:
    def __reduce__(self):
        return (exec, (Compiled(),))
template_pickle = pickle.dumps(Executed())
from summon.runtime import init as runtime_init
import failing
sys.addaudithook(hook)

def namedtuple(typename, fields):
    # the template, but not collections' own function: refused as any other string
    return eval(f"lambda _cls, {fields}: _tuple_new(_cls, ({fields}))", {"_tuple_new": tuple})

def reimport(name):
    sys.modules.pop(name, None)
    return __import__(name)

def traceback_printed():
    # The runtime prints what the app raised: the printer parses the failing line's parts
    # to draw its ^^^ markers, which must not read as a refused compile of the app's file.
    try:
        failing.fail()
    except ValueError as e:
        before = len(said)
        runtime_init.report(e)
        if len(said) > before:
            raise PermissionError(f"said {said[before:]}")

def native(fn, *args):
    # fn called with no Python frame on the thread's stack at all, as a Rust or C
    # extension's worker thread calls compile or exec (pyo3's, Robyn's); what it raises
    # reaches sys.unraisablehook, and is raised again here.
    # Only C callables run on it: the call, then the lock's release (or, when the call
    # raised, the unraisable hook's).
    import _thread, collections, functools, operator
    raised, done = [], _thread.allocate_lock()
    done.acquire()
    sys.unraisablehook = lambda u: (raised.append(u.exc_value), done.release())
    steps = map(operator.call, [functools.partial(fn, *args), done.release])
    _thread.start_new_thread(collections.deque(maxlen=0).extend, (steps,))
    assert done.acquire(timeout=10)
    if raised:
        raise raised[0]

class Sly(str):
    def startswith(self, *args): return True
    def __eq__(self, other): return True
    __hash__ = str.__hash__

class SlyPath:
    def __init__(self): self.calls = 0
    def __fspath__(self):
        self.calls += 1
        return tmp + "/x" if self.calls == 1 else "/etc/summon-x"

def relink(): (lambda: 0).__code__ = (lambda: 1).__code__

def rebind():
    f = lambda: 0
    f.__code__ = (lambda: 1).__code__

def ctypes_optional():  # numpy's _internal and ctypeslib, imported in a handler after the seal
    try:
        import ctypes as found
    except ImportError:
        found = None
    assert found is None, found

def dataclass_patched():
    # The text of a dataclass's methods is made by dataclasses' functions: one patched after
    # the seal would write code into an image module's class as it is imported.
    original = dataclasses._field_assign
    dataclasses._field_assign = lambda *a: "__import__('os').getpid(); " + original(*a)
    try:
        return reimport("dcmod").P(1)
    finally:
        dataclasses._field_assign = original

class Peek:
    runs = 0
    @property
    def __class__(self):  # isinstance() reads it (importlib's too): counted in the hook only
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name in ("sealed_audit_hook", "_decide"):
                Peek.runs += 1
            frame = frame.f_back
        return str

def peeked():
    sys.path.append(Peek())  # the hook reads sys.path at each import
    try:
        __import__("summon_no_such_module")
    except Exception:  # the path finder fails on it too, after the hook
        pass
    finally:
        sys.path.pop()
    if Peek.runs:
        raise RuntimeError(f"the app's __class__ ran {Peek.runs} time(s) inside the hook")

def ast_patched():
    import ast
    ast.PyCF_ONLY_AST = 0
    try:
        return ast.parse("import os")
    finally:
        ast.PyCF_ONLY_AST = 0x400

def patched_then(action):
    # Code running after the seal may patch any module: the hook must not care.
    def run():
        builtins.isinstance = lambda *a: True
        os.path.abspath = lambda p: tmp + "/x"
        seal_hook.WATCHED = frozenset()
        seal_hook.WRITE_FLAGS = 0
        try:
            return action()
        finally:
            builtins.isinstance = isinstance_
    return run

def evaluate_as_annotation(code):
    ref = typing.ForwardRef("int")
    ref.__forward_code__ = code  # an attribute anyone may set
    return ref._evaluate({}, {}, frozenset())

def annotated(x: "list[int]", y: "typing.Optional[Sly]" = None) -> "dict[str, int]": ...

isinstance_ = isinstance
attempts = {
    "exec_string": lambda: exec("1+1"),
    "eval_string": lambda: eval("1+1"),
    "compile_string": lambda: compile("1", "x", "exec"),
    "compile_as_image_file": lambda: compile("import os\n", app + "/imagemod.py", "exec"),
    "compile_image_file": lambda: compile(image_source, app + "/imagemod.py", "exec") and None,
    "compile_sly_bytes": lambda: compile(Sly("1"), app + "/imagemod.py", "exec"),
    # Any code under a template file's name, called straight or through pickle: not the
    # code Jinja makes of that file
    "compile_template": lambda: compile("x = 1", page, "exec"),
    "template_pickle": lambda: pickle.loads(template_pickle),
    "jinja_template": lambda: Environment().compile(page_text, "page.html", page) and None,
    "jinja_other_text": lambda: Environment().compile("{{ evil }}", "page.html", page),
    "jinja_compile_straight": lambda: Environment()._compile("x = 1", page),
    # Jinja2Templates(directory="templates"): names relative to the working folder
    "jinja_template_relative": lambda: exec(
        Environment().compile(page_text, "page.html", "templates/page.html"), {}),
    "jinja_relative_other_text": lambda: Environment().compile(
        "{{ evil }}", "page.html", "templates/page.html"),
    "jinja_relative_after_chdir": relative_after_chdir,
    "exec_relative_missing": lambda: exec(relative_missing, {}),
    # a catalog's Plural-Forms, loaded after the seal (Django, at a language's first request)
    "gettext_plural": lambda: [gettext.c2py(POLISH)(k) for k in (1, 3, 5)] == [0, 1, 2] or 1 / 0,
    "gettext_plural_patched": plural_patched,
    "gettext_lookalike": lambda: c2py("n != 1"),
    "exec_relative_image_file": lambda: exec(relative_early, {}),
    "compile_missing_template": lambda: compile("x = 1", app + "/templates/gone.html", "exec"),
    "compile_template_in_tmp": lambda: compile("x = 1", tmp + "/page.html", "exec"),
    "compile_template_string": lambda: compile("x = 1", "<template>", "exec"),
    "native_compile_image_file": lambda: native(compile, image_source, app + "/imagemod.py",
                                                "exec"),
    "native_compile_string": lambda: native(compile, "1", "x", "exec"),
    "native_exec_string": lambda: native(exec, "2+2", {}),
    "native_marshal_loads": lambda: native(marshal.loads, dumped),
    "traceback_printed": traceback_printed,
    # collections.namedtuple's template, which modules imported after the seal make
    "namedtuple": lambda: collections.namedtuple("P", "x y")(1, 2) == (1, 2) or 1 / 0,
    "namedtuple_one_field": lambda: collections.namedtuple("Q", ["only"])(3).only == 3 or 1 / 0,
    "namedtuple_no_fields": lambda: collections.namedtuple("E", [])() == () or 1 / 0,
    "namedtuple_renamed": lambda: collections.namedtuple("R", ["ok", "def"], rename=True)(1, 2),
    "typing_namedtuple": lambda: typing.NamedTuple("T", [("a", int)])(a=1),
    "import_tokenize": lambda: reimport("tokenize"),
    "namedtuple_lookalike": lambda: namedtuple("P", "x, y"),
    # @dataclass in an image module imported after the seal (anyio's backend, imported at a
    # FastAPI app's first sync endpoint), also in a class body there; never at run time
    "dataclass_at_import": lambda: reimport("dcmod").Outer.Inner(reimport("dcmod").P(1).x),
    "dataclass_at_run_time": lambda: __import__("dataclasses").make_dataclass("Q", ["a"]),
    "dataclass_crafted": lambda: __import__("dataclasses").dataclass(
        type("C", (), {"__annotations__": {"a=print('owned') or 1": int}})
    ),
    "literal_eval": lambda: __import__("ast").literal_eval("[1, 2]"),
    # String annotations (from __future__ import annotations, pydantic, msgspec, FastAPI):
    # typing compiles and evaluates them, an expression over names the app has.
    "type_hints": lambda: typing.get_type_hints(annotated, localns={"Sly": Sly}),
    "forward_ref_lambda": lambda: typing.ForwardRef("(lambda: os)()"),
    "forward_ref_comprehension": lambda: typing.ForwardRef("[x for x in (os,)]"),
    "forward_ref_number_for": lambda: typing.ForwardRef("[1for x in (os,)]"),
    "forward_ref_made_code": lambda: evaluate_as_annotation(comprehension),
    "forward_ref_code_in_eval": lambda: eval(typing.ForwardRef("int").__forward_code__),
    "import_image_source": lambda: __import__("imagemod").VALUE,
    "import_outside": lambda: (sys.path.insert(0, tmp), __import__("outsidemod")),
    "marshal_loads": lambda: marshal.loads(marshal.dumps(compile("1", "y", "eval"))),
    "code_replace": lambda: (lambda: 0).__code__.replace(co_name="z"),
    # a sub-interpreter has no audit hook of its own: its code would run unseen
    "subinterpreter": lambda: __import__("_xxsubinterpreters").run_string(
        __import__("_xxsubinterpreters").create(), "import os"),
    "set_code": rebind,
    "ctypes_call_prepared": lambda: getpid(),
    "ctypes_new_function": lambda: libc.getppid(),
    "ctypes_dlopen": lambda: ctypes.CDLL("libc.so.6"),
    "ctypes_import": lambda: (sys.modules.pop("ctypes"), __import__("ctypes")),
    "ctypes_optional": ctypes_optional,
    "write_tmp": lambda: open(tmp + "/ok", "w").close(),
    "write_tmp_pathlib": lambda: pathlib.Path(tmp, "ok2").write_text("x") and None,
    "write_outside": lambda: open("/etc/summon-x", "w"),
    "write_relative": lambda: open("x", "w"),
    "write_dotdot": lambda: open(tmp + "/../etc/summon-x", "w"),
    "write_sly": lambda: open(Sly("/etc/summon-x"), "w"),
    "os_open_path_object": lambda: os.open(SlyPath(), os.O_WRONLY | os.O_CREAT),
    "write_dev_null": lambda: open("/dev/null", "w").close(),
    "read_outside": lambda: open("/etc/hostname").close(),
    "symlink": lambda: os.symlink("/etc", tmp + "/link"),
    # The seal's filter refuses them in an image, silently, before the gate could say a
    # word. (No such program: let through, as in audit mode, they fail harmlessly.)
    "execv": lambda: os.execv("/nonexistent/summon-program", ["x"]),
    "posix_spawn": lambda: os.posix_spawn("/nonexistent/summon-program", ["x"], {}),
    "gc_objects": lambda: len(gc.get_objects()),
    "gc_referrers": lambda: gc.get_referrers(hook),
    "patched_exec": patched_then(lambda: exec("1+1")),
    "patched_write": patched_then(lambda: open("/etc/summon-x", "w")),
    "dataclass_patched": dataclass_patched,
    # ast.parse with its flag patched compiled code, exempt as "a tree"
    "ast_parse_patched": lambda: ast_patched(),
    "settrace": lambda: sys.settrace(lambda *a: None),
    "no_app_code_in_the_hook": peeked,
    "setprofile": lambda: sys.setprofile(lambda *a: None),
}
results = {}
for name, action in attempts.items():
    if name == "ctypes_optional":
        sys.modules.pop("ctypes", None)
    if name == "import_outside":
        with open(tmp + "/outsidemod.py", "w") as f:
            f.write("X = 1\n")
    try:
        action()
        results[name] = "ok"
    except PermissionError as e:
        results[name] = "refused: " + str(e)
    except ImportError as e:  # a refused import of ctypes: what a missing one raises
        said_so = "refused by the seal" in str(e)
        results[name] = ("refused: ImportError " if said_so else "ImportError: ") + str(e)
    except Exception as e:
        results[name] = type(e).__name__ + ": " + str(e)
    finally:
        if name == "import_outside" and tmp in sys.path:
            sys.path.remove(tmp)
print(json.dumps({"results": results, "said": said}))
"""

# Jinja's compile path, as jinja2/environment.py has it (3.1): compile() keeps the template's
# text in source_hint, makes Python source of it, and hands that to _compile().
JINJA = """
class Environment:
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        source_hint = None
        if isinstance(source, str):
            source_hint = source
            source = f"RENDERED = {source!r}"  # _parse and _generate
        if filename is None:
            filename = "<template>"
        return self._compile(source, filename)

    def _compile(self, source, filename):
        return compile(source, filename, "exec")
"""

REFUSED = {
    "exec_string": "seal.code",
    "eval_string": "seal.code",
    "compile_string": "seal.code",
    "compile_as_image_file": "seal.code",  # the file's name, not its content
    "compile_sly_bytes": "seal.code",
    # Templates: only a file the image ships names generated code (Jinja's from_string is
    # "<template>"); one in a writable folder, or one that is not there, is refused.
    "compile_template": "seal.code",
    "template_pickle": "seal.code",
    "jinja_other_text": "seal.code",
    "jinja_compile_straight": "seal.code",
    "compile_missing_template": "seal.code",
    "compile_template_in_tmp": "seal.code",
    "compile_template_string": "seal.code",
    "jinja_relative_other_text": "seal.code",
    "jinja_relative_after_chdir": "seal.code",
    "exec_relative_missing": "seal.code",
    "gettext_plural_patched": "seal.code",
    "gettext_lookalike": "seal.code",
    # A ForwardRef's expression may not make code of its own; its code runs only in typing.
    "forward_ref_lambda": "seal.code",
    "forward_ref_comprehension": "seal.code",
    "forward_ref_code_in_eval": "seal.code",
    # `1for` is a comprehension too; and whatever the text, the code typing evaluates may
    # hold no code of its own (its __forward_code__ can be set to any code object).
    "forward_ref_number_for": "seal.code",
    "forward_ref_made_code": "seal.code",
    # With no Python caller (a native thread's compile): no caller-based exemption applies,
    # and the refusal is the rule's, never a crash of the hook (Robyn's workers).
    "native_compile_string": "seal.code",
    "native_exec_string": "seal.code",
    "native_marshal_loads": "seal.code",
    "namedtuple_lookalike": "seal.code",  # the same template from other code
    "dataclass_at_run_time": "seal.code",
    "dataclass_crafted": "seal.code",  # a "field" that is code: never compiled
    "import_outside": "seal.import",
    "marshal_loads": "seal.code",
    "code_replace": "seal.code",
    "set_code": "seal.code",
    "ctypes_new_function": "seal.ctypes",
    "ctypes_dlopen": "seal.ctypes",
    "ctypes_import": "seal.ctypes",
    "write_outside": "seal.write",
    "write_relative": "seal.write",
    "write_dotdot": "seal.write",
    "write_sly": "seal.write",
    "symlink": "seal.write",
    "execv": "seal.program: no second program",
    "posix_spawn": "seal.program: no second program",
    "gc_objects": "seal.heap",
    "gc_referrers": "seal.heap",
    "patched_exec": "seal.code",
    "patched_write": "seal.write",
    "dataclass_patched": "seal.code",
    "ast_parse_patched": "seal.code",
    "settrace": "seal.code",
    "setprofile": "seal.code",
}
ALLOWED = (
    "compile_image_file", "jinja_template", "native_compile_image_file", "literal_eval",
    "jinja_template_relative", "exec_relative_image_file", "gettext_plural",
    "traceback_printed", "namedtuple", "namedtuple_one_field", "namedtuple_no_fields",
    "namedtuple_renamed", "typing_namedtuple", "import_tokenize", "dataclass_at_import",
    "type_hints",
    "import_image_source", "write_tmp",
    "write_tmp_pathlib", "write_dev_null", "read_outside",
    # Python 3.11 raises no audit event for a call through a function pointer made before
    # the seal (3.12 raises ctypes.call_function, which the hook refuses): docs/sealing.md.
    "ctypes_call_prepared",
    # A library that does without ctypes where it cannot import it goes on: the refused import
    # raises ImportError (still said once on the console, rule seal.ctypes).
    "ctypes_optional",
    # os.open calls __fspath__ once, before the event: the hook sees the path the kernel gets
    # (SlyPath names the scratch folder then, /etc only on a second call that never comes).
    "os_open_path_object",
    # No app code runs while the hook decides (an object's __class__ could change what it
    # reads, then put it back): it asks types, never isinstance.
    "no_app_code_in_the_hook",
)  # fmt: skip


def _child(tmp_path: Path, mode: str) -> dict[str, Any]:
    app = tmp_path / "app"
    scratch = tmp_path / "tmp"
    app.mkdir()
    scratch.mkdir()
    # No .pyc can be written beside it: the import compiles the image file's own source.
    (app / "imagemod.py").write_text("VALUE = 'from the image'\n")
    (app / "failing.py").write_text("def fail():\n    return {'a': 1}['a'] + int('zz')\n")
    (app / "dcmod.py").write_text(
        "from dataclasses import dataclass, field\n\n@dataclass\nclass P:\n    x: int\n"
        "    y: list = field(default_factory=list)\n\nclass Outer:\n    @dataclass(frozen=True)\n"
        "    class Inner:\n        z: int = 0\n"
    )
    (app / "templates").mkdir()
    (app / "templates" / "page.html").write_text("<p>{{ name }}</p>\n")
    (app / "jinja2").mkdir()
    (app / "jinja2" / "__init__.py").write_text("")
    (app / "jinja2" / "environment.py").write_text(JINJA)
    (scratch / "page.html").write_text("<p>{{ name }}</p>\n")
    (scratch / "templates").mkdir()
    (scratch / "templates" / "page.html").write_text("{{ evil }}\n")
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD, str(app), str(scratch), mode],
        env={"PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return doc


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _child(tmp_path_factory.mktemp("on"), "on")


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _child(tmp_path_factory.mktemp("audit"), "audit")


@pytest.mark.parametrize("attempt", sorted(REFUSED))
def test_refused_with_its_rule(enforced: dict[str, Any], attempt: str) -> None:
    got = enforced["results"][attempt]
    assert got.startswith("refused: "), f"{attempt}: {got}"
    assert REFUSED[attempt] in got, got


def test_a_refused_ctypes_import_is_an_import_error(enforced: dict[str, Any]) -> None:
    """Rule seal.ctypes: `import ctypes` after the seal raises ImportError, as where ctypes is
    missing, so numpy imported in a handler does without it rather than failing."""
    got = enforced["results"]["ctypes_import"]
    assert got.startswith("refused: ImportError import of 'ctypes' refused by the seal"), got
    assert "seal.ctypes" in got, got


@pytest.mark.parametrize("attempt", ALLOWED)
def test_allowed_after_the_seal(enforced: dict[str, Any], attempt: str) -> None:
    assert enforced["results"][attempt] == "ok", enforced["results"][attempt]


def test_a_sub_interpreter_is_refused_by_the_code_rule(enforced: dict[str, Any]) -> None:
    """Audit hooks are per interpreter: a new one would run code that no hook sees. Its
    creation is refused with seal.code (which _xxsubinterpreters reports as its own error)."""
    assert enforced["results"]["subinterpreter"].startswith("RuntimeError"), enforced["results"]
    said = [rule for what, rule in enforced["said"] if what.startswith("a new interpreter")]
    assert said and said[0].startswith("seal.code"), enforced["said"]


def test_each_refusal_is_reported_once(enforced: dict[str, Any]) -> None:
    whats = [what for what, _rule in enforced["said"]]
    assert len(whats) == len(set(whats)), whats
    # exec("1+1") and eval("1+1") and the patched exec are the same refusal.
    assert sum(what == "compile of code from '<string>'" for what in whats) == 1


def test_audit_mode_refuses_nothing_and_reports_what_it_would(audited: dict[str, Any]) -> None:
    results = audited["results"]
    assert not [name for name, got in results.items() if got.startswith("refused")], results
    rules = {rule.partition(":")[0] for _what, rule in audited["said"]}
    assert rules == {
        "seal.code", "seal.import", "seal.ctypes", "seal.write", "seal.heap", "seal.program"
    }  # fmt: skip


LINKED_CHILD = r"""
import json, sys
app, scratch = sys.argv[1], sys.argv[2]
sys.path[:] = [p for p in sys.path if p]
sys.path.insert(0, app)
from summon.runtime import seal_hook
said = []
roots = tuple(p for p in sys.path if p.startswith("/"))
sys.addaudithook(seal_hook.make_hook(roots=roots, writable=(scratch,), enforce=True,
                 trusted_callers=frozenset(), report=lambda w, r, e: said.append(r)))
with open(scratch + "/late.py", "w") as f:  # written after the seal, where writes may go
    f.write("X = 'new code'\n")
results = {}
for module in ("linked.late", "mod_link", "realmod"):
    try:
        __import__(module)
        results[module] = "ok"
    except PermissionError as e:
        results[module] = "refused: " + str(e)
print(json.dumps(results))
"""


def test_a_link_from_the_image_into_a_writable_tmpfs_is_not_the_image(tmp_path: Path) -> None:
    """Rule seal.code: an image file is under a module folder and on its file system. A link
    in the image (a relative one stays inside the root, so the layer rules let it be) into
    /tmp would otherwise pass code the app wrote there after the seal as an image file."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no /dev/shm on a file system of its own to stand for the tmpfs /tmp")
    app = tmp_path / "app"
    app.mkdir()
    (app / "realmod.py").write_text("X = 'the image'\n")
    scratch = Path(tempfile.mkdtemp(dir=shm, prefix="summon-seal-"))
    try:
        (app / "linked").symlink_to(scratch)  # a folder of the image that leads to /tmp
        (app / "mod_link.py").symlink_to(scratch / "late.py")  # a file, likewise
        result = subprocess.run(
            [sys.executable, "-S", "-B", "-c", LINKED_CHILD, str(app), str(scratch)],
            env={"PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.splitlines()[-1])
    for module in ("linked.late", "mod_link"):
        assert results[module].startswith("refused: "), results
        assert "seal.code: no code from strings after the seal" in results[module]
    assert results["realmod"] == "ok"  # the control: a file of the image itself


def test_the_program_rule_is_the_seal_filters() -> None:
    from summon.runtime import seal

    assert seal_hook.RULE_PROGRAM == seal.RULE_PROGRAM


def test_the_hook_looks_nothing_up_in_globals_or_builtins() -> None:
    """Every name it uses is bound when it is made: patching a module cannot reach it."""
    hook = seal_hook.make_hook(
        roots=("/usr/lib/python3.11",),
        writable=("/tmp",),
        enforce=True,
        trusted_callers=frozenset(),
        report=lambda what, rule, enforce: None,
    )
    lookups = [i.argval for i in dis.get_instructions(hook) if i.opname.startswith("LOAD_GLOBAL")]
    assert lookups == []
    assert not [i for i in dis.get_instructions(hook) if i.opname == "LOAD_NAME"]


def test_the_seal_modules_are_stdlib_only_and_light() -> None:
    """Every sealing image imports them: no typing, no dataclasses, no ctypes before the seal."""
    code = (
        "import sys; before = set(sys.modules)\n"
        "import summon.runtime.seal, summon.runtime.seal_hook\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC)},
    )
    new = set(result.stdout.split())
    assert {m for m in new if m.startswith("summon")} <= {
        "summon", "summon.runtime", "summon.runtime.seal", "summon.runtime.seal_hook",
        "summon.runtime.seal_said", "summon.runtime.seal_cells", "summon.runtime.seal_stdlib",
    }  # fmt: skip
    heavy = {"typing", "dataclasses", "inspect", "enum", "ctypes", "ast", "json", "re"}
    assert not heavy & new, sorted(heavy & new)
    assert all(m.split(".")[0] in sys.stdlib_module_names or m.startswith("summon") for m in new)
