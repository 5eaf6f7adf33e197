"""Fixtures of the compatibility corpus: one `summon build` per app (and variant) per session.

The builds start together on first use, two at a time (the machines have two cores), and each
test waits only for the image it needs. The summon under test has a home of its own, but
shares the user's cache (pip downloads, import scans, the qemu target's kernels): those are
things summon can make again, and remaking them would cost minutes, not correctness.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_apps import BuildImage, CorpusApp, corpus
from summon_cli import Summon

BUILD_WORKERS = 2


def user_cache() -> str:
    value = os.environ.get("XDG_CACHE_HOME", "")
    return value if os.path.isabs(value) else str(Path.home() / ".cache")


@pytest.fixture(scope="session")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    s = Summon(tmp_path_factory.mktemp("corpus-home"))
    s.env["XDG_CACHE_HOME"] = user_cache()
    return s


def variant(app: CorpusApp, dest: Path, network: str) -> Path:
    """A copy of app's folder whose manifest asks for another network."""
    folder = dest / f"{app.name}-{network}"
    if not folder.exists():
        shutil.copytree(app.folder, folder, ignore=shutil.ignore_patterns("__pycache__"))
        manifest = folder / "pyproject.toml"
        text = manifest.read_text()
        head, sep, tail = text.partition("[tool.summon]\n")
        manifest.write_text(f'{head}{sep}network = "{network}"\n{tail}')
    return folder


@pytest.fixture(scope="session")
def corpus_image(
    summon: Summon, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[BuildImage]:
    """image(app, network) -> the tag of app built for that network ("socket" or "direct").

    Only the apps the session's selected tests name are built (`-k flask` builds one).
    """
    selected = " ".join(item.nodeid for item in request.session.items)
    apps = [app for app in corpus() if app.name in selected]
    variants = tmp_path_factory.mktemp("variants")
    pool = ThreadPoolExecutor(BUILD_WORKERS, thread_name_prefix="corpus-build")
    futures: dict[tuple[str, str], Future[tuple[int, str]]] = {}

    def submit(app: CorpusApp, network: str) -> None:
        folder = app.folder if network == "socket" else variant(app, variants, network)
        ref = image_ref(app, network)
        futures[(app.name, network)] = pool.submit(
            lambda: (lambda r: (r.returncode, r.stderr))(summon("build", str(folder), "-t", ref))
        )

    # Every build is queued at once, socket images first: the sandbox tests need them first.
    for app in apps:
        submit(app, "socket")
    for app in apps:
        if app.direct and "direct" in selected:
            submit(app, "direct")

    def get(app: CorpusApp, network: str) -> str:
        if (app.name, network) not in futures:
            submit(app, network)
        code, err = futures[(app.name, network)].result()
        assert code == 0, f"summon build {app.name} ({network}): {err}"
        return image_ref(app, network)

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


def image_ref(app: CorpusApp, network: str) -> str:
    return app.ref if network == "socket" else app.ref.replace(":", f"-{network}:")
