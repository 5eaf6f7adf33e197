"""Tests for vendoring requirements for the image's interpreter (h11 comes from the index)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from summon.build import sdists
from summon.build import vendor as vendor_mod
from summon.build.python import Interpreter
from summon.build.vendor import pip_command, read_dist_info, vendor
from summon.errors import BuildError


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def test_command_targets_the_image_interpreter(
    interp: Interpreter, tmp_path: Path, cache: Path
) -> None:
    cmd = pip_command(["h11==0.14.0"], interp, tmp_path / "site")
    assert "install" in cmd[:6]
    pairs = dict(itertools.pairwise(cmd))
    assert pairs["--target"] == str(tmp_path / "site")
    assert pairs["--python-version"] == "3.11"
    assert pairs["--implementation"] == "cp"
    assert pairs["--abi"] == "cp311"
    assert pairs["--cache-dir"] == str(cache / "summon" / "pip")
    assert "--only-binary=:all:" in cmd and "--no-compile" in cmd
    platforms = [b for a, b in itertools.pairwise(cmd) if a == "--platform"]
    assert platforms == list(interp.platform_tags)
    # Requirements come after "--", so one cannot pass for an option.
    assert cmd[-2:] == ["--", "h11==0.14.0"]


def test_pip_runs_under_the_image_interpreter_where_the_versions_differ(
    interp: Interpreter, tmp_path: Path
) -> None:
    """pip evaluates markers for the interpreter it runs under: the host's Python 3.11.7
    left redis's `async-timeout; python_full_version < "3.11.3"` out of a 3.11.2 image."""
    cmd = pip_command(["h11==0.14.0"], interp, tmp_path / "site")
    if interp.version_tuple == tuple(sys.version_info[:3]):
        assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    else:
        assert cmd[0] == str(interp.executable) and cmd[5] == "install", cmd[:6]


def test_markers_are_the_image_interpreters(interp: Interpreter, tmp_path: Path) -> None:
    dest = tmp_path / "site"
    names = {p.name for p in vendor(["redis==8.2.0"], interp, dest)}
    assert ("async-timeout" in names) == (interp.version_tuple < (3, 11, 3)), names


