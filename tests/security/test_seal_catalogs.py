"""Templates and message catalogs first used after the seal, built for real (Jinja2 from PyPI).

Rule seal.code lets through two kinds of code made after the seal from files the image
ships: what Jinja makes of a template file, named by the loader's path, which is relative to
the working folder when the folder is (Starlette's and FastAPI's `Jinja2Templates(directory=
"templates")`: every page the warm-up had not rendered answered 500); and gettext's function
over a catalog's Plural-Forms expression, compiled when the catalog is loaded, at its
language's first request (Django's admin answered 500 in every language but its default).
"""

from __future__ import annotations

import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_apps import APPS, needs_sandbox
from summon_cli import Summon, answer, free_port

pytestmark = [*needs_sandbox, pytest.mark.slow]

FRENCH = "nplurals=2; plural=(n > 1);"
POLISH = "nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);"
FILES = {"fr": (FRENCH, ["%(num)d fichier", "%(num)d fichiers"]),
         "pl": (POLISH, ["%(num)d plik", "%(num)d pliki", "%(num)d plików"])}  # fmt: skip


def write_mo(path: Path, plural: str, forms: list[str]) -> None:
    """A GNU .mo catalog with its header and the one plural message the app shows."""
    header = f"Content-Type: text/plain; charset=UTF-8\nPlural-Forms: {plural}\n"
    messages = {"": header, "%(num)d file\0%(num)d files": "\0".join(forms)}
    keys = sorted(messages)
    ids, strs = b"", b""
    spans = []
    for key in keys:
        k, v = key.encode(), messages[key].encode()
        spans.append((len(k), len(ids), len(v), len(strs)))
        ids, strs = ids + k + b"\0", strs + v + b"\0"
    n = len(keys)
    ids_at = 28 + 16 * n
    strs_at = ids_at + len(ids)
    out = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    out += b"".join(struct.pack("<2I", length, ids_at + at) for length, at, _, _ in spans)
    out += b"".join(struct.pack("<2I", length, strs_at + at) for _, _, length, at in spans)
    path.parent.mkdir(parents=True)
    path.write_bytes(out + ids + strs)


@pytest.fixture(scope="module")
def served(
    summon: Summon, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, tuple[int, str]], str]]:
    app = tmp_path_factory.mktemp("catalogs") / "app"
    shutil.copytree(APPS / "catalogs", app)
    for lang, (plural, forms) in FILES.items():
        write_mo(app / "locale" / lang / "LC_MESSAGES" / "messages.mo", plural, forms)
    summon.ok("build", str(app), "-t", "catalogs:test")
    port = free_port()
    proc = summon.popen("run", "catalogs:test", "--target", "sandbox", "-p", f"{port}:8000")
    paths = ["/page?lang=fr&n=1", "/page?lang=fr&n=2", "/page?lang=pl&n=1",
             "/page?lang=pl&n=3", "/page?lang=pl&n=5", "/page?lang=en&n=2"]  # fmt: skip
    answers: dict[str, tuple[int, str]] = {}
    try:
        deadline = time.monotonic() + 30
        while _get_or_none(port) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        answers = {path: answer(port, path) for path in paths}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    yield answers, out + err


def _get_or_none(port: int) -> int | None:
    try:
        return answer(port, "/")[0]
    except OSError:
        return None


def test_catalogs_and_relative_templates_first_used_after_the_seal_serve(
    served: tuple[dict[str, tuple[int, str]], str],
) -> None:
    answers, said = served
    assert "summon: warm-up: GET / -> 200, before the seal" in said, said
    assert answers == {
        "/page?lang=fr&n=1": (200, "<main>1 fichier</main>"),
        "/page?lang=fr&n=2": (200, "<main>2 fichiers</main>"),
        "/page?lang=pl&n=1": (200, "<main>1 plik</main>"),
        "/page?lang=pl&n=3": (200, "<main>3 pliki</main>"),
        "/page?lang=pl&n=5": (200, "<main>5 plików</main>"),
        "/page?lang=en&n=2": (200, "<main>2 files</main>"),  # no catalog: the fallback
    }, said
    assert "sealed: refused" not in said, said
