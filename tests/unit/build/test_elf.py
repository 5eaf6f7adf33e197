"""Tests for the shared-library closure read from ELF dynamic sections."""

from __future__ import annotations

import glob
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from summon.build.elf import (
    Library,
    LibraryClosure,
    host_libraries,
    iter_elf_files,
    library_closure,
    loader_dirs,
    read_dynamic,
    read_ld_so_conf,
    undefined_symbols,
)
from summon.errors import BuildError

PYTHON = Path("/usr/bin/python3.11")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def so(c: LibraryClosure, soname: str) -> Library:
    found = c.get(soname)
    assert found is not None, f"{soname} not in {c.sonames()}"
    return found


def test_python_needs_exactly_four_libraries() -> None:
    if not PYTHON.exists():
        pytest.skip("no /usr/bin/python3.11")
    c = library_closure([PYTHON])
    assert c.sonames() == ["libc.so.6", "libexpat.so.1", "libm.so.6", "libz.so.1"]
    assert c.interpreter is not None
    assert c.interpreter.image_path == "/lib64/ld-linux-x86-64.so.2"
    assert c.interpreter.host_path == Path("/lib64/ld-linux-x86-64.so.2").resolve()
    # The loader is in libraries too: copying libraries is all an image needs.
    assert c.interpreter in c.libraries
    assert len(c.libraries) == 5
    for one in c.libraries:
        if one is not c.interpreter:
            assert one.image_path == f"/lib/x86_64-linux-gnu/{one.soname}"
        assert one.host_path.is_file() and not one.host_path.is_symlink()
        assert one.size == one.host_path.stat().st_size
        assert one.needed_by == (PYTHON,)
    files = c.files()
    assert len(files) == 5
    assert c.size() == sum(p.stat().st_size for p in files.values())


def test_ssl_extension_pulls_libssl_and_libcrypto() -> None:
    ssl = glob.glob("/usr/lib/python3.11/lib-dynload/_ssl.*.so")
    if not ssl or not PYTHON.exists():
        pytest.skip("no _ssl extension module")
    c = library_closure([PYTHON, Path(ssl[0])])
    assert {"libssl.so.3", "libcrypto.so.3"} <= set(c.sonames())
    assert so(c, "libssl.so.3").needed_by == (Path(ssl[0]),)
    assert set(so(c, "libc.so.6").needed_by) == {PYTHON, Path(ssl[0])}
    # libc needs the loader by its soname: the program interpreter answers, no second copy.
    assert "ld-linux-x86-64.so.2" not in c.sonames()
    assert [one.soname for one in c.libraries].count("ld-linux-x86-64.so.2") == 1


def test_loader_dirs_match_this_loader() -> None:
    ld = Path("/lib64/ld-linux-x86-64.so.2")
    out = subprocess.run([str(ld), "--help"], capture_output=True, text=True, check=False).stdout
    listed = tuple(
        line.split()[0]
        for line in out.splitlines()
        if line.strip().endswith("(system search path)")
    )
    if not listed:
        pytest.skip("this loader does not list its search path")
    assert loader_dirs("EM_X86_64") == listed


def _compile(tmp: Path, name: str, source: str, *args: str) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(source)
    out = tmp / name
    subprocess.run(["gcc", "-o", str(out), str(src), *args], check=True, capture_output=True)
    return out


def _make_libs(tmp: Path) -> Path:
    """lib/libbar.so, and lib/libfoo.so which needs libbar.so and has no search path."""
    lib = tmp / "lib"
    lib.mkdir()
    _compile(lib, "libbar.so", "int bar(void) { return 1; }\n", "-shared", "-fPIC")
    _compile(
        lib,
        "libfoo.so",
        "int bar(void);\nint foo(void) { return bar(); }\n",
        "-shared",
        "-fPIC",
        f"-L{lib}",
        "-lbar",
    )
    return lib


MAIN_C = "int foo(void);\nint main(void) { return foo(); }\n"


def _prog(tmp: Path, name: str, lib: Path, *args: str) -> Path:
    """A program needing libfoo.so; -rpath-link lets ld check libbar without recording it."""
    return _compile(tmp, name, MAIN_C, f"-L{lib}", "-lfoo", f"-Wl,-rpath-link,{lib}", *args)


@needs_gcc
def test_missing_library_names_it_and_the_binary(tmp_path: Path) -> None:
    lib = _make_libs(tmp_path)
    prog = _prog(tmp_path, "prog", lib)
    with pytest.raises(BuildError) as info:
        library_closure([prog])
    assert str(info.value).startswith(f"shared library libfoo.so needed by {prog} was not found")
    assert "install the package that provides it" in str(info.value)


