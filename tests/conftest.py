"""Fixtures every test group shares: the fake target, and a tiny stand-in image rootfs.

fake_target registers tests/fakes.py's FakeTarget as "fake" in summon.targets for one test.

test_rootfs copies the host interpreter, its shared libraries and most of the stdlib into a
temporary folder, shaped like docs/image-format.md says a real image is, for the sandbox's
integration and security tests that need a root filesystem but not a build.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeTarget

from summon import targets

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


@pytest.fixture(scope="session")
def test_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide minimal rootfs; tests add their scripts under /app with `app_script`."""
    return build_test_rootfs(tmp_path_factory.mktemp("rootfs"))


AppScript = Callable[[str], tuple[str, ...]]


@pytest.fixture
def app_script(test_rootfs: Path) -> AppScript:
    """Write a script at /app/<unique>.py in the test rootfs and return the argv that runs it."""

    def write(source: str) -> tuple[str, ...]:
        name = f"x_{uuid.uuid4().hex[:12]}.py"
        (test_rootfs / APP_DIR / name).write_text(source)
        return ("/usr/bin/python3.11", "-S", "-E", f"/{APP_DIR}/{name}")

    return write


@pytest.fixture
def fake_target() -> Iterator[type[FakeTarget]]:
    """FakeTarget registered as target "fake" for the test, and unregistered after."""
    targets.register("fake", FakeTarget)
    try:
        yield FakeTarget
    finally:
        targets.unregister("fake")


@pytest.fixture
def sandbox_target(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A SandboxTarget with a runc state folder of the test's own."""
    from summon.targets.sandbox import SandboxTarget

    return SandboxTarget(root=tmp_path_factory.mktemp("runc"))


@pytest.fixture
def spec_for(test_rootfs: Path, tmp_path: Path) -> Any:
    """make(argv, **RunSpec fields): a RunSpec on the test rootfs with a fresh name."""
    from summon.targets.base import RunSpec

    def make(argv: tuple[str, ...], **kw: Any) -> RunSpec:
        name = kw.pop("name", f"t-{uuid.uuid4().hex[:10]}")
        state = tmp_path / name
        return RunSpec(
            name=name, image="test", rootfs=test_rootfs, app_config={}, argv=argv,
            state_dir=state, **kw,
        )  # fmt: skip

    return make
