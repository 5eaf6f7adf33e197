"""Code the build saw: the seal lets through exactly the sources its recording run learned.

A hook cannot be removed once added, so each case runs in a child interpreter that installs
the seal's hook with a few known (SHA-256, file name) pairs, the way app.json "seal"/"code"
gives them, and tries compiles and execs around them, printing one JSON object. A learning
hook (the build's recording run) lets what seal.code would refuse through and tells it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"
ROUTER = "def find(path):\n    return {'/': 'index', '/items': 'items'}.get(path)\n"
NAMED = "def handler():\n    return 'named'\n"

CHILD = r"""
import ast, json, os, sys
mode, tmp, known = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ROUTER, NAMED = sys.argv[4], sys.argv[5]
from summon.runtime import seal_hook
said, learned = [], []

def optimized(source):
    # what sanic-routing does: parse its own source, rewrite the tree, compile the tree
    tree = ast.parse(source)
    tree.body[0].name = "find_route"
    return ast.fix_missing_locations(tree)

before_seal = compile(NAMED, "handler", "exec")
other_before = compile(NAMED, "elsewhere", "exec")
hook = seal_hook.make_hook(
    roots=(os.path.dirname(os.__file__),), writable=(tmp,), enforce=True,
    trusted_callers=frozenset(),
    report=lambda what, rule, enforce: said.append([what, rule]),
    known_code=frozenset(tuple(pair) for pair in known),
    learn=(lambda digest, name: learned.append([digest, name])) if mode == "learn" else None,
)
sys.addaudithook(hook)

class Sly(str):
    pass

def run(code):
    ns = {}
    exec(code, ns)
    return ns

def tree_with(value):
    tree = optimized(ROUTER)
    tree.body[0].body[0].value.func.value.values[0].value = value
    return tree

def patched_class():
    # The tree is the known one, and a property answers the seal's walk with its values,
    # read by read, then answers compile() with others.
    tree = optimized(ROUTER)
    honest = [sum(isinstance(n, ast.Constant) for n in ast.walk(tree))]

    def sly(node):
        honest[0] -= 1
        return node.__dict__["value"] if honest[0] >= 0 else "/admin"

    ast.Constant.value = property(sly)
    try:
        return compile(tree, "", "exec")
    finally:
        del ast.Constant.value

attempts = {
    "known_source": lambda: run(compile(ROUTER, "", "exec"))["find"]("/items") == "items",
    "known_source_as_bytes": lambda: compile(ROUTER.encode(), "", "exec") and True,
    "known_source_by_exec": lambda: exec(ROUTER, {}) or True,
    "known_tree": lambda: run(compile(optimized(ROUTER), "", "exec"))["find_route"]("/"),
    "other_source_same_name": lambda: compile(ROUTER + "x = 1\n", "", "exec"),
    "known_source_other_name": lambda: compile(ROUTER, "router.py", "exec"),
    "other_tree": lambda: compile(tree_with("/admin"), "", "exec"),
    "tree_with_a_str_subclass": lambda: compile(tree_with(Sly("/")), "", "exec"),
    "tree_of_a_patched_class": patched_class,
    "string_named_after_exec_only": lambda: compile(NAMED, "handler", "exec"),
    "exec_before_seal_code_learned_name": lambda: run(before_seal)["handler"]() == "named",
    "exec_before_seal_code_other_name": lambda: run(other_before),
    "write_outside_tmp": lambda: open("/etc/summon-learned-test", "w"),
}
results = {}
for name, action in attempts.items():
    try:
        got = action()
        results[name] = "ok" if got not in (None, False) else f"returned {got!r}"
    except PermissionError as e:
        results[name] = f"refused: {e}"
    except Exception as e:
        results[name] = f"error: {type(e).__name__}: {e}"
print(json.dumps({"results": results, "said": said, "learned": learned}))
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tree_digest(source: str) -> str:
    """The digest the hook gives the sanic-like optimized tree of source (computed here the
    hook's way, in this process: the child must agree)."""
    from summon.runtime import seal_digest

    tree = ast.parse(source)
    tree.body[0].name = "find_route"  # type: ignore[attr-defined]
    ast.fix_missing_locations(tree)
    digest = seal_digest.make_ast_digest(hashlib.sha256)(tree)
    assert digest is not None
    return digest


def _child(tmp_path: Path, mode: str, known: list[list[str]]) -> dict[str, Any]:
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-B",
            "-c",
            CHILD,
            mode,
            str(scratch),
            json.dumps(known),
            ROUTER,
            NAMED,
        ],
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
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    known = [[_sha(ROUTER), ""], [_sha(ROUTER), "<string>"], [_tree_digest(ROUTER), ""]]
    known.append(["", "handler"])
    return _child(tmp_path_factory.mktemp("known"), "enforce", known)