@needs_gcc
def test_an_optional_binary_may_lack_a_library_and_takes_none_of_its_own_in(
    tmp_path: Path,
) -> None:
    """An extension module the trace never loaded, whose library this host lacks (numba's
    TBB pool without TBB): it cannot load here either, so the build goes on without it."""
    lib = _make_libs(tmp_path)
    with_rpath = _prog(tmp_path, "with_rpath", lib, f"-Wl,--disable-new-dtags,-rpath,{lib}")
    (lib / "libbar.so").unlink()  # libfoo.so is found (RPATH), libbar.so it needs is not
    c = library_closure([PYTHON, with_rpath], optional=[with_rpath])
    assert c.unresolved == {with_rpath: ("libbar.so", lib / "libfoo.so")}
    assert c.get("libfoo.so") is None  # only the unloadable binary needed it
    assert c.get("libc.so.6") is not None  # the rest resolves as ever
    # Not optional: the same gap is an error, as before.
    with pytest.raises(BuildError, match=r"libbar\.so needed by"):
        library_closure([PYTHON, with_rpath])


@needs_gcc
def test_runpath_with_origin(tmp_path: Path) -> None:
    lib = _make_libs(tmp_path)
    # RUNPATH (new dtags) applies to prog's own needs only; libfoo also carries one for libbar.
    _compile(
        lib,
        "libfoo.so",
        "int bar(void);\nint foo(void) { return bar(); }\n",
        "-shared",
        "-fPIC",
        f"-L{lib}",
        "-lbar",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
    )
    prog = _prog(tmp_path, "prog", lib, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")
    assert read_dynamic(prog).runpath == ("$ORIGIN/lib",)
    c = library_closure([prog])
    assert so(c, "libfoo.so").host_path == lib / "libfoo.so"
    assert so(c, "libbar.so").host_path == lib / "libbar.so"
    # Found through RUNPATH, but placed where the loader looks with no cache.
    assert so(c, "libfoo.so").image_path == "/lib/x86_64-linux-gnu/libfoo.so"


@needs_gcc
def test_rpath_is_inherited_but_runpath_is_not(tmp_path: Path) -> None:
    lib = _make_libs(tmp_path)  # libfoo needs libbar and has no path of its own
    old = _prog(tmp_path, "old", lib, "-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib")
    assert read_dynamic(old).rpath == ("$ORIGIN/lib",)
    c = library_closure([old])
    assert so(c, "libbar.so").host_path == lib / "libbar.so"

    new = _prog(tmp_path, "new", lib, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")
    with pytest.raises(BuildError, match=rf"libbar\.so needed by {lib}/libfoo\.so \(loaded for"):
        library_closure([new])


@needs_gcc
def test_ld_so_conf_include_globs(tmp_path: Path) -> None:
    lib = _make_libs(tmp_path)
    prog = _prog(tmp_path, "prog", lib)
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "b.conf").write_text(f"# ours\n{lib}\n")
    (confd / "a.conf").write_text("/nonexistent/one, /nonexistent/two\n")
    conf = tmp_path / "ld.so.conf"
    conf.write_text("include conf.d/*.conf\nhwcap 0 nosegneg\n")
    assert read_ld_so_conf(conf) == ["/nonexistent/one", "/nonexistent/two", str(lib)]
    c = library_closure([prog], ld_so_conf=conf)
    assert so(c, "libfoo.so").host_path == lib / "libfoo.so"
    assert so(c, "libfoo.so").image_path == "/lib/x86_64-linux-gnu/libfoo.so"
    assert so(c, "libc.so.6").needed_by == (prog,)


def _elf32(path: Path) -> None:
    """A bare 32-bit i386 ELF header: what a multilib folder holds."""
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header = struct.pack("<HHIIIIIHHHHHH", 3, 3, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    path.write_bytes(ident + header)


@needs_gcc
def test_wrong_class_candidates_are_skipped(tmp_path: Path) -> None:
    lib = _make_libs(tmp_path)
    lib32 = tmp_path / "lib32"
    lib32.mkdir()
    _elf32(lib32 / "libfoo.so")
    assert read_dynamic(lib32 / "libfoo.so").elfclass == 32
    # DT_RPATH lists lib32 first, as a multilib system's search order might.
    prog = _prog(tmp_path, "prog", lib, "-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib32:$ORIGIN/lib")
    c = library_closure([prog])
    assert so(c, "libfoo.so").host_path == lib / "libfoo.so"


def test_not_an_elf_file(tmp_path: Path) -> None:
    f = tmp_path / "script.so"
    f.write_text("#!/bin/sh\n")
    with pytest.raises(BuildError, match="is not a valid ELF file"):
        library_closure([f])
    assert list(iter_elf_files([f, PYTHON])) == ([PYTHON] if PYTHON.exists() else [])


def test_mixed_architectures_are_refused(tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.skip("no /usr/bin/python3.11")
    _elf32(tmp_path / "x86.so")
    with pytest.raises(BuildError, match="an image holds one architecture"):
        library_closure([PYTHON, tmp_path / "x86.so"])


def test_no_binaries() -> None:
    c = library_closure([])
    assert c.interpreter is None and c.libraries == []


def test_a_dlopened_library_goes_in_itself() -> None:
    """libgcc_s.so.1 is named by no DT_NEEDED; glibc dlopens it for pthread_exit, so an image
    without it aborts when a thread is ended at shutdown."""
    gcc_s = Path("/lib/x86_64-linux-gnu/libgcc_s.so.1")
    if not PYTHON.exists() or not gcc_s.exists():
        pytest.skip("no /usr/bin/python3.11 or libgcc_s.so.1")
    assert "libgcc_s.so.1" not in library_closure([PYTHON]).sonames()
    c = library_closure([PYTHON], dlopened=[gcc_s])
    lib = so(c, "libgcc_s.so.1")
    assert lib.image_path == "/lib/x86_64-linux-gnu/libgcc_s.so.1"
    assert lib.host_path == gcc_s.resolve() and lib.needed_by == (PYTHON,)
    # What it needs comes too (libc is there anyway), and nothing appears twice.
    assert c.sonames() == sorted({*library_closure([PYTHON]).sonames(), "libgcc_s.so.1"})


def test_a_library_the_app_loaded_by_name_goes_in_and_one_needed_keeps_its_path(
    tmp_path: Path,
) -> None:
    """python-magic's ctypes.CDLL("libmagic.so.1") at import: the build's trace had it mapped
    but no DT_NEEDED named it, and the image failed its check ("failed to find libmagic")."""
    anl = Path("/usr/lib/x86_64-linux-gnu/libanl.so.1")
    libc = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
    if not PYTHON.exists() or not anl.exists() or not libc.exists():
        pytest.skip("no /usr/bin/python3.11 or Debian's libc6 under /usr/lib")
    before = library_closure([PYTHON])
    assert "libanl.so.1" not in before.sonames()
    c = library_closure([PYTHON], loaded=[anl, libc])
    assert so(c, "libanl.so.1").host_path == anl.resolve()
    assert c.sonames() == sorted({*before.sonames(), "libanl.so.1"})
    # libc, which the interpreter needs, stays where the loader's search found it.
    assert so(c, "libc.so.6").image_path == so(before, "libc.so.6").image_path


def test_host_libraries_are_the_hosts_own_not_a_packages_or_an_extension(tmp_path: Path) -> None:
    vendored = tmp_path / "numpy.libs" / "libopenblas.so"
    vendored.parent.mkdir()
    vendored.write_bytes(b"\x7fELF")
    anl = Path("/usr/lib/x86_64-linux-gnu/libanl.so.1")
    dynload = Path("/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so")
    gone = Path("/usr/lib/x86_64-linux-gnu/libsummon-test-deleted.so.1")
    conf = tmp_path / "ld.so.conf"
    conf.write_text("")
    assert host_libraries([vendored, dynload, gone, anl], conf) == ([anl] if anl.exists() else [])


@needs_gcc
def test_the_legacy_stat_wrappers_an_object_imports_are_found(tmp_path: Path) -> None:
    """A wheel built against glibc before 2.33 (manylinux2014) imports __xstat and __lxstat,
    which today's glibc answers with the legacy stat and lstat syscalls: duckdb's file scans
    were refused `stat` in the sandbox. Only an import counts, not a definition (libc's)."""
    src = tmp_path / "old.c"
    src.write_text(
        "extern int __xstat(int, const char *, void *);\n"
        "extern int __lxstat(int, const char *, void *);\n"
        "int probe(const char *p, void *b) { return __xstat(1, p, b) + __lxstat(1, p, b); }\n"
        "int __xstat64(int v, const char *p, void *b) { return v; }\n"  # defined here
    )
    old = tmp_path / "old.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", old, src], check=True)
    plain = tmp_path / "plain.c"
    plain.write_text("int __lxstat_like(void) { return 0; }\n")
    new = tmp_path / "new.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", new, plain], check=True)
    wanted = {"__xstat", "__xstat64", "__lxstat", "__lxstat64"}
    assert undefined_symbols([old], wanted) == {"__xstat", "__lxstat"}
    assert undefined_symbols([new, src, tmp_path / "gone.so"], wanted) == set()
    assert undefined_symbols([Path("/lib/x86_64-linux-gnu/libc.so.6")], wanted) == set()
