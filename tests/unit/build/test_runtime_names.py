"""Modules named at run time under a known package: import_module(f"pkg.{name}").

A codec detector that tries every codec (charset_normalizer, which requests brings) or a
plugin folder imports a module whose name only the running app knows; all it is sure of is
the package. The scan records the package, and the closure ships every module directly in it.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from summon.build.closure import Closure, compute_closure
from summon.build.graph import REASON_PACKAGE
from summon.build.imports import HOW_PACKAGE, ScanContext, scan_source
from summon.build.python import Interpreter
from summon.manifest import Entry

CTX = ScanContext((3, 11, 2), builtin_modules=("posix", "sys"))


def packages(source: str) -> list[str]:
    scan = scan_source(dedent(source).encode(), "<test>", CTX)
    assert not scan.error, scan.error
    return sorted(r.module for r in scan.refs if r.how == HOW_PACKAGE)


@pytest.mark.parametrize(
    "call",
    [
        'importlib.import_module(f"encodings.{name}")',
        'importlib.import_module("encodings.{}".format(name))',
        'importlib.import_module("encodings." + name)',
        '__import__(f"encodings.{name}")',
    ],
)
def test_a_name_made_under_a_package_records_the_package(call: str) -> None:
    assert packages(f"import importlib\ndef codec(name):\n    return {call}\n") == ["encodings"]


@pytest.mark.parametrize(
    "call",
    [
        'importlib.import_module(f"{name}.plugin")',  # no known package
        'importlib.import_module(f"pkg.{name}.base")',  # more after the run-time part
        'importlib.import_module(f".{name}", __name__)',  # relative: the package is a guess
        "importlib.import_module(prefix + name)",
        'importlib.import_module("pkg" + name)',  # no dot: not a module of pkg
    ],
)
def test_other_run_time_names_record_nothing(call: str) -> None:
    assert packages(f"import importlib\ndef load(name, prefix):\n    return {call}\n") == []


def trace(interp: Interpreter, app: Path) -> Closure:
    return compute_closure(interp, app, Entry("function", module="app", function="main"), [app])


def test_every_module_of_the_package_comes_tests_aside(interp: Interpreter, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "nested").mkdir(parents=True)
    (plugins / "tests").mkdir()
    for f in ("__init__.py", "csv_out.py", "json_out.py", "nested/__init__.py",
              "tests/__init__.py", "tests/test_x.py"):  # fmt: skip
        (plugins / f).write_text("")
    (plugins / "notes.txt").write_text("not a module\n")
    (tmp_path / "app.py").write_text(
        "import importlib\n\ndef main():\n    return 0\n\n"
        "def render(kind):\n    return importlib.import_module(f'plugins.{kind}')\n"
    )
    c = trace(interp, tmp_path)
    for name in ("plugins.csv_out", "plugins.json_out", "plugins.nested"):
        assert c.modules[name].reason == REASON_PACKAGE, name
        via = c.modules[name].via
        assert via is not None and via.importer == "app"
    # (the app folder's own code ships whole; what the rule brings is only the modules)
    for name in ("plugins.tests", "plugins.tests.test_x"):
        assert name not in c.modules or c.modules[name].reason != REASON_PACKAGE, name


def test_the_stdlibs_own_run_time_names_bring_nothing(interp: Interpreter, tmp_path: Path) -> None:
    """encodings' search function imports "encodings." + name for every codec lookup: the
    stdlib's run-time names are not followed, or every image would hold every codec."""
    (tmp_path / "app.py").write_text("def main():\n    return b'x'.decode('latin-1')\n")
    c = trace(interp, tmp_path)
    assert "encodings.cp1252" not in c.modules and "encodings.shift_jis" not in c.modules