@pytest.fixture(scope="module")
def learning(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _child(tmp_path_factory.mktemp("learn"), "learn", [])


ALLOWED = (
    "known_source",
    "known_source_as_bytes",
    "known_source_by_exec",
    "known_tree",
    "exec_before_seal_code_learned_name",
)
REFUSED = (
    "other_source_same_name",
    "known_source_other_name",
    "other_tree",
    "tree_with_a_str_subclass",
    "tree_of_a_patched_class",
    "string_named_after_exec_only",
    "exec_before_seal_code_other_name",
)


@pytest.mark.parametrize("attempt", ALLOWED)
def test_code_the_build_saw_runs_sealed(sealed: dict[str, Any], attempt: str) -> None:
    assert sealed["results"][attempt] == "ok", sealed["results"][attempt]


@pytest.mark.parametrize("attempt", REFUSED)
def test_other_code_is_refused_by_seal_code(sealed: dict[str, Any], attempt: str) -> None:
    got = sealed["results"][attempt]
    assert got.startswith("refused: "), f"{attempt}: {got}"
    assert "seal.code" in got, got


def test_known_code_opens_no_other_rule(sealed: dict[str, Any]) -> None:
    got = sealed["results"]["write_outside_tmp"]
    assert got.startswith("refused: ") and "seal.write" in got, got


def test_learning_lets_code_through_and_tells_each(learning: dict[str, Any]) -> None:
    results = learning["results"]
    for attempt in ("known_source", "known_tree", "other_source_same_name", "other_tree"):
        assert results[attempt] == "ok", (attempt, results[attempt])
    learned = {tuple(pair) for pair in learning["learned"]}
    assert (_sha(ROUTER), "") in learned
    assert (_sha(ROUTER + "x = 1\n"), "") in learned
    assert (_tree_digest(ROUTER), "") in learned
    assert ("", "elsewhere") in learned  # code compiled before the seal, run after it
    # What cannot be learned is refused as at run time, and no other rule is relaxed.
    assert "seal.code" in results["tree_with_a_str_subclass"]
    assert "seal.write" in results["write_outside_tmp"]
    assert not [what for what, rule in learning["said"] if rule.startswith("seal.code")][1:]


def test_the_digest_is_of_the_text_whatever_its_type() -> None:
    from summon.runtime import seal_digest

    digest = seal_digest.make_ast_digest(hashlib.sha256)
    a, b = ast.parse(ROUTER), ast.parse(ROUTER)
    assert digest(a) == digest(b) is not None
    b.body[0].body[0].lineno += 1  # type: ignore[attr-defined]
    assert digest(a) != digest(b)
    assert digest(ROUTER) is None  # not a tree
    # A list that holds itself (compile() would refuse it) ends the walk, not the app.
    looped = ast.parse(ROUTER)
    looped.body.append(looped.body)  # type: ignore[arg-type]
    assert digest(looped) is None


def test_the_images_own_environment_never_turns_learning_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """app.json "env" is set before the seal is made: an image that carries the variable
    (the manifest refuses it; an image made by hand may not) must not seal as a log."""
    from summon.runtime import seal
    from summon.runtime.config import AppConfig

    monkeypatch.setenv(seal.LEARN_ENV, "1")
    given = AppConfig(name="x", entry_kind="script", entry_path="/app/x.py", seal="on")
    assert seal.Sealer(given, ("/app",), print).learning
    baked = AppConfig(
        name="x", entry_kind="script", entry_path="/app/x.py", seal="on",
        env={seal.LEARN_ENV: "1"},
    )  # fmt: skip
    assert not seal.Sealer(baked, ("/app",), print).learning


def test_learning_stops_at_a_bound_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app that makes new code with every request would fill app.json without end."""
    from summon.runtime import seal
    from summon.runtime.config import AppConfig

    monkeypatch.setenv(seal.LEARN_ENV, "1")
    said: list[str] = []
    cfg = AppConfig(name="x", entry_kind="script", entry_path="/app/x.py", seal="on")
    sealer = seal.Sealer(cfg, ("/app",), said.append)
    for n in range(seal.MAX_LEARNED + 50):
        sealer._learned(f"{n:064x}", "")
        sealer._learned(f"{n:064x}", "")  # said once
    learned = [line for line in said if line.startswith(seal.LEARNED_PREFIX)]
    assert len(learned) == seal.MAX_LEARNED
    assert len(said) == seal.MAX_LEARNED + 1
    assert said[-1].startswith(f"sealed: over {seal.MAX_LEARNED} pieces of code")


def test_the_first_code_refusal_says_how_to_have_the_code_made_before_the_seal() -> None:
    """Bottle's first example, template('<b>Hello {{name}}</b>!') in a route the recording run
    never asked for, answered 500 with only "refused compile of code from '<string>'"."""
    from summon.runtime import seal
    from summon.runtime.config import AppConfig
    from summon.runtime.seal_hook import RULE_CODE

    said: list[str] = []
    cfg = AppConfig(name="x", entry_kind="script", entry_path="/app/x.py", seal="on")
    sealer = seal.Sealer(cfg, ("/app",), said.append)
    sealer._refusal("compile of code from '<string>'", RULE_CODE, True)
    sealer._refusal("compile of code from '<template>'", RULE_CODE, True)
    assert said == [
        f"sealed: refused compile of code from '<string>' ({RULE_CODE}); the build's recording "
        "run (/ and the pages it leads to) never saw this code made: have it made before the "
        'seal (warm_up = ["/its/path"] for an app the runtime serves, else a probe = '
        '"module:function" that uses it); code made of what a request brings needs seal = '
        '"audit"',
        f"sealed: refused compile of code from '<template>' ({RULE_CODE})",
    ]


EARLY_CHILD = r"""
import ast, collections, dataclasses, json, sys
from summon.runtime import seal_early
learned, sealed = [], [False]
sys.addaudithook(seal_early.make_hook(lambda d, n: learned.append([d, n]), lambda: sealed[0]))
source = "def __init__(self, x):\n    self.x = x\n"
compile(source, "<generated methods Point>", "exec")   # a class factory's, as attrs's
compile(source, "<generated methods Point>", "exec")   # the same again: told once
compile(ast.parse("y = 2\n"), "<tree>", "exec")         # a plain syntax tree
compile(source, "/app/point.py", "exec")               # a file's: decided by its content
collections.namedtuple("Pair", "a b")                  # rules of the seal's own
dataclasses.make_dataclass("Made", ["a"])
eval("1 + 1")                                          # from a string: learned
sealed[0] = True
compile("z = 3\n", "<after>", "exec")                  # after the seal: the sealed hook's
print(json.dumps(learned))
"""


def test_code_compiled_before_the_seal_is_learned_too(tmp_path: Path) -> None:
    """connexion's /openapi.json answered 500 sealed: jsonschema made a validator class
    again with attrs, whose methods' text the app had compiled at start, before the seal."""
    got = subprocess.run(
        [sys.executable, "-c", EARLY_CHILD],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    learned = [tuple(pair) for pair in json.loads(got.stdout)]
    tree = ast.parse("y = 2\n")
    from summon.runtime import seal_digest

    tree_digest = seal_digest.make_ast_digest(seal_digest.load_sha256())(tree)
    assert learned == [
        (_sha("def __init__(self, x):\n    self.x = x\n"), "<generated methods Point>"),
        (tree_digest, ""),  # a tree's compile event names no file, for either hook
        (_sha("1 + 1"), "<string>"),
    ]


def test_what_an_app_compiles_as_it_starts_never_uses_up_what_it_may_learn_after_the_seal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SQLAlchemy app compiles hundreds of decorators at import: told before the seal,
    they must leave Sanic's router, compiled after it, its own room to be learned."""
    from summon.runtime import seal
    from summon.runtime.config import AppConfig

    monkeypatch.setenv(seal.LEARN_ENV, "1")
    said: list[str] = []
    cfg = AppConfig(name="x", entry_kind="script", entry_path="/app/x.py", seal="on")
    sealer = seal.Sealer(cfg, ("/app",), said.append)
    for n in range(seal.MAX_LEARNED + 50):
        sealer._learned_early(f"{n:064x}", "<sqlalchemy generated>")
    sealer._learned("f" * 64, "<router>")
    early = [line for line in said if line.startswith(seal.LEARNED_EARLY_PREFIX)]
    assert len(early) == seal.MAX_LEARNED
    assert said[-1] == f"{seal.LEARNED_PREFIX}{'f' * 64} '<router>'"


def test_code_from_a_file_in_a_volume_says_to_ship_it_in_the_image() -> None:
    """A Jinja2 FileSystemLoader over a volume (`/data/templates`): a template put there at run
    time was refused with the advice to warm it up, which cannot help (no build saw it)."""
    from summon.runtime import seal
    from summon.runtime.config import AppConfig
    from summon.runtime.seal_hook import RULE_CODE

    said: list[str] = []
    cfg = AppConfig(
        name="x", entry_kind="script", entry_path="/app/x.py", seal="on", volumes=["/data"]
    )
    sealer = seal.Sealer(cfg, ("/app",), said.append)
    sealer._refusal("compile of code from '/data/templates/vol.html'", RULE_CODE, True)
    sealer._refusal("exec of code from '/tmp/t.html'", RULE_CODE, True)
    sealer._refusal("compile of code from '/database.html'", RULE_CODE, True)
    sealer._refusal("compile of code from '/data/late.html'", RULE_CODE, False)
    assert said[0] == (
        f"sealed: refused compile of code from '/data/templates/vol.html' ({RULE_CODE}); "
        "/data/templates/vol.html is under /data, written after the build, and the seal makes "
        "code only of files the image ships, whatever is warmed up: put the file in the app's "
        "folder (files beside its code go into the image) and build again; an app whose users "
        'bring their own templates needs seal = "audit"'
    )
    assert said[1].startswith(f"sealed: refused exec of code from '/tmp/t.html' ({RULE_CODE}); ")
    assert "/tmp/t.html is under /tmp, written after the build" in said[1]
    # Not under a volume (a name that only starts like one): the first plain hint, warm it up.
    assert "never saw this code made" in said[2]
    assert (
        said[3]
        == f"sealed (audit): would refuse compile of code from '/data/late.html' ({RULE_CODE})"
    )
