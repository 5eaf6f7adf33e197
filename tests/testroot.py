"""A tiny stand-in image rootfs: the host interpreter, its shared libraries and most of the
stdlib copied into a folder shaped like docs/image-format.md says a real image is, for the
sandbox's integration and security tests that need a root filesystem but not a build.

A module of its own (not conftest.py) so that helpers anywhere under tests/ import it by one
unambiguous name: "conftest" names a different module in each test folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HOST_PYTHON = Path("/usr/bin/python3.11")
HOST_STDLIB = Path("/usr/lib/python3.11")
# The interpreter's own closure (ldd /usr/bin/python3.11) plus libffi, which _ctypes needs: the
# tests use ctypes inside the sandbox to make raw syscalls (mount, ...) the stdlib lacks.
HOST_LIBS = (
    Path("/lib64/ld-linux-x86-64.so.2"),
    Path("/lib/x86_64-linux-gnu/libc.so.6"),
    Path("/lib/x86_64-linux-gnu/libm.so.6"),
    Path("/lib/x86_64-linux-gnu/libz.so.1"),
    Path("/lib/x86_64-linux-gnu/libexpat.so.1"),
    Path("/lib/x86_64-linux-gnu/libffi.so.8"),
)
# Big stdlib parts no test app imports; leaving them out keeps the copy quick.
STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "site-packages",
    "dist-packages",
    "config-3.11-x86_64-linux-gnu",
}
MOUNT_POINTS = ("proc", "dev", "sys", "tmp")
APP_DIR = "app"


def build_test_rootfs(dest: Path) -> Path:
    """Lay a minimal python3.11 root filesystem out in dest and return dest."""
    if not HOST_PYTHON.exists():
        pytest.skip(f"{HOST_PYTHON} is missing: apt-get install python3.11-minimal")
    dest.mkdir(parents=True, exist_ok=True)
    # The sandbox's app runs as an unprivileged uid: the root must be open to it, as an
    # image's is (pytest makes its folders 0700).
    dest.chmod(0o755)
    for src in (HOST_PYTHON, *HOST_LIBS):
        target = dest / src.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy the file the symlink names, at the symlink's path, as the image builder does.
        shutil.copy2(src.resolve(), target)

    def skip(folder: str, names: list[str]) -> set[str]:
        return STDLIB_SKIP & set(names) if Path(folder) == HOST_STDLIB else set()

    shutil.copytree(HOST_STDLIB, dest / HOST_STDLIB.relative_to("/"), ignore=skip, symlinks=True)
    for name in (*MOUNT_POINTS, APP_DIR):
        (dest / name).mkdir(exist_ok=True)
    # runc gives the tmpfs on /tmp the mode of the folder under it: 1777, as in an image.
    (dest / "tmp").chmod(0o1777)
    return dest
