"""Fixtures every test group shares: the fake target, and a tiny stand-in image rootfs.

fake_target registers tests/fakes.py's FakeTarget as "fake" in summon.targets for one test.

_release_verified_roots and its module and session siblings detach the sandbox's verified
roots (/run/summon/rootfs) of the stores a test, a module or the session made, when that scope
ends: pytest keeps the folders until the session is over, so their blobs are not deleted and
no sweep (store/rootfs_artifact.sweep_mounts) would take the mounts; 40-120 of them stayed after
a run, and every container start after it copied them all.

test_rootfs copies the host interpreter, its shared libraries and most of the stdlib into a
temporary folder, shaped like docs/image-format.md says a real image is, for the sandbox's
integration and security tests that need a root filesystem but not a build.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeTarget
from testroot import APP_DIR, build_test_rootfs

from summon import targets


def _release_roots_under(folder: Path, keep: Collection[Path] = ()) -> None:
    """Detach the verified roots whose blob is (or was) below folder, but those in keep."""
    from summon.store import rootfs_artifact  # (not at collection: tests count imports)

    top = os.path.realpath(folder) + "/"
    for where, backing in rootfs_artifact.verified_mounts().items():
        if where not in keep and backing.removesuffix(" (deleted)").startswith(top):
            rootfs_artifact.release_mounts({"sha256:" + where.name})


@pytest.fixture(autouse=True)
def _release_verified_roots(request: pytest.FixtureRequest) -> Iterator[None]:
    """The roots of the stores in the test's own tmp_path, when the test ends."""
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is not None:
        _release_roots_under(tmp)


@pytest.fixture(autouse=True, scope="module")
def _release_module_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The roots first mounted in the module from stores of this session (its module-scoped
    stores'), when the module ends; a session-wide store's is mounted again if used again."""
    from summon.store import rootfs_artifact

    before = set(rootfs_artifact.verified_mounts())
    yield
    _release_roots_under(tmp_path_factory.getbasetemp(), keep=before)


@pytest.fixture(autouse=True, scope="session")
def _release_session_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every root from a store of this session, when it ends."""
    yield
    _release_roots_under(tmp_path_factory.getbasetemp())


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
