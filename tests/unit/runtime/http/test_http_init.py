"""The runtime (init.py) with WSGI and ASGI entries: served as images serve them, its one-line
errors, and the hint for a fork or exec the sandbox denies."""

from __future__ import annotations

import signal
import socket
from textwrap import dedent

import pytest
from fake_image import ImageRoot, free_port, read_line, stop
from http_wire import parse_responses

WSGI_APP = dedent("""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("wsgi " + environ["PATH_INFO"]).encode()]
""")

ASGI_APP = dedent("""
    class App:
        async def __call__(self, scope, receive, send):
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        print("lifespan startup", flush=True)
                        await send({"type": "lifespan.startup.complete"})
                    else:
                        print("lifespan shutdown", flush=True)
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            await receive()
            body = ("asgi " + scope["path"]).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    app = App()
""")


def get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    [response] = parse_responses(data)
    return response.body


@pytest.mark.parametrize(
    ("kind", "source", "first_lines"),
    [
        ("wsgi", WSGI_APP, ["summon: serving the WSGI app app:app on port 80 (HTTP/1.1)"]),
        (
            "asgi",
            ASGI_APP,
            ["lifespan startup", "summon: serving the ASGI app app:app on port 80 (HTTP/1.1)"],
        ),
    ],
)
def test_an_app_entry_is_served_on_the_first_tcp_port(
    image: ImageRoot, kind: str, source: str, first_lines: list[str]
) -> None:
    image.app({"app.py": source})
    image.vendor("h11")
    image.config({"kind": kind, "module": "app", "attr": "app"}, ports=["53/udp", "80/tcp", "81"])
    port = free_port()
    process = image.start(env={"SUMMON_PORTS": f"80/tcp={port}", "SUMMON_BIND": "127.0.0.1"})
    assert [read_line(process) for _ in first_lines] == first_lines
    assert get(port, "/x") == f"{kind} /x".encode()
    assert '"GET /x HTTP/1.1" 200 ' in read_line(process)
    status, out, err = stop(process, signal.SIGINT)
    assert (status, err) == (0, "")
    assert out == ("lifespan shutdown\n" if kind == "asgi" else "")


@pytest.mark.parametrize(
    ("fields", "env", "message"),
    [
        (
            {"ports": ["53/udp"]},
            {},
            "summon: entry app:app is a WSGI app, but the image lists no TCP port to serve it "
            "on; add ports = [8000] to [tool.summon] and rebuild\n",
        ),
        (
            {"network": "none"},
            {},
            "summon: entry app:app is a WSGI app, served over the network, but the image was "
            "built with network = 'none'; set network = \"socket\" in [tool.summon]\n",
        ),
        (
            {},
            {"SUMMON_HTTP_MAX_BODY": "lots"},
            "summon: SUMMON_HTTP_MAX_BODY: 'lots' is not a size such as 65536, 64k or 1M\n",
        ),
        (
            {},
            {"SUMMON_HTTP_THREADS": "0"},
            "summon: SUMMON_HTTP_THREADS: '0' is not a whole number from 1 to 1024\n",
        ),
    ],
)
def test_what_stops_an_app_from_being_served_is_one_line(
    image: ImageRoot, fields: dict[str, object], env: dict[str, str], message: str
) -> None:
    image.app({"app.py": WSGI_APP})
    image.vendor("h11")
    image.config({"kind": "wsgi", "module": "app", "attr": "app"}, **{"ports": ["80"], **fields})
    result = image.run(env=env)
    assert (result.returncode, result.stderr) == (2, message)


def test_a_missing_app_attribute_is_one_line(image: ImageRoot) -> None:
    image.app({"app.py": WSGI_APP})
    image.config({"kind": "asgi", "module": "app", "attr": "application"}, ports=["80"])
    result = image.run()
    assert result.returncode == 2
    assert result.stderr == (
        "summon: entry app:application: module 'app' has no ASGI app named 'application'; "
        "fix entry in [tool.summon] and rebuild\n"
    )