def test_no_requirements_runs_no_pip(
    interp: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("pip was run")

    monkeypatch.setattr(subprocess, "run", boom)
    assert vendor([], interp, tmp_path / "site") == []
    assert not (tmp_path / "site").exists()


def test_installs_h11(interp: Interpreter, tmp_path: Path) -> None:
    dest = tmp_path / "build" / "site"
    packages = vendor(["h11==0.14.0"], interp, dest)
    assert [(p.name, p.version, p.top_level, p.pure) for p in packages] == [
        ("h11", "0.14.0", ("h11",), True)
    ]
    h11 = packages[0]
    assert PurePosixPath("h11/__init__.py") in h11.files
    assert (dest / "h11" / "_connection.py").is_file()
    assert h11.size == sum((dest / f).stat().st_size for f in h11.files if (dest / f).exists())
    assert h11.extension_files(dest) == []
    assert not list(dest.rglob("*.pyc")), "--no-compile was not honoured"
    # Only the final folder remains beside it: no staging folder left over.
    assert [p.name for p in dest.parent.iterdir()] == ["site"]


def test_unknown_requirement(interp: Interpreter, tmp_path: Path) -> None:
    dest = tmp_path / "site"
    with pytest.raises(BuildError) as info:
        vendor(["summon-no-such-package-xyz"], interp, dest)
    assert str(info.value) == (
        "requirement 'summon-no-such-package-xyz' could not be installed: "
        "No matching distribution found for summon-no-such-package-xyz"
    )
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_line_names_the_culprit() -> None:
    output = (
        "Looking in links: /opt/wheels\n"
        "ERROR: Could not find a version that satisfies the requirement Foo_Bar>=2 "
        "(from versions: 1.0)\n"
        "ERROR: No matching distribution found for foo-bar>=2\n"
    )
    assert vendor_mod._failure_line(["h11", "Foo_Bar>=2"], output) == (
        "requirement 'Foo_Bar>=2' could not be installed: "
        "No matching distribution found for foo-bar>=2"
    )
    assert vendor_mod._failure_line(["a", "b"], "Traceback...\nOSError: disk full\n") == (
        "requirements 'a', 'b' could not be installed: OSError: disk full"
    )


def test_dest_must_be_empty(interp: Interpreter, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "old.py").write_text("")
    with pytest.raises(BuildError, match="is not empty"):
        vendor(["h11"], interp, tmp_path / "site")


def test_top_level_derived_from_record(tmp_path: Path) -> None:
    info = tmp_path / "demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: false\n")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "__init__.py").write_text("x = 1\n")
    (tmp_path / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (tmp_path / "single.py").write_text("")
    (info / "RECORD").write_text(
        "demo/__init__.py,sha256=abc,6\n"
        "_speedups.cpython-311-x86_64-linux-gnu.so,,\n"
        "single.py,,\n"
        "../../bin/tool,,\n"
        "demo-1.0.dist-info/RECORD,,\n"
    )
    p = read_dist_info(info)
    assert (p.name, p.version, p.pure) == ("Demo", "1.0", False)
    assert p.top_level == ("_speedups", "demo", "single")
    # What RECORD lists outside the folder (scripts) is not part of the package here.
    assert PurePosixPath("../../bin/tool") not in p.files
    assert p.size == 6 + 4 + 0 + (info / "RECORD").stat().st_size
    assert p.extension_files(tmp_path) == [tmp_path / "_speedups.cpython-311-x86_64-linux-gnu.so"]


def test_a_pure_python_project_with_only_a_source_distribution_is_built_into_a_wheel(
    interp: Interpreter, tmp_path: Path
) -> None:
    """pyramid_chameleon publishes an sdist only: the build failed with "No matching
    distribution found for pyramid_chameleon", of a project `pip install` installs."""
    said: list[str] = []
    dest = tmp_path / "site"
    packages = vendor(["pyramid_chameleon==0.3"], interp, dest, no_deps=True, say=said.append)
    assert [(p.name, p.version, p.pure) for p in packages] == [("pyramid_chameleon", "0.3", True)]
    assert (dest / "pyramid_chameleon" / "__init__.py").is_file()
    assert said == [
        "building a wheel of pyramid_chameleon==0.3 from its source distribution (no wheel)"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["site"]


@pytest.mark.parametrize(
    ("name", "pure"),
    [
        ("docopt-0.6.2-py2.py3-none-any.whl", True),
        ("pyramid_chameleon-0.3-py3-none-any.whl", True),
        ("demo-1.0-1-py3-none-any.whl", True),  # a build tag
        ("demo-1.0-cp311-cp311-linux_x86_64.whl", False),
        ("demo-1.0-cp311-none-any.whl", False),  # for one interpreter's bytecode
        ("demo-1.0-py3-abi3-any.whl", False),
        ("demo-py3-none-any.whl", False),
    ],
)
def test_a_wheel_is_pure_when_its_tags_fit_every_interpreter(name: str, pure: bool) -> None:
    assert sdists.is_pure(name) is pure


def test_a_source_distribution_that_builds_compiled_code_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel pip builds on the host for the host's interpreter is not the image's."""

    def pip_wheel(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        out = Path(cmd[cmd.index("--wheel-dir") + 1])
        (out / "fastthing-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sdists.subprocess, "run", pip_wheel)
    with pytest.raises(BuildError) as info:
        sdists.build_wheel("fastthing", tmp_path / "wheels", {})
    assert str(info.value) == (
        "requirement 'fastthing' publishes no wheel for this image's Python, and its source "
        "distribution builds compiled code (fastthing-1.0-cp311-cp311-linux_x86_64.whl), which "
        "summon cannot build for the image: pick a version with wheels, or leave it out"
    )
    assert not (tmp_path / "wheels").exists()


def test_what_pip_found_no_wheel_of() -> None:
    output = (
        "ERROR: Could not find a version that satisfies the requirement foo-bar>=2 "
        "(from versions: none)\nERROR: No matching distribution found for foo-bar>=2\n"
    )
    assert sdists.missing_requirement(output) == "foo-bar>=2"
    assert sdists.missing_requirement("ERROR: ResolutionImpossible: ...\n") is None


def test_a_requirement_whose_versions_need_another_python_says_so_and_builds_no_sdist(
    interp: Interpreter, tmp_path: Path
) -> None:
    """wagtail start writes Django>=6.1,<6.2 (Requires-Python >=3.12): the build said it was
    "building a wheel of Django<6.2,>=6.1 from its source distribution (no wheel)", then
    "No matching distribution found", on an image whose Python is 3.11 (PyPI, really)."""
    said: list[str] = []
    with pytest.raises(BuildError) as info:
        vendor(["Django>=6.1,<6.2"], interp, tmp_path / "site", no_deps=True, say=said.append)
    line = str(info.value)
    assert line.startswith(
        "requirement 'Django>=6.1,<6.2' could not be installed: the versions pip found for it "
        "need another Python ("
    )
    assert f"Requires-Python >=3.12) than the image's {interp.version}: allow a version" in line
    assert "(the newest pip found is 5.2." in line
    assert said == []


def test_other_python_reads_pips_account() -> None:
    output = (
        "ERROR: Ignored the following versions that require a different python version: "
        "2.0 Requires-Python >=3.12; 2.10 Requires-Python >=3.13; 2.9 Requires-Python >=3.12; "
        "3.0rc1 Requires-Python >=3.14\n"
        "ERROR: Could not find a version that satisfies the requirement demo>=2 "
        "(from versions: 1.0, 1.9, 1.10, 2.0b1)\n"
        "ERROR: No matching distribution found for demo>=2\n"
    )
    assert sdists.other_python("demo>=2", output, "3.11.2") == (
        "requirement 'demo>=2' could not be installed: the versions pip found for it need "
        "another Python (2.10 says Requires-Python >=3.13) than the image's 3.11.2: allow a "
        "version made for it (the newest pip found is 1.10)"
    )
    # No wheel of it at all: the source distribution is the way (sdists.py), not the Python.
    none = output.replace("1.0, 1.9, 1.10, 2.0b1", "none")
    assert sdists.other_python("demo>=2", none, "3.11.2") is None
    assert sdists.other_python("demo>=2", output.split("\n", 1)[1], "3.11.2") is None
