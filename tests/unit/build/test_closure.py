"""Tests for the module closure: the trace under the image's interpreter and its report."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import pytest

from summon.build import _trace
from summon.build.closure import (
    REASON_ALWAYS,
    REASON_CODEC,
    REASON_ENTRY,
    REASON_INCLUDE,
    REASON_PROBE,
    REASON_RUNTIME,
    REASON_STARTUP,
    REASON_STATIC,
    Closure,
    TraceError,
    app_sources,
    compute_closure,
)
from summon.build.graph import REASON_SHIPPED, REASON_STRPTIME
from summon.build.python import Interpreter
from summon.errors import BuildError
from summon.manifest import Entry

APPS = Path(__file__).parent / "apps"

MAIN = Entry("function", module="app", function="main")


def trace(interp: Interpreter, app: Path, entry: Entry = MAIN, **kw: object) -> Closure:
    search = kw.pop("search_path", [app])
    return compute_closure(interp, app, entry, search, compare=kw.pop("compare", False), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sockets(interp: Interpreter) -> Closure:
    return trace(interp, APPS / "sockets")


def test_reasons(sockets: Closure) -> None:
    m = sockets.modules
    assert m["encodings.utf_8"].reason == REASON_STARTUP
    assert m["codecs"].reason == REASON_STARTUP
    assert m["summon.runtime"].reason == REASON_RUNTIME
    assert m["app"].reason == REASON_ENTRY
    assert m["asyncio.events"].reason == REASON_ENTRY
    assert m["_socket"].reason == REASON_ENTRY
    # Imported only inside functions of the app: found by the static scan.
    assert m["json"].reason == REASON_STATIC
    assert m["xml.etree.ElementTree"].reason == REASON_STATIC
    assert m["csv"].reason == REASON_STATIC
    assert m["pkg.util"].reason == REASON_STATIC
    assert m["colorsys"].reason == REASON_STATIC
    # asyncio.base_events calls .encode("idna") (and _socket is loaded, so its C code needs
    # the codec anyway): found by the codec scan of every shipped module.
    assert m["encodings.idna"].reason == REASON_CODEC
    assert m["stringprep"].reason == REASON_SHIPPED  # encodings.idna imports it
    # encodings/idna.py calls .encode("punycode"): found by the codec scan.
    assert m["encodings.punycode"].reason == REASON_CODEC


def test_c_imports_follow_their_trigger(interp: Interpreter, tmp_path: Path) -> None:
    # _socket's C code encodes host names with the idna codec; no Python code names it here.
    (tmp_path / "app.py").write_text("import _socket\n\ndef main():\n    pass\n")
    c = trace(interp, tmp_path)
    assert c.modules["encodings.idna"].reason == REASON_ALWAYS
    via = c.modules["encodings.idna"].via
    assert via is not None and (via.importer, via.how) == ("_socket", "c")


def test_resource_readers_come_with_importlib_resources(
    interp: Interpreter, tmp_path: Path
) -> None:
    """files() makes the loader import importlib.readers on first use: no scan sees that
    import, and code the trace never runs (a script, a request's path) would fail without it."""
    (tmp_path / "app.py").write_text(
        "import importlib.resources\n\ndef main():\n    pass\n\n"
        "def later():\n    return importlib.resources.files('json').joinpath('x')\n"
    )
    c = trace(interp, tmp_path)
    assert c.modules["importlib.readers"].reason == REASON_ALWAYS
    via = c.modules["importlib.readers"].via
    assert via is not None and via.importer == "importlib.resources"
    (tmp_path / "app.py").write_text("def main():\n    return 42\n")
    assert "importlib.readers" not in trace(interp, tmp_path).modules  # no trigger, none


def test_a_deny_listed_package_the_app_loads_comes_with_its_lazy_parts(
    interp: Interpreter, tmp_path: Path
) -> None:
    """multiprocessing is on the deny list, but an app that imports it (Sanic, werkzeug's
    reloader) gets what it imports later too: managers, pool, the fork popen."""
    (tmp_path / "app.py").write_text(
        "import multiprocessing\n\ndef main():\n    return multiprocessing.cpu_count()\n"
    )
    c = trace(interp, tmp_path)
    for name in ("multiprocessing.managers", "multiprocessing.pool", "multiprocessing.popen_fork"):
        assert name in c.modules, name
    (tmp_path / "app.py").write_text("def main():\n    return 0\n")
    assert "multiprocessing" not in trace(interp, tmp_path).modules


def test_a_deny_listed_package_vendored_code_imports_at_its_top_comes_in(
    interp: Interpreter, tmp_path: Path
) -> None:
    """Dash imports its backend by a name made at run time (dash.backends._flask), which
    imports werkzeug.debug, whose first lines import multiprocessing: every Dash app died at
    start (No module named 'multiprocessing'). A top-level import in vendored code brings a
    deny-listed package in; one in a function body, or in the stdlib, does not."""
    app = tmp_path / "app"
    site = app / "_site"
    (site / "dashlike" / "backends").mkdir(parents=True)
    (site / "dashlike" / "__init__.py").write_text("from . import backends\n")
    (site / "dashlike" / "backends" / "__init__.py").write_text(
        "import importlib\n\nBACKENDS = {'flask': 'dashlike.backends._flask'}\n\n"
        "def get(name):\n    return importlib.import_module(BACKENDS[name])\n"
    )
    (site / "dashlike" / "backends" / "_flask.py").write_text("from debuglike import Value\n")
    (site / "debuglike.py").write_text("from multiprocessing import Value\n")
    (site / "lazylike.py").write_text("def later():\n    import pydoc\n")
    (app / "app.py").write_text("import dashlike\n\ndef main():\n    pass\n")
    c = trace(interp, app, search_path=[app, site])
    assert not c.modules["debuglike"].traced and not c.modules["multiprocessing"].traced
    assert c.modules["multiprocessing"].reason == REASON_SHIPPED
    assert [e.importer for e in c.chain("multiprocessing")][-1] == "debuglike"
    assert "multiprocessing.context" in c.modules
    assert "pydoc" not in c.modules  # in a function body: still left out


def test_minimal_app_closure_is_small(interp: Interpreter, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def main():\n    return 42\n")
    c = trace(interp, tmp_path)
    stdlib = {m.name for m in c.in_group("stdlib")}
    # The tracer parses with compile() and imports json only after its snapshot of
    # sys.modules, so nothing of its own may show up.
    for name in ("json", "modulefinder", "argparse"):
        assert name not in c.modules, name
    assert "__main__" not in c.modules
    assert "encodings.idna" not in c.modules  # no _socket, so no idna
    # No shipped code names strptime, so _strptime (and its ~0.4 MB) stays out.
    assert "_strptime" not in c.modules and "calendar" not in c.modules
    assert c.modules["app"].group == "app"
    # Error paths are always there: a failed request must not kill a server over a
    # traceback it cannot format.
    assert c.modules["traceback"].reason == REASON_ALWAYS
    assert c.modules["linecache"].reason == REASON_ALWAYS
    # Start-up modules, the always-include list and what they can import: no more.
    assert len(stdlib) < 70, sorted(stdlib)


def test_strptime_brings_in_strptime(interp: Interpreter, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import time\n\ndef main():\n    return time.strptime('2026', '%Y').tm_year\n"
    )
    c = trace(interp, tmp_path)
    assert c.modules["_strptime"].reason == REASON_STRPTIME


def test_kinds_groups_and_files(sockets: Closure, interp: Interpreter) -> None:
    m = sockets.modules
    assert (m["sys"].kind, m["sys"].group, m["sys"].origin) == ("builtin", "builtin", None)
    # Frozen, but the file must be in the image: os.py is the interpreter's prefix landmark.
    assert m["os"].kind == "frozen"
    assert m["os"].origin == interp.stdlib / "os.py"
    assert m["os"].group == "stdlib"
    assert m["os.path"].alias_of == "posixpath"
    assert m["os.path"].origin is None
    assert m["_frozen_importlib"].origin is None
    assert m["asyncio"].kind == "package"
    assert m["asyncio"].origin == interp.stdlib / "asyncio" / "__init__.py"
    assert m["asyncio"].relpath == PurePosixPath("asyncio/__init__.py")
    assert m["asyncio.events"].kind == "source"
    assert m["_asyncio"].kind == "extension"
    assert m["_asyncio"].relpath is not None
    assert m["_asyncio"].relpath.parts[0] == "lib-dynload"
    assert m["pkg"].group == "app"
    assert m["pkg.handler"].origin == APPS / "sockets" / "pkg" / "handler.py"
    assert m["summon"].group == "runtime"
    assert m["summon.runtime"].relpath == PurePosixPath("summon/runtime/__init__.py")
    assert m["summon.runtime"].origin is not None and m["summon.runtime"].origin.is_file()

    files = sockets.files()
    assert interp.stdlib / "os.py" in files
    assert interp.stdlib / "asyncio" / "__init__.py" in files
    assert all(f.is_file() for f in files)
    exts = {e.name for e in sockets.extension_modules()}
    assert "_asyncio" in exts
    # asyncio asks for ssl only inside try/except ImportError: optional, so left out.
    assert "_ssl" not in exts and "ssl" not in sockets.modules
    assert "_socket" not in exts  # builtin in Debian's build
    assert interp.dynload / "_asyncio.cpython-311-x86_64-linux-gnu.so" in sockets.extension_files()
    assert sockets.size() == sum(f.stat().st_size for f in files)


def test_failed_lazy_imports_are_warnings(sockets: Closure) -> None:
    text = "\n".join(sockets.warnings)
    assert "summon_test_no_such_module, which does not import here" in text
    assert "summon_test_no_such_module" in text and "; it is left out" in text
    # flaky goes in (below): the build said it was "left out" all the same (a Wagtail
    # project's urls.py said so of thirteen modules the image held and served).
    assert "imports flaky, which does not import here" not in text
    assert (
        "module(s) the app's code imports did not import here on their own and go in all the "
        "same (they may need what the app sets up first, as Django's settings): flaky"
    ) in text
    assert "flaky said RuntimeError: flaky refuses to import" in text
    # flaky.py is app code, which ships whole, and later() imports it: in the closure
    # although it never imported.
    assert sockets.modules["flaky"].reason == REASON_SHIPPED
    assert [(e.importer, e.line, e.runs) for e in sockets.chain("flaky")] == [("app", 23, "call")]
    assert "summon_test_no_such_module" not in sockets.modules
    assert sockets.absent["summon_test_no_such_module"].why == "not found"


def test_script_entry_is_scanned_not_run(interp: Interpreter, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    c = trace(
        interp,
        APPS / "script",
        Entry("script", script="run.py"),
        env={"SUMMON_TEST_MARKER": str(marker)},
    )
    assert not marker.exists(), "the trace ran the script"
    assert c.modules["shlex"].reason == REASON_ENTRY
    # Under `if __name__ == "__main__":` runs in the image, so it counts as the entry's.
    assert c.modules["wave"].reason == REASON_ENTRY
    assert c.modules["zipfile"].reason == REASON_STATIC
    assert "run" not in c.modules


def test_entry_import_failure(interp: Interpreter) -> None:
    with pytest.raises(TraceError) as info:
        trace(interp, APPS / "broken", table="summon.toml")
    err = info.value
    assert isinstance(err, BuildError)
    assert str(err) == (
        "app failed to import during the closure trace: ModuleNotFoundError: "
        "No module named 'summon_test_missing_dependency'; add the distribution that "
        "provides it to requirements in summon.toml"
    )
    assert "\n" not in str(err)
    assert "Traceback (most recent call last)" in err.detail
    assert "broken/app.py" in err.detail


def test_missing_entry_function(interp: Interpreter) -> None:
    with pytest.raises(TraceError) as info:
        trace(interp, APPS / "probe", Entry("function", module="app", function="mian"))
    assert str(info.value) == (
        "entry app:mian: module 'app' has no function 'mian'; fix entry = ... in the manifest"
    )


def test_async_entry_brings_asyncio(interp: Interpreter) -> None:
    sync = trace(interp, APPS / "probe")
    assert "asyncio" not in sync.modules
    c = trace(interp, APPS / "probe", Entry("function", module="app", function="serve"))
    # The runtime runs a coroutine function under asyncio.run.
    assert c.modules["asyncio"].reason == REASON_RUNTIME
    assert c.modules["asyncio.runners"].reason == REASON_RUNTIME


def test_probe_adds_what_it_loads(interp: Interpreter) -> None:
    app = APPS / "probe"
    plain = trace(interp, app)
    assert "decimal" not in plain.modules
    probed = trace(interp, app, probe="app:warm")
    assert probed.modules["decimal"].reason == REASON_PROBE
    probed_async = trace(interp, app, probe="app:warm_async")
    assert probed_async.modules["fractions"].reason == REASON_PROBE
    assert probed_async.modules["asyncio"].reason == REASON_PROBE


def test_probe_failure(interp: Interpreter) -> None:
    with pytest.raises(TraceError) as info:
        trace(interp, APPS / "probe", probe="app:fail")
    assert str(info.value) == (
        "the probe app:fail failed: ValueError: probe went wrong; "
        "fix the probe or remove probe = ... from the manifest"
    )
    assert "raise ValueError" in info.value.detail


def test_hanging_probe_is_stopped(interp: Interpreter) -> None:
    with pytest.raises(BuildError, match=r"stopped after 2 s while running the probe app:hang"):
        trace(interp, APPS / "probe", probe="app:hang", timeout=2.0)


def test_manifest_include(interp: Interpreter) -> None:
    c = trace(interp, APPS / "probe", include=["xml.dom.minidom"])
    assert c.modules["xml.dom.minidom"].reason == REASON_INCLUDE
    with pytest.raises(BuildError, match=r"include = \['summon_nope'\] in the manifest cannot"):
        trace(interp, APPS / "probe", include=["summon_nope"])


def test_vendored_site_folder(interp: Interpreter, tmp_path: Path) -> None:
    app = tmp_path / "app"
    site = app / "_site"  # vendored inside the app folder: not scanned as app code
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("from . import core\n")
    (site / "fakepkg" / "core.py").write_text("def later():\n    import ftplib\n")
    (app / "app.py").write_text("import fakepkg\n\ndef main():\n    pass\n")
    c = trace(interp, app, search_path=[app, site])
    assert c.modules["fakepkg.core"].group == "site"
    assert c.modules["fakepkg.core"].root == site.resolve()
    assert c.modules["fakepkg.core"].relpath == PurePosixPath("fakepkg/core.py")
    # Vendored code is scanned too: what a function of it imports is in.
    assert c.modules["ftplib"].reason == REASON_SHIPPED
    assert [(e.importer, e.line) for e in c.chain("ftplib")][-1] == ("fakepkg.core", 2)
    assert c.site_packages() == ["fakepkg"]


def test_left_out_against_modulefinder(interp: Interpreter) -> None:
    c = trace(interp, APPS / "sockets", compare=True)
    assert c.modulefinder is not None
    assert len(c.modulefinder) > len(c.modules)
    assert c.modulefinder_size() > c.size()
    # asyncio mentions its Windows event loop, under a platform test false in the image.
    assert c.left_out["asyncio.windows_events"].startswith(
        "named only in code that cannot run in the image"
    )
    # asyncio's optional ssl: left out, with the reason.
    assert c.left_out["ssl"].startswith("optional: only the stdlib asks for it")
    assert not set(c.left_out) & set(c.modules)
    assert "modulefinder" in c.timings


def test_app_sources_skips_what_is_not_app_code(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "b.py").write_text("")
    (tmp_path / "my-tools").mkdir()
    (tmp_path / "my-tools" / "c.py").write_text("")
    for skipped in (".git", "__pycache__", "venv", "site"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text("")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path)
    found = app_sources(tmp_path, exclude=[tmp_path / "site"])
    assert [(p.relative_to(tmp_path).as_posix(), n, pkg) for p, n, pkg in found] == [
        ("a.py", "a", False),
        ("my-tools/c.py", None, False),
        ("pkg/__init__.py", "pkg", True),
        ("pkg/b.py", "pkg.b", False),
    ]


def test_trace_leaves_no_bytecode_in_app(interp: Interpreter, tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(APPS / "sockets", app)
    trace(interp, app)
    assert not list(app.rglob("__pycache__"))


# The tracer's parsing helpers are stdlib-only and run here too.


def _tree(src: str) -> object:
    return compile(src, "<t>", "exec", _trace._ONLY_AST, dont_inherit=True)


def _imports(src: str, package: str | None) -> list[tuple[str, list[str]]]:
    return [
        (mod, names)
        for node in _trace._walk(_tree(src))
        for mod, names, _line in _trace._imports_of(node, package)
    ]


def test_relative_imports_resolve() -> None:
    src = "from . import a\nfrom .b import c\nfrom ..d import e\nfrom ... import f\n"
    assert sorted(_imports(src, "x.y")) == [("x.d", ["e"]), ("x.y", ["a"]), ("x.y.b", ["c"])]
    # A top-level module has no package: its relative imports fail at run time too.
    assert _imports("from . import a\n", "") == []


def test_literal_dynamic_imports_count() -> None:
    src = "import importlib\nimportlib.import_module('a.b')\n__import__('c')\nf('d')\n"
    assert sorted(m for m, _ in _imports(src, "")) == ["a.b", "c", "importlib"]


def test_script_imports_split() -> None:
    tree = _tree(
        "import a\n"
        "try:\n    import b\nexcept ImportError:\n    pass\n"
        "if __name__ == '__main__':\n    import c\n"
        "def f():\n    import d\n"
        "class K:\n    import e\n"
    )
    always, conditional = _trace._top_level_imports(tree)
    assert [n.names[0].name for n in always] == ["a", "c"]
    # A function body runs only when called: left to the static scan.
    assert sorted(n.names[0].name for n in conditional if hasattr(n, "names")) == ["b", "e"]


def test_optional_ssl_is_kept_when_the_app_imports_it(interp: Interpreter, tmp_path: Path) -> None:
    (tmp_path / "tls.py").write_text("import asyncio\nimport ssl\n\ndef main():\n    pass\n")
    kept = trace(interp, tmp_path, Entry("function", module="tls", function="main"))
    assert "ssl" in kept.modules and "_ssl" in kept.modules
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "plain.py").write_text("import asyncio\n\ndef main():\n    pass\n")
    dropped = trace(interp, plain, Entry("function", module="plain", function="main"), compare=True)
    assert "ssl" not in dropped.modules
    assert dropped.left_out["ssl"].startswith("optional: only the stdlib asks for it")
    assert "/usr/lib/python3.11/asyncio/" in dropped.left_out["ssl"]


def test_exclude_is_validated_and_refused_to_the_trace(interp: Interpreter, tmp_path: Path) -> None:
    with pytest.raises(
        BuildError, match=r"^exclude = \['summon_nope'\] in the manifest: no module"
    ):
        trace(interp, APPS / "probe", exclude=["summon_nope"])
    # Excluded, and imported only under a guard in a function: out, and said so.
    (tmp_path / "app.py").write_text(
        "def main():\n    try:\n        import csv\n    except ImportError:\n        pass\n"
    )
    c = trace(interp, tmp_path, exclude=["csv"])
    assert "csv" not in c.modules
    assert c.absent["csv"].why == "excluded"
    # The trace refuses it as the image will: an app that imports it at start fails there.
    (tmp_path / "app.py").write_text("import importlib\nimportlib.import_module('c' + 'sv')\n")
    with pytest.raises(TraceError, match=r"No module named 'csv' \(excluded by the manifest\)"):
        trace(interp, tmp_path, Entry("function", module="app", function="x"), exclude=["csv"])


def test_a_module_the_app_swaps_in_under_another_name_is_no_closure_bug() -> None:
    """gevent's import_c_accel puts its compiled gevent._gevent_cqueue in sys.modules as
    gevent.queue: the trace sees that file under that name, the scan finds queue.py. Both
    ship, so it is not reported as a closure bug; a real disagreement still is."""
    from summon.build.closure import ModuleInfo, _swapped_in

    site = Path("/v/site")
    compiled = site / "gevent" / "_gevent_cqueue.cpython-311-x86_64-linux-gnu.so"
    swapped = ModuleInfo("gevent.queue", "extension", compiled, "entry import", "site", site)
    assert _swapped_in("gevent.queue", swapped)
    own = ModuleInfo("gevent.queue", "source", site / "gevent/queue.py", "entry import", "site",
                     site)  # fmt: skip
    assert not _swapped_in("gevent.queue", own)
    package = ModuleInfo("gevent", "package", site / "gevent/__init__.py", "entry import", "site",
                         site)  # fmt: skip
    assert not _swapped_in("gevent", package)


def test_only_the_left_out_lines_of_modules_kept_are_folded() -> None:
    """A module the blocker left out as optional (ssl) that the closure keeps through another
    import was named as if it had failed to import (streamlit's build)."""
    from summon.build.tracing import unless_kept

    warnings = [
        "urls.py:5 imports wagtail.urls, which does not import here (ImproperlyConfigured: x); "
        "it is left out",
        "app.py:2 imports nothere, which does not import here (ModuleNotFoundError: y); "
        "it is left out",
        "something else",
    ]
    failed = {"wagtail.urls": "ImproperlyConfigured: x", "nothere": "ModuleNotFoundError: y",
              "ssl": "optional: only the stdlib asks for it"}  # fmt: skip
    kept = {"wagtail.urls": 1, "ssl": 1}
    assert unless_kept(warnings, failed, kept) == [
        warnings[1],
        warnings[2],
        "1 module(s) the app's code imports did not import here on their own and go in all "
        "the same (they may need what the app sets up first, as Django's settings): "
        "wagtail.urls; wagtail.urls said ImproperlyConfigured: x",
    ]
    assert unless_kept(warnings[1:], failed, kept) == warnings[1:]
