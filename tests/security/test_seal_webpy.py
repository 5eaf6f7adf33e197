"""web.py's Templetor in a sealed image: templates compiled at warm-up serve sealed.

Templetor compiles a template to Python the first time it is rendered (generated source,
named after the template file: seal.code refuses it after the seal) and caches it, unless
web.py is in debug mode, its default when the environment names no server, where it compiles
at every render. So a web.py app leaves debug mode (web.config.debug = False, as in
production) and lists the paths that render a template in warm_up; the runtime says so at
the seal when web.py is in debug mode. Built for real with web.py from PyPI.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from hostile_apps import APPS, needs_sandbox
from summon_cli import Summon, answer, free_port

pytestmark = [*needs_sandbox, pytest.mark.slow]


def _serve(summon: Summon, paths: list[str], *env: str) -> tuple[list[tuple[int, str]], str]:
    """The answers to paths of a sealed instance, and everything it said."""
    port = free_port()
    args = [a for e in env for a in ("-e", e)]
    proc = summon.popen("run", "webpy:test", "--target", "sandbox", "-p", f"{port}:8000", *args)
    deadline = time.monotonic() + 30
    answers: list[tuple[int, str]] = []
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except urllib.error.HTTPError:
                break  # it answers (a 500 in debug mode, where "/" compiles after the seal)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        answers = [answer(port, path) for path in paths]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return answers, out + err


@pytest.fixture(scope="module")
def built(summon: Summon) -> str:
    return summon.ok("build", str(APPS / "webpy"), "-t", "webpy:test")


@pytest.fixture(scope="module")
def production(summon: Summon, built: str) -> Iterator[tuple[list[tuple[int, str]], str]]:
    yield _serve(summon, ["/hello/bob", "/hello/ann", "/late"])


def test_templates_rendered_at_warm_up_serve_sealed(
    production: tuple[list[tuple[int, str]], str],
) -> None:
    (hello_bob, hello_ann, _late), said = production
    assert "warm-up: GET /hello/warm-up -> 200, before the seal" in said, said
    assert hello_bob == (200, "<p>hello, bob</p>\n"), said
    assert hello_ann == (200, "<p>hello, ann</p>\n"), said
    assert "web.py is in debug mode" not in said, said


def test_a_template_first_rendered_after_the_seal_is_refused_by_seal_code(
    production: tuple[list[tuple[int, str]], str],
) -> None:
    (_bob, _ann, late), said = production
    assert late[0] == 500, late
    lines = [line for line in said.splitlines() if line.startswith("summon: sealed: refused")]
    assert any("'templates/late.html'" in line and "seal.code" in line for line in lines), said
    assert any('warm_up = ["/its/path"]' in line for line in lines), said  # what to do


def test_web_py_in_debug_mode_is_told_how_to_leave_it(summon: Summon, built: str) -> None:
    """Rule seal.code: in debug mode every render compiles again. What the warm-up rendered
    compiles to the code the build learned and serves; a template it did not render is
    refused; the line at the seal says what to change."""
    (hello, late), said = _serve(summon, ["/hello/bob", "/late"], "WEBPY_DEBUG=1")
    assert hello == (200, "<p>hello, bob</p>\n"), said
    assert late[0] == 500, late
    assert "summon: sealed: web.py is in debug mode" in said, said
    assert "web.config.debug = False" in said, said
    refused = [line for line in said.splitlines() if "'templates/late.html'" in line]
    assert refused and "seal.code" in refused[0], said
