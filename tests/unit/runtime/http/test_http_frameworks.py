"""Real frameworks, served end to end on the host: Flask (WSGI) and Starlette (ASGI) from PyPI,
run by the image's runtime (boot.py, as PID 1 would) over kernel sockets, driven by curl.

The fake image root's site folder is this environment's site-packages, so the frameworks are
the versions pinned in pyproject's [test] extra. No image is built here; the integration tests
(tests/integration/test_wsgi_asgi.py) build and run real ones.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sysconfig
from pathlib import Path
from textwrap import dedent

import pytest
from fake_image import TIMEOUT, ImageRoot, free_port, read_line, stop

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

SITE = Path(sysconfig.get_paths()["purelib"])

FLASK_APP = dedent("""
    import time
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.get("/")
    def index():
        return "hello from flask\\n"

    @app.post("/items")
    def create():
        item = request.get_json()
        return jsonify(created=item, n=len(item)), 201

    @app.get("/error")
    def error():
        raise RuntimeError("this route fails")

    @app.get("/slow")
    def slow():
        print("slow request started", flush=True)
        time.sleep(1.5)
        return "slow done\\n"
""")

STARLETTE_APP = dedent("""
    import asyncio
    import contextlib

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        print("lifespan startup", flush=True)
        yield {"greeting": "hello from starlette"}
        print("lifespan shutdown", flush=True)

    async def index(request):
        return PlainTextResponse(request.state.greeting + "\\n")

    async def create(request):
        item = await request.json()
        return JSONResponse({"created": item, "n": len(item)}, status_code=201)

    async def error(request):
        raise RuntimeError("this route fails")

    async def slow(request):
        print("slow request started", flush=True)
        await asyncio.sleep(1.5)
        return PlainTextResponse("slow done\\n")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/items", create, methods=["POST"]),
            Route("/error", error),
            Route("/slow", slow),
        ],
        lifespan=lifespan,
    )
""")

FRAMEWORKS = {
    "flask": ("wsgi", FLASK_APP, "hello from flask\n"),
    "starlette": ("asgi", STARLETTE_APP, "hello from starlette\n"),
}


def curl(port: int, path: str, *args: str) -> tuple[int, str]:
    """(status, body) of a request by curl."""
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition("\n")
    return int(status), body


def start(image: ImageRoot, framework: str) -> tuple[subprocess.Popen[str], int]:
    pytest.importorskip(framework)
    kind, source, _ = FRAMEWORKS[framework]
    image.app({"app.py": source})
    image.link("/usr/lib/summon/site", SITE)
    image.config({"kind": kind, "module": "app", "attr": "app"}, ports=["80/tcp"])
    port = free_port()
    process = image.start(env={"SUMMON_PORTS": f"80/tcp={port}", "SUMMON_BIND": "127.0.0.1"})
    for _ in range(5):
        if "serving the" in read_line(process):
            return process, port
    raise AssertionError("the server never said it was serving")


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_a_page_a_json_post_and_an_error_that_does_not_stop_the_app(
    image: ImageRoot, framework: str
) -> None:
    process, port = start(image, framework)
    page = FRAMEWORKS[framework][2]
    assert curl(port, "/") == (200, page)
    status, body = curl(port, "/items", "-X", "POST", "-H", "Content-Type: application/json",
                        "--data", json.dumps({"name": "widget", "tags": ["a", "b"]}))  # fmt: skip
    assert status == 201
    assert json.loads(body) == {"created": {"name": "widget", "tags": ["a", "b"]}, "n": 2}
    assert curl(port, "/error")[0] == 500
    assert curl(port, "/") == (200, page)  # the error did not take the server down
    # Chunked request body and keep-alive, both from curl.
    status, body = curl(port, "/items", "-H", "Transfer-Encoding: chunked", "-H",
                        "Content-Type: application/json", "--data", '{"k": 1}')  # fmt: skip
    assert (status, json.loads(body)["n"]) == (201, 1)
    status, out, err = stop(process)
    assert status == 0, err
    lines = [line for line in out.splitlines() if '"' in line]
    assert len([line for line in lines if line.startswith("127.0.0.1 - - [")]) == 5
    assert any('"POST /items HTTP/1.1" 201 ' in line for line in lines)
    assert any('"GET /error HTTP/1.1" 500 ' in line for line in lines)
    assert "RuntimeError: this route fails" in err  # the traceback is on the console


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_sigterm_lets_a_slow_request_finish(image: ImageRoot, framework: str) -> None:
    process, port = start(image, framework)
    slow = subprocess.Popen(
        ["curl", "-sS", "--max-time", "20", "-i", f"http://127.0.0.1:{port}/slow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while "slow request started" not in read_line(process):
            pass
        status, out, err = stop(process, signal.SIGTERM)
        answer, curl_err = slow.communicate(timeout=TIMEOUT)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert status == 0, err
    assert answer.startswith("HTTP/1.1 200"), curl_err
    assert answer.endswith("slow done\n")
    assert "connection: close" in answer.lower()
    assert '"GET /slow HTTP/1.1" 200 10 ' in out
    if framework == "starlette":
        # The lifespan shutdown runs after the request under way, not before.
        assert out.index('"GET /slow HTTP/1.1"') < out.index("lifespan shutdown")
