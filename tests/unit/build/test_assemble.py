"""Which files of a vendored site folder go into an image."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from summon.build.assemble import _site_files
from summon.build.closure import Closure, ModuleInfo
from summon.build.vendor import Package

SUFFIXES = (".cpython-311-x86_64-linux-gnu.so", ".so")
FILES = (
    "pkg/__init__.py",
    "pkg/a.py",
    "pkg/_speedups.cpython-311-x86_64-linux-gnu.so",
    "pkg/data/table.json",
    "pkg/sub/__init__.py",
    "pkg/sub/b.py",
    "pkg/tests/__init__.py",
    "pkg/tests/test_a.py",
    "pkg/tests/fixtures.py",
    "pkg/__pycache__/a.cpython-311.pyc",
    "pkg.libs/libfoo-1234.so.1",
    "bin/pkg-cli",
    "pkg-1.0.dist-info/METADATA",
    "pkg-1.0.dist-info/entry_points.txt",
)


def site(tmp_path: Path) -> tuple[Path, Package]:
    root = tmp_path / "site"
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    pkg = Package("pkg", "1.0", ("pkg",), tuple(PurePosixPath(f) for f in FILES), 0, False)
    return root, pkg


def shipped(tmp_path: Path, closure: Closure, exclude: tuple[str, ...] = ()) -> set[str]:
    root, pkg = site(tmp_path)
    return {str(rel) for rel in _site_files(closure, [pkg], root, exclude, SUFFIXES)}


def test_a_distribution_ships_whole_but_its_tests_and_build_leftovers(tmp_path: Path) -> None:
    assert shipped(tmp_path, Closure(modules={})) == {
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/_speedups.cpython-311-x86_64-linux-gnu.so",
        "pkg/data/table.json",
        "pkg/sub/__init__.py",
        "pkg/sub/b.py",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/entry_points.txt",
    }


def test_a_test_module_that_code_imports_ships(tmp_path: Path) -> None:
    root = (tmp_path / "site").resolve()
    info = ModuleInfo(
        "pkg.tests.fixtures",
        "source",
        root / "pkg/tests/fixtures.py",
        "static import in shipped code",
        "site",
        root,
    )
    files = shipped(tmp_path, Closure(modules={info.name: info}))
    assert "pkg/tests/fixtures.py" in files
    assert "pkg/tests/test_a.py" not in files


def test_excluded_modules_stay_out(tmp_path: Path) -> None:
    files = shipped(tmp_path, Closure(modules={}), exclude=("pkg.sub", "pkg._speedups"))
    assert not {f for f in files if f.startswith("pkg/sub/") or "_speedups" in f}
    assert "pkg/a.py" in files
