"""ctypes.util.find_library inside an image: its own libraries, with no ldconfig to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from summon.runtime.findlib import find_library


def test_find_library_answers_the_soname_as_ldconfig_would(tmp_path: Path) -> None:
    # python-magic asks find_library("magic"): the stdlib ran /sbin/ldconfig, which an image
    # lacks, and the sandbox refused the fork with a line saying to use threads.
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("libmagic.so.1", "libmagic.so", "libmagicx.so.2", "libsndfile.so.1"):
        (lib / name).write_bytes(b"")
    folders = (str(tmp_path / "none"), str(lib))
    assert find_library("magic", folders) == "libmagic.so.1"
    assert find_library("sndfile", folders) == "libsndfile.so.1"
    assert find_library("cairo", folders) is None
    assert find_library("magi", folders) is None  # not a prefix match


def test_installed_it_is_ctypes_utils_find_library_and_runs_no_program() -> None:
    code = (
        "import subprocess, sys\n"
        "from summon.runtime import findlib\n"
        "findlib.install()\n"
        "def refused(*a, **k):\n"
        "    raise AssertionError('a program was started')\n"
        "subprocess.Popen = refused\n"
        "import ctypes.util\n"
        "assert ctypes.util.find_library is findlib.find_library\n"
        "print(ctypes.util.find_library('c'))\n"
    )
    src = str(Path(__file__).resolve().parents[3] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "libc.so.6\n"


def test_installed_platform_answers_without_a_program() -> None:
    # Sanic's start banner (platform.platform()) ran `uname -p`: the sandbox refused the
    # fork with a "refused fork" line at every start of the app.
    code = (
        "import subprocess, sys\n"
        "from summon.runtime import findlib\n"
        "findlib.install()\n"
        "def refused(*a, **k):\n"
        "    raise AssertionError('a program was started')\n"
        "subprocess.Popen = refused\n"
        "subprocess.check_output = refused\n"
        "import platform, struct\n"
        "assert platform.processor() == ''\n"
        "assert platform.platform().startswith('Linux-')\n"
        "bits, _ = platform.architecture()\n"
        "assert bits == f'{struct.calcsize(\"P\") * 8}bit', bits\n"
        "print('ok')\n"
    )
    src = str(Path(__file__).resolve().parents[3] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
