"""Tests for probing the image's interpreter."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from summon.build.python import Interpreter, platform_tags, probe_interpreter
from summon.errors import BuildError, UserError


def test_debian_python(interp: Interpreter) -> None:
    assert interp.executable == Path("/usr/bin/python3.11")
    assert interp.version_info == (3, 11)
    assert interp.version.startswith("3.11.")
    assert interp.xy == "3.11"
    assert interp.abi == "cp311"
    assert interp.soabi == "cpython-311-x86_64-linux-gnu"
    assert interp.ext_suffixes[0] == ".cpython-311-x86_64-linux-gnu.so"
    assert ".abi3.so" in interp.ext_suffixes
    assert interp.prefix == Path("/usr")
    assert interp.stdlib == Path("/usr/lib/python3.11")
    assert interp.dynload == Path("/usr/lib/python3.11/lib-dynload")
    assert (interp.stdlib / "os.py").is_file()
    # Debian builds these into the binary; the image needs no file for them.
    assert {"sys", "_socket", "_sre", "pyexpat", "zlib"} <= interp.builtin_modules
    assert "_ssl" not in interp.builtin_modules
    assert interp.frozen_modules is not None
    assert {"os", "codecs", "io", "abc", "posixpath"} <= interp.frozen_modules
    assert interp.machine == "x86_64"


def test_libc_and_tags_match_this_host(interp: Interpreter) -> None:
    # The host python runs on the same glibc as /usr/bin/python3.11.
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
    major, minor = (int(x) for x in version.split(".")[:2])
    assert interp.libc == (name, (major, minor))
    tags = interp.platform_tags
    assert tags[0] == f"manylinux_{major}_{minor}_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    assert "manylinux1_x86_64" in tags
    assert tags[-1] == "linux_x86_64"
    assert len(tags) == len(set(tags))


def test_symlink_resolves_to_real_file(interp: Interpreter) -> None:
    link = Path("/usr/bin/python3")
    if not link.is_symlink() or link.resolve() != interp.executable:
        pytest.skip("/usr/bin/python3 is not a link to python3.11 here")
    other = probe_interpreter(str(link))
    assert other.executable == interp.executable
    assert other.requested == link


def test_platform_tags_order_and_legacy_names() -> None:
    tags = platform_tags(("glibc", (2, 19)), "x86_64")
    assert tags[:3] == ("manylinux_2_19_x86_64", "manylinux_2_18_x86_64", "manylinux_2_17_x86_64")
    assert tags.index("manylinux2014_x86_64") == tags.index("manylinux_2_17_x86_64") + 1
    assert tags.index("manylinux2010_x86_64") == tags.index("manylinux_2_12_x86_64") + 1
    assert "manylinux_2_20_x86_64" not in tags


def test_platform_tags_aarch64_has_no_manylinux1() -> None:
    tags = platform_tags(("glibc", (2, 28)), "aarch64")
    assert "manylinux2014_aarch64" in tags
    assert not any(t.startswith(("manylinux1", "manylinux2010")) for t in tags)
    assert tags[-1] == "linux_aarch64"
    assert min(int(t.split("_")[2]) for t in tags if t.startswith("manylinux_")) == 17


def test_platform_tags_musl_and_unknown_libc() -> None:
    assert platform_tags(("musl", (1, 2)), "x86_64") == (
        "musllinux_1_2_x86_64", "musllinux_1_1_x86_64", "musllinux_1_0_x86_64", "linux_x86_64"
    )
    assert platform_tags(None, "x86_64") == ("linux_x86_64",)


def test_missing_interpreter_is_a_user_error() -> None:
    with pytest.raises(BuildError) as info:
        probe_interpreter("/usr/bin/python3.99")
    assert isinstance(info.value, UserError)
    assert str(info.value) == (
        "interpreter /usr/bin/python3.99 not found; install it (apt-get install python3.99) "
        "or set python = ... in the manifest"
    )


def test_relative_path_is_refused() -> None:
    with pytest.raises(BuildError, match="not an absolute path"):
        probe_interpreter("python3.11")


def test_not_executable(tmp_path: Path) -> None:
    f = tmp_path / "python3.11"
    f.write_text("#!/bin/sh\n")
    with pytest.raises(BuildError, match="not an executable file"):
        probe_interpreter(str(f))


def _fake(tmp_path: Path, body: str) -> str:
    f = tmp_path / "fakepython"
    f.write_text("#!/bin/sh\n" + body + "\n")
    f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return str(f)


def test_not_a_python(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is not a working Python 3"):
        probe_interpreter(_fake(tmp_path, "echo hello; exit 3"))


def test_not_cpython(tmp_path: Path) -> None:
    fake = _fake(tmp_path, """echo '{"implementation": "pypy", "version_info": [3, 11, 0]}'""")
    with pytest.raises(BuildError, match="is pypy, not CPython"):
        probe_interpreter(fake)


def test_too_old(tmp_path: Path) -> None:
    fake = _fake(tmp_path, """echo '{"implementation": "cpython", "version_info": [3, 10, 12]}'""")
    with pytest.raises(BuildError, match=r"is Python 3\.10\.12; summon needs 3\.11 or newer"):
        probe_interpreter(fake)
