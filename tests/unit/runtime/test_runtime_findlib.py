"""ctypes.util.find_library inside an image: its own libraries, with no ldconfig to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from summon.runtime.findlib import find_library


def _in_fresh_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """code run by a fresh interpreter that imports summon from this tree (env: more)."""
    src = str(Path(__file__).resolve().parents[3] / "src")
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, **env},
        check=False,
    )


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
    out = _in_fresh_python(code)
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
    out = _in_fresh_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"


def test_installed_a_program_the_image_lacks_is_not_found_before_any_fork(
    tmp_path: Path,
) -> None:
    """sentry-sdk runs `git rev-parse HEAD` at init, matplotlib `fc-list`: each ready for a
    host without them, and each start of the app printed "refused fork" in the sandbox."""
    code = (
        "import subprocess, sys\n"
        "from summon.runtime import findlib\n"
        "findlib.install()\n"
        "started = []\n"
        "sys.addaudithook(lambda e, a: started.append(a[0]) if e == 'subprocess.Popen' else 0)\n"
        "def attempt(*args, **kwargs):\n"
        "    try:\n"
        "        out = subprocess.run(*args, capture_output=True, **kwargs)\n"
        "        return out.stdout.decode().strip()\n"
        "    except FileNotFoundError as e:\n"
        "        return f'{e.errno} {e.filename}'\n"
        "print(attempt(['git', 'rev-parse', 'HEAD']))\n"
        "print(attempt(['fc-list'], env={'PATH': '/nonexistent'}))\n"
        "print(attempt(['/nonexistent/fc-list', '--format=%{file}']))\n"
        "print(attempt('echo hi', shell=True, executable='/nonexistent/sh'))\n"
        "print(attempt([sys.executable, '-c', 'print(42)']))\n"
        "print(started == [sys.executable])\n"
    )
    out = _in_fresh_python(code, PATH=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "2 git",
        "2 fc-list",
        "2 /nonexistent/fc-list",
        "2 /nonexistent/sh",
        "42",  # a program that is there still starts (the sandbox then refuses the fork)
        "True",
    ]
