"""The static closure's rules, on a small made-up search path (no interpreter needed)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from summon.build.graph import (
    ABSENT_DENIED,
    ABSENT_EXCLUDED,
    ABSENT_FALLBACK,
    ABSENT_MISSING,
    ABSENT_OPTIONAL,
    REASON_CODEC,
    REASON_SHIPPED,
    REASON_STRPTIME,
    SCRIPT,
    ImportGraph,
)
from summon.build.imports import ScanCache, ScanContext
from summon.build.resolve import Resolver, SearchEntry, module_name

STDLIB = {
    "sslish.py": "import _sslish\n",
    "asyncish/__init__.py": "from . import events\n",
    "asyncish/events.py": dedent("""
        try:
            import sslish
        except ImportError:
            sslish = None
        def later():
            import jsonish
        def codec(b):
            return b.decode("latin9")
    """),
    "jsonish/__init__.py": "from .decoder import x\n",
    "jsonish/decoder.py": "x = 1\n",
    "heapish.py": "try:\n    from _heapish import *\nexcept ImportError:\n    pass\n",
    "abcish.py": (
        "try:\n    from _abcish import A\nexcept ImportError:\n    from _py_abcish import A\n"
    ),
    "_py_abcish.py": "A = 1\n",
    "decish.py": (
        "try:\n    from _decish import *\nexcept ImportError:\n    from _pydecish import *\n"
    ),
    "_decish.py": "",
    "_pydecish.py": "",
    "pdb.py": "import cmd\n",
    "timeish.py": "def f(s):\n    import datetime\n    return s.strptime\n",
    "_strptime.py": "",
    "datetime.py": "",
    "cmd.py": "",
    "sysconfig.py": "def get_config_vars():\n    return __import__(_name()).build_time_vars\n",
    "_sysconfigdata__x86_64-linux-gnu.py": "build_time_vars = {}\n",
    "zoneinfoish.py": "import sysconfig\n",
    "encodings/__init__.py": "",
    "encodings/latin_1.py": "",
    "encodings/iso8859_15.py": "",
    "encodings/aliases.py": "aliases = {'latin9': 'iso8859_15'}\n",
}
SITE = {
    "lib/__init__.py": dedent("""
        import importlib
        LOOPS = {"auto": "lib.loops.auto:setup", "help": "sslish.CERT_NONE"}
        HANDLER = "asyncish.events.Handler"
        def serve():
            import heapish
        try:
            import sslish
        except ImportError:
            pass
    """),
    "lib/loops/__init__.py": "",
    "lib/loops/auto.py": "import cmd\n",
    "lib/tests/__init__.py": "",
    "lib/tests/test_lib.py": "import pytest\n",
}
RUNTIME = {
    "summon/__init__.py": "",
    "summon/rt.py": "import jsonish\ndef direct():\n    import asyncish\n",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    return {
        "app": (tmp_path / "app").resolve(),
        "site": write(tmp_path / "site", SITE).resolve(),
        "runtime": write(tmp_path / "rt", RUNTIME).resolve(),
        "stdlib": write(tmp_path / "stdlib", STDLIB).resolve(),
        "cache": tmp_path / "cache",
    }


def graph(layout: dict[str, Path], app: dict[str, str], **kw: object) -> ImportGraph:
    write(layout["app"], app)
    resolver = Resolver(
        [
            SearchEntry(layout["app"], "app"),
            SearchEntry(layout["site"], "site"),
            SearchEntry(layout["runtime"], "runtime", only="summon"),
            SearchEntry(layout["stdlib"], "stdlib"),
        ],
        builtin=frozenset({"sys", "_abcish"}),
        frozen=frozenset(),
        ext_suffixes=(".so",),
        stdlib=layout["stdlib"],
    )
    from summon.build.graph import read_codec_aliases

    return ImportGraph(
        resolver,
        ScanCache(layout["cache"], ScanContext((3, 11, 2))),
        codec_aliases=read_codec_aliases(layout["stdlib"]),
        **kw,  # type: ignore[arg-type]
    )


def test_function_bodies_are_followed_optional_stdlib_imports_are_not(
    layout: dict[str, Path],
) -> None:
    g = graph(layout, {"app.py": "import asyncish\n"})
    g.add_root("app", "entry import")
    g.run()
    assert "jsonish.decoder" in g.nodes  # asyncish.events.later() -> jsonish -> .decoder
    assert g.nodes["jsonish"].reason == REASON_SHIPPED
    assert [(e.importer, e.target) for e in g.chain("jsonish.decoder")] == [
        ("app", "asyncish"),
        ("asyncish", "asyncish.events"),
        ("asyncish.events", "jsonish"),
        ("jsonish", "jsonish.decoder"),
    ]
    assert "sslish" not in g.nodes  # stdlib asks for it only under try/except ImportError
    absent = g.absent()
    assert absent["sslish"].why == ABSENT_OPTIONAL
    assert absent["sslish"].importers[0].importer == "asyncish.events"
    # "latin9" at a codec call site: an alias of iso8859_15.
    assert g.nodes["encodings.iso8859_15"].reason == REASON_CODEC


def test_the_apps_optional_imports_are_followed(layout: dict[str, Path]) -> None:
    g = graph(layout, {"app.py": "try:\n    import sslish\nexcept ImportError:\n    pass\n"})
    g.add_root("app", "entry import")
    g.run()
    assert "sslish" in g.nodes and "_sslish" not in g.nodes  # _sslish: nothing provides it
    assert g.absent()["_sslish"].why == ABSENT_MISSING


def test_fallbacks(layout: dict[str, Path]) -> None:
    g = graph(layout, {"app.py": "import abcish, decish, heapish\n"})
    g.add_root("app", "entry import")
    g.run()
    # _abcish is there (builtin): its pure-Python stand-in is not needed.
    assert "_py_abcish" not in g.nodes
    assert g.absent()["_py_abcish"].why == ABSENT_FALLBACK
    # _decish exists: taken, as on the host, rather than the fallback.
    assert "_decish" in g.nodes and "_pydecish" not in g.nodes
    # No fallback: _heapish stays optional (and is missing anyway).
    assert "_heapish" not in g.nodes


def test_vendored_code_strings_and_tests(layout: dict[str, Path]) -> None:
    g = graph(layout, {"app.py": "import lib\n"})
    g.add_root("app", "entry import")
    g.run()
    # "lib.loops.auto:setup" in lib's table: followed, and what it imports too.
    assert g.nodes["lib.loops.auto"].via is not None
    assert g.nodes["lib.loops.auto"].via.how == "string"
    assert "cmd" in g.nodes
    # "asyncish.events.Handler": a module path in a string, followed.
    assert "asyncish.events" in g.nodes
    # "sslish.CERT_NONE" names only a top-level module: not followed (nor lib's optional one).
    assert "sslish" not in g.nodes
    assert "heapish" in g.nodes  # lib.serve() imports it
    assert "lib.tests" not in g.nodes  # nothing imports the tests


def test_runtime_function_bodies_are_not_followed(layout: dict[str, Path]) -> None:
    g = graph(layout, {})
    g.add_root("summon.rt", "runtime")
    g.run()
    assert "jsonish" in g.nodes
    # runtime_modules names what each image needs of the runtime; its lazy imports serve
    # other configurations.
    assert "asyncish" not in g.nodes


def test_exclude_and_deny(layout: dict[str, Path]) -> None:
    g = graph(
        layout, {"app.py": "import jsonish\ndef debug():\n    import pdb\n"}, exclude=["jsonish"]
    )
    g.add_root("app", "entry import")
    g.run()
    assert "jsonish" not in g.nodes and "jsonish.decoder" not in g.nodes
    absent = g.absent()
    assert absent["jsonish"].why == ABSENT_EXCLUDED
    assert absent["pdb"].why == ABSENT_DENIED
    # The exclude entry is needed while the app starts: that is what fails a build.
    needed = [(e.target, [x.target for x in chain]) for e, chain in g.needed_at_start(["app"])]
    assert ("jsonish", ["jsonish"]) in needed
    assert all(target != "pdb" for target, _ in needed)  # only when debug() is called
    # What the trace saw loaded, or the manifest includes, comes in despite the deny list.
    g.allow_denied.add("pdb")
    g.add_root("pdb", "manifest include")
    g.run()
    assert "pdb" in g.nodes


def test_script_entry(layout: dict[str, Path]) -> None:
    g = graph(layout, {})
    script = write(layout["app"], {"run.py": 'if __name__ == "__main__":\n    import cmd\n'})
    g.add_script(script / "run.py")
    g.run()
    # A script's __main__ block runs; a module's does not.
    assert g.nodes["cmd"].via is not None and g.nodes["cmd"].via.importer == SCRIPT


def test_strptime(layout: dict[str, Path]) -> None:
    g = graph(layout, {"app.py": "import timeish\n"})
    g.add_root("app", "entry import")
    g.run()
    assert g.nodes["_strptime"].reason == REASON_STRPTIME


def test_sysconfig_brings_its_build_time_variables(layout: dict[str, Path]) -> None:
    # sysconfig imports _sysconfigdata_... by a name it computes; typer imports pydantic
    # (zoneinfo, sysconfig) while it parses arguments, after the trace: the app died at start.
    g = graph(layout, {"app.py": "def cli():\n    import zoneinfoish\n"})
    g.add_root("app", "entry import")
    g.run()
    assert "_sysconfigdata__x86_64-linux-gnu" in g.nodes
    assert [e.importer for e in g.chain("_sysconfigdata__x86_64-linux-gnu")][-1] == "sysconfig"
    g = graph(layout, {"app.py": "import cmd\n"})
    g.add_root("app", "entry import")
    g.run()
    assert "_sysconfigdata__x86_64-linux-gnu" not in g.nodes


def test_module_names_of_files() -> None:
    from pathlib import PurePosixPath as P

    suffixes = (".cpython-311-x86_64-linux-gnu.so", ".so")
    assert module_name(P("a/b/__init__.py"), suffixes) == "a.b"
    assert module_name(P("a/_x.cpython-311-x86_64-linux-gnu.so"), suffixes) == "a._x"
    assert module_name(P("a-1.0.dist-info/METADATA"), suffixes) is None
    assert module_name(P("a/data.json"), suffixes) is None