def test_a_failing_lifespan_startup_ends_the_app_with_status_1(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                async def app(scope, receive, send):
                    await receive()
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
            """)
        }
    )
    image.vendor("h11")
    image.config({"kind": "asgi", "module": "app", "attr": "app"}, ports=["80"])
    result = image.run(env={"SUMMON_PORTS": f"80/tcp={free_port()}", "SUMMON_BIND": "127.0.0.1"})
    assert result.returncode == 1
    assert result.stderr == "summon: the app's lifespan startup failed: no database\n"


# --- fork and exec, denied -----------------------------------------------------------------

# The sandbox's seccomp filter answers fork with EPERM. Here a C function that fails with
# EPERM for root too (a hard link to a directory) stands in for it, under the same name.
DENY_FORK = dedent("""
    import functools, os
    os.fork = functools.partial(os.link, "/", "/tmp/summon-test-no-such-link")
""")

FORK_HINT = (
    "summon: this app tried to fork (pre-forking servers such as gunicorn cannot run here); "
    'serve it with entry = "module:app" so summon\'s runtime serves it\n'
)


def test_a_denied_fork_gets_the_hint(image: ImageRoot) -> None:
    image.app({"app.py": DENY_FORK + "def main():\n    pid = os.fork()\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert "PermissionError: [Errno 1] Operation not permitted" in result.stderr
    assert result.stderr.endswith(FORK_HINT)


def test_a_server_that_logs_the_failed_fork_and_exits_still_gets_the_hint(
    image: ImageRoot,
) -> None:
    """What gunicorn's arbiter does: log the error, then sys.exit(-1) in its except block."""
    image.app(
        {
            "server.py": DENY_FORK
            + dedent("""
                import sys

                def spawn_worker():
                    return os.fork()

                try:
                    spawn_worker()
                except Exception as e:
                    print(f"Unhandled exception in main loop: {e!r}", file=sys.stderr)
                    sys.exit(-1)
            """)
        }
    )
    image.config("/app/server.py")
    result = image.run()
    assert result.returncode == 255
    assert result.stderr.endswith(FORK_HINT)


def test_a_denied_exec_gets_its_own_hint(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import os
                os.execv = os.link  # EPERM from C, as seccomp's answer to execve
                def main():
                    os.execv("/", "/tmp/summon-test-no-such-link")
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "summon: this app tried to start another program or process, which the sandbox "
        "denies: an image runs one Python process; use threads or asyncio instead\n"
    )


def test_sanics_default_worker_processes_get_the_switch_that_runs_one(image: ImageRoot) -> None:
    """Sanic's first example, app.run(host=..., port=...), starts its worker manager's
    processes: the hint said to use threads or asyncio, which a Sanic user cannot."""
    image.app(
        {
            "sanic/__init__.py": dedent("""
                import os
                os.execv = os.link  # EPERM from C, as seccomp's answer to execve
                class Sanic:
                    def run(self, **kwargs):
                        os.execv("/", "/tmp/summon-test-no-such-link")
            """),
            "server.py": "from sanic import Sanic\nSanic().run(host='0.0.0.0', port=8000)\n",
        }
    )
    image.config("/app/server.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "summon: Sanic starts worker processes by default, which the sandbox denies (an image "
        "runs one Python process): start it with app.run(..., single_process=True)\n"
    )


@pytest.mark.parametrize(
    ("folder", "file", "hint"),
    [
        # `hypercorn main:app` from a script: its default --workers 1 spawns a process
        # (multiprocessing's resource tracker first), and the hint said threads or asyncio.
        ("hypercorn", "run.py", "Hypercorn runs the app in worker processes unless told "
         "otherwise, which the sandbox denies (an image runs one Python process): start it "
         "with --workers 0 (config.workers = 0, no --reload), which serves in its own process"),
        # Granian(...).serve(): a worker process even with workers=1.
        ("granian/server", "common.py", "Granian serves in worker processes (workers=1 "
         "too), which the sandbox denies (an image runs one Python process): serve the app "
         "with granian.server.embed.Server (await Server(app, ...).serve(), in this process), "
         'or make entry the app itself (entry = "module:app"), which summon\'s runtime serves'),
        ("uvicorn/supervisors", "multiprocess.py", "uvicorn's workers (--workers N, "
         "uvicorn.run(workers=N)) are processes, which the sandbox denies (an image runs one "
         "Python process): start it with one worker (the default), which serves in its own "
         "process"),
    ],
)  # fmt: skip
def test_a_servers_worker_processes_get_the_switch_that_runs_one(
    image: ImageRoot, folder: str, file: str, hint: str
) -> None:
    package = folder.split("/")[0]
    image.app(
        {
            f"{package}/__init__.py": "",
            **({f"{folder}/__init__.py": ""} if folder != package else {}),
            f"{folder}/{file}": dedent("""
                import os
                os.execv = os.link  # EPERM from C, as seccomp's answer to execve
                def run():
                    os.execv("/", "/tmp/summon-test-no-such-link")
            """),
            "serve.py": f"from {folder.replace('/', '.')}.{file[:-3]} import run\nrun()\n",
        }
    )
    image.config("/app/serve.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(f"summon: {hint}\n")


def test_an_auto_reloader_gets_the_switch_that_turns_it_off(image: ImageRoot) -> None:
    """Dash's first example ends in app.run(debug=True): werkzeug's reloader runs the app
    again with subprocess.call, and the hint said to use threads or asyncio instead, which
    says nothing to a Dash user whose code starts no process at all. NiceGUI's quickstart
    ends in ui.run(), whose reload=True is uvicorn's reloader: the line names the app's own
    call that started it, where the switch goes."""
    image.app(
        {
            "werkzeug/__init__.py": "",
            "werkzeug/_reloader.py": dedent("""
                import os, subprocess, sys
                no_link = "/tmp/summon-test-no-such-link"
                subprocess._fork_exec = lambda *a: os.link("/", no_link)  # EPERM, as seccomp's
                subprocess._USE_POSIX_SPAWN = False
                def run_with_reloader():
                    sys.exit(subprocess.call([sys.executable]))
            """),
            "server.py": "from werkzeug._reloader import run_with_reloader\nrun_with_reloader()\n",
        }
    )
    image.config("/app/server.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "summon: this app's auto-reloader (werkzeug/_reloader.py) runs the app again in a "
        "child process, which the sandbox denies (an image runs one Python process, and its "
        "code never changes): turn reloading off (app.run(debug=False) or use_reloader=False "
        "in Flask and Dash, reload=False in uvicorn.run, --noreload for Django's runserver); "
        "the app started it at /app/server.py line 2: run_with_reloader()\n"
    ), result.stderr


def test_no_hint_for_other_permission_errors(image: ImageRoot) -> None:
    image.app(
        {"app.py": "import os\ndef main():\n    os.link('/', '/tmp/summon-test-no-such-link')\n"}
    )
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1 and "summon:" not in result.stderr


def test_a_kernel_socket_on_the_direct_stack_gets_its_own_hint(image: ImageRoot) -> None:
    """The sandbox denies socket() when network = "direct". Here os.link fails with EPERM
    in a frame that names _socket, as socket.socket.__init__ does."""
    image.app(
        {
            "app.py": dedent("""
                import os, _socket
                def main():
                    return _socket.AF_INET and os.link("/", "/tmp/summon-test-no-such-link")
            """)
        }
    )
    image.config("app:main")
    result = image.run(env={"SUMMON_TAP_FD": "3"})
    assert result.returncode == 1
    assert result.stderr.endswith(
        'summon: this app made a kernel socket, which the sandbox denies with network = "direct"'
        " (the app's TCP/IP is summon.net, reached through the Stack device): serve its app "
        'with entry = "module:app", use the Stack device, or build it with network = "socket"\n'
    )
    # Without the direct stack's TAP, an EPERM there is about something else: no hint.
    assert "summon:" not in image.run().stderr
