"""The compatibility corpus: real apps from PyPI at pinned versions, each a folder under apps/.

Each app's pyproject.toml has its [tool.summon] manifest and a [tool.corpus] table that says
what it covers and how to check it; the tests (test_corpus.py) and the benchmark
(benchmarks/bench_compat.py) both read the corpus from here.

Every app answers the same three routes: GET / (a page holding "hello from NAME"), POST /echo
with a JSON body (answers {"echo": BODY, ...}), and GET /error (the handler raises: a 5xx,
after which the app still answers). Apps that bring their own server listen on $PORT
(default 8000), so that the same script runs bare on the host.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
ECHO_BODY = {"n": 42, "tags": ["x", "€"]}


@dataclass(frozen=True)
class CorpusApp:
    name: str
    folder: Path
    framework: str
    version: str  # of the framework's distribution, from the pinned requirement
    server: str  # "summon runtime (WSGI)", "own (uvicorn on kernel sockets)"...
    covers: tuple[str, ...]
    entry: str
    requirements: tuple[str, ...]
    error_status: int  # what GET /error answers
    direct: bool  # also checked with network = "direct"
    qemu: bool  # also checked on the qemu target

    @property
    def runtime_served(self) -> bool:
        """Served by summon's runtime (a WSGI/ASGI entry): runs on every target and stack."""
        return ":" in self.entry

    @property
    def ref(self) -> str:
        return f"corpus-{self.name.replace('_', '-')}:test"


def load(folder: Path) -> CorpusApp:
    doc = tomllib.loads((folder / "pyproject.toml").read_text())
    summon, corpus = doc["tool"]["summon"], doc["tool"]["corpus"]
    requirements = tuple(summon.get("requirements", ()))
    dist = corpus.get("distribution", "")
    version = next(
        (r.split("==", 1)[1] for r in requirements if r.split("==")[0].lower() == dist.lower()),
        "stdlib",
    )
    return CorpusApp(
        name=folder.name,
        folder=folder,
        framework=corpus["framework"],
        version=version,
        server=corpus["server"],
        covers=tuple(corpus["covers"]),
        entry=summon["entry"],
        requirements=requirements,
        error_status=int(corpus.get("error_status", 500)),
        direct=bool(corpus.get("direct", False)),
        qemu=bool(corpus.get("qemu", False)),
    )


# The session fixture's getter: (app, network) -> the tag of its image (conftest.py).
BuildImage = Callable[[CorpusApp, str], str]


def corpus() -> list[CorpusApp]:
    return [load(p) for p in sorted(APPS.iterdir()) if (p / "pyproject.toml").is_file()]
