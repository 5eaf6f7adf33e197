"""Code the build saw, end to end: an app that makes code from strings after the seal.

tests/security/apps/learned binds its port (the seal closes there), then compiles its router
from source text and from a rewritten syntax tree, as Sanic does. Built for real, the
recording run learns both; the image says so, lists them in app.json, and serves sealed.
So does a class's methods compiled from text as the app starts (before the seal) and again
at a request the recording run never made, as attrs does. A compile the build never saw
(made from a request) is still refused by seal.code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from hostile_apps import APPS
from summon_cli import Summon, answer, free_port

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]


@pytest.fixture(scope="module")
def built(summon: Summon) -> str:
    r = summon("build", str(APPS / "learned"), "-t", "learned:test")
    assert r.returncode == 0, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def served(summon: Summon, built: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    proc = summon.popen("run", "learned:test", "--target", "sandbox", "-p", f"{port}:8000")
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no answer: {proc.communicate()[1]}")
            time.sleep(0.05)
    yield port, proc
    proc.terminate()
    proc.communicate(timeout=30)


def test_the_build_learns_the_code_and_says_so(summon: Summon, built: str) -> None:
    assert "piece(s) of code from strings after the seal" in built, built
    assert "and 1 it made as it started" in built, built
    seal = summon.inspect("learned:test")["bom"]["app"]["seal"]
    assert seal["mode"] == "on"
    compiled = {name for digest, name in seal["code"] if digest}
    assert compiled == {"<router>", "", "<generated methods Point>"}, seal["code"]


def test_the_build_leaves_no_blob_no_image_names(summon: Summon, built: str) -> None:
    """The recording run changed app.json, so the root was written twice: the first layer,
    erofs image and file list stayed in the store, unreferenced, until `rmi --dangling`."""
    from summon.store import Store

    reachable = {d.removeprefix("sha256:") for d in Store(summon.store).reachable()}
    assert "writing the root filesystem again" in built, built
    assert summon.blobs() - reachable == set()


def test_the_sealed_app_runs_the_code_the_build_saw(served: tuple[int, object]) -> None:
    port, _proc = served
    assert answer(port, "/") == (200, "page index\n")
    assert answer(port, "/about") == (200, "page about\n")
    assert answer(port, "/nowhere")[0] == 404


def test_code_made_again_as_it_was_before_the_seal_runs_sealed(
    served: tuple[int, object],
) -> None:
    """connexion's /openapi.json answered 500: jsonschema made a validator class again with
    attrs, whose methods' text the seal refused though the app had compiled it at start."""
    port, _proc = served
    assert answer(port, "/record") == (200, "Point(x=3, y=4)\n")
    assert answer(port, "/record") == (200, "Point(x=3, y=4)\n")


def test_code_no_build_saw_is_refused_by_seal_code(served: tuple[int, object]) -> None:
    port, _proc = served
    status, text = answer(port, "/compute/21")
    assert status == 403, text
    assert "refused by the seal" in text and "seal.code" in text, text


def test_pages_linked_from_slash_are_asked_for_and_warmed_up(summon: Summon) -> None:
    """tests/security/apps/pages names no warm_up. The recording run follows "/"'s links;
    a page whose first request made code after the seal is asked for at every start before
    the seal (its code differs at every start: no learned hash could match it), one that
    makes the same code at every request is learned; a page no link leads to is refused."""
    build = summon("build", str(APPS / "pages"), "-t", "pages:test")
    assert build.returncode == 0, build.stderr
    notes = [line for line in build.stderr.splitlines() if "warning" in line]
    assert 'requests for "/linked", "/same" made code after the seal' in build.stderr, notes
    # /quit, linked first, ended the app: the run was made again without it (before, the
    # image kept the static allowlist and learned neither page).
    assert "the recording run's GET /quit (a page it found by following links) ended" in (
        build.stderr
    ), notes
    assert "syscalls allowed, recorded" in build.stdout + build.stderr
    port = free_port()
    proc = summon.popen("run", "pages:test", "--target", "sandbox", "-p", f"{port}:8000")
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        answers = [answer(port, p) for p in ("/linked", "/same", "/same", "/hidden")]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    said = out + err
    assert answers[:3] == [(200, "linked"), (200, "same"), (200, "same")], said
    assert answers[3][0] == 500, answers
    assert "summon: warm-up: GET /linked -> 200, before the seal" in said, said
    refused = [
        line for line in said.splitlines() if "refused compile of code from '<hidden>'" in line
    ]
    assert refused and "seal.code" in refused[0], said
