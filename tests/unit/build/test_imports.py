"""The static import scan of one file: imports, where they run, and how they are guarded."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

from summon.build.imports import (
    GUARD_DEAD,
    GUARD_FALLBACK,
    GUARD_NONE,
    GUARD_OPTIONAL,
    HOW_CALL,
    HOW_STRING,
    RUNS_CALL,
    RUNS_IMPORT,
    ImportRef,
    ScanCache,
    ScanContext,
    scan_source,
)

CTX = ScanContext((3, 11, 2), builtin_modules=("posix", "sys"))


def refs(source: str) -> dict[str, ImportRef]:
    scan = scan_source(dedent(source).encode(), "<test>", CTX)
    assert not scan.error, scan.error
    return {r.module: r for r in scan.refs}


def test_module_level_and_function_bodies() -> None:
    r = refs("""
        import a.b
        from c import d
        class K:
            import e
        def f():
            import g
        lam = lambda: __import__("h")
    """)
    assert (r["a.b"].runs, r["c"].names, r["e"].runs) == (RUNS_IMPORT, ("d",), RUNS_IMPORT)
    assert r["g"].runs == RUNS_CALL
    assert (r["h"].runs, r["h"].how) == (RUNS_CALL, HOW_CALL)


def test_import_guards() -> None:
    r = refs("""
        import contextlib
        try:
            import opt1
        except ImportError:
            import fb1
        try:
            import opt2
        except (AttributeError, ModuleNotFoundError):
            pass
        try:
            import opt3
        except Exception:
            pass
        try:
            import opt4
        except:
            pass
        try:
            import plain
        except KeyError:
            import plain_handler
        with contextlib.suppress(ImportError):
            import opt5
        try:
            def later():
                import not_guarded
        except ImportError:
            pass
    """)
    for name in ("opt1", "opt2", "opt3", "opt4", "opt5"):
        assert r[name].guard == GUARD_OPTIONAL, name
    assert (r["fb1"].guard, r["fb1"].block) == (GUARD_FALLBACK, r["opt1"].block)
    assert r["opt1"].block != r["opt2"].block
    for name in ("plain", "plain_handler", "not_guarded"):
        assert r[name].guard == GUARD_NONE, name


def test_dead_code() -> None:
    r = refs("""
        import os, sys, typing
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import typed_only
        if typing.TYPE_CHECKING:
            import typed_only2
        else:
            import at_run_time
        if sys.platform == "win32":
            import winreg
        elif sys.platform.startswith("linux"):
            import on_linux
        if os.name == "nt":
            import nt_only
        _mswindows = sys.platform == "win32"
        if _mswindows:
            import win_by_name
        else:
            import posix_by_name
        if sys.version_info >= (3, 12):
            import newer
        else:
            import older
        if sys.version_info[:2] == (3, 11) and "posix" in sys.builtin_module_names:
            import exactly
        def f():
            if sys.platform == "darwin":
                import mac
    """)
    for name in ("typed_only", "typed_only2", "winreg", "nt_only", "win_by_name", "newer", "mac"):
        assert r[name].guard == GUARD_DEAD, name
    for name in ("at_run_time", "on_linux", "posix_by_name", "older", "exactly"):
        assert r[name].guard == GUARD_NONE, name


def test_a_name_bound_twice_is_not_judged() -> None:
    # subprocess.py binds _mswindows in both branches of a try: its value is unknown.
    r = refs("""
        import sys
        try:
            import msvcrt
        except ModuleNotFoundError:
            _mswindows = False
        else:
            _mswindows = True
        if _mswindows:
            import _winapi
        else:
            import _posixsubprocess
    """)
    assert r["_winapi"].guard == GUARD_NONE
    assert r["_posixsubprocess"].guard == GUARD_NONE


def test_main_block_and_functions_only_it_calls() -> None:
    r = refs("""
        def _test():
            import doctest
            _helper()
        def _helper():
            import pdb
        def api():
            import json
        def main():
            import argparse
        __all__ = ["main"]
        if __name__ == "__main__":
            import runpy
            _test()
            main()
    """)
    assert r["runpy"].main and r["doctest"].main and r["pdb"].main
    # api() is called by nobody, but is importable API; main is exported by __all__.
    assert not r["json"].main and not r["argparse"].main


def test_import_by_string() -> None:
    r = refs("""
        import importlib
        importlib.import_module("pkg.mod")
        importlib.import_module(".sib", __package__)
        importlib.import_module(name)
        LOOPS = {"asyncio": "uvicorn.loops.asyncio:asyncio_setup", "none": None}
        HANDLER = "logging.handlers.RotatingFileHandler"
        TEXT = "see the docs: a.b"
        def f():
            "pkg.in_a_docstring"
    """)
    assert (r["pkg.mod"].how, r["pkg.mod"].level) == (HOW_CALL, 0)
    assert (r["sib"].level, r["sib"].anchor) == (1, "")
    assert (r["uvicorn.loops.asyncio"].how, r["uvicorn.loops.asyncio"].anchor) == (
        HOW_STRING,
        "colon",
    )
    assert r["logging.handlers.RotatingFileHandler"].anchor == "dotted"
    assert "see the docs: a.b" not in r and "pkg.in_a_docstring" not in r


def test_codecs_strptime_and_all() -> None:
    scan = scan_source(
        dedent("""
            __all__ = ["a", "b"]
            x.decode("CP437")
            y.encode(self.encoding or "utf-16", "replace")
            open(f, encoding="koi8_r")
            str(b, "cp1252")
            TABLE = {"big5": 1}
            import time
            time.strptime("2026", "%Y")
        """).encode(),
        "<test>",
        CTX,
    )
    assert set(scan.codecs) == {"cp437", "utf-16", "replace", "koi8_r", "cp1252"}
    assert scan.strptime
    assert scan.all_names == ("a", "b")


def test_a_file_that_does_not_parse() -> None:
    scan = scan_source(b"def (:\n", "<bad>", CTX)
    assert scan.error.startswith("SyntaxError")
    assert scan.refs == ()


def test_cache_by_content(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import json\n")
    folder = tmp_path / "cache"
    first = ScanCache(folder, CTX)
    assert [r.module for r in first.scan(src).refs] == ["json"]
    assert (first.hits, first.misses) == (0, 1)
    entries = list(folder.rglob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["refs"]
    second = ScanCache(folder, CTX)  # a new build: read from disk, nothing parsed
    assert [r.module for r in second.scan(src).refs] == ["json"]
    assert (second.hits, second.misses) == (1, 0)
    # Another interpreter version judges version tests otherwise: its own entry.
    other = ScanCache(folder, ScanContext((3, 12, 0)))
    other.scan(src)
    assert other.misses == 1
    # A torn or foreign entry is ignored and written again.
    entries[0].write_text("{not json")
    third = ScanCache(folder, CTX)
    assert [r.module for r in third.scan(src).refs] == ["json"]
    assert third.misses == 1
