"""Fixtures every test group shares: the fake target, and a tiny stand-in image rootfs.

fake_target registers tests/fakes.py's FakeTarget as "fake" in summon.targets for one test.

test_rootfs copies the host interpreter, its shared libraries and most of the stdlib into a
temporary folder, shaped like docs/image-format.md says a real image is, for the sandbox's
integration and security tests that need a root filesystem but not a build.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeTarget
from testroot import APP_DIR, build_test_rootfs

from summon import targets


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
