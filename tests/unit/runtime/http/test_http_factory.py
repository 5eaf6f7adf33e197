"""App factories (Flask's create_app(), Pyramid's main(global_config, **settings)): named
with their call, the runtime calls them and serves the app they return; named without it,
the entry's first start says how to write it."""

from __future__ import annotations

import signal
from textwrap import dedent

from fake_image import ImageRoot, free_port, read_line, stop
from test_http_init import get

FACTORY = dedent("""
    def create_app(greeting, settings=None):
        settings = settings or {}

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"{greeting} {settings.get('who', '?')} {environ['PATH_INFO']}".encode()]

        return app
""")


def test_a_factory_named_with_its_call_is_served_what_it_returns(image: ImageRoot) -> None:
    image.app({"app.py": FACTORY})
    image.vendor("h11")
    call = {"args": ["hello"], "kwargs": {"settings": {"who": "world"}}}
    image.config({"kind": "wsgi", "module": "app", "attr": "create_app", "call": call},
                 ports=["80"])  # fmt: skip
    port = free_port()
    process = image.start(env={"SUMMON_PORTS": f"80/tcp={port}", "SUMMON_BIND": "127.0.0.1"})
    line = "summon: serving the WSGI app app:create_app(...) on port 80 (HTTP/1.1)"
    assert read_line(process) == line
    assert get(port, "/x") == b"hello world /x"
    status, _out, err = stop(process, signal.SIGINT)
    assert (status, err) == (0, "")


def test_a_factory_that_fails_ends_the_app_with_its_traceback(image: ImageRoot) -> None:
    image.app({"app.py": FACTORY})
    image.vendor("h11")
    call = {"args": [], "kwargs": {}}
    image.config({"kind": "wsgi", "module": "app", "attr": "create_app", "call": call},
                 ports=["80"])  # fmt: skip
    result = image.run()
    assert result.returncode == 1
    assert "TypeError: create_app() missing 1 required positional argument" in result.stderr


def test_a_factory_named_without_its_call_says_how_to_write_it(image: ImageRoot) -> None:
    """Flask's tutorial (`flask --app flaskr run` finds create_app): entry = "flaskr:create_app"
    built, and every start printed <Flask 'flaskr'> and ended with status 1."""
    image.app({"app.py": "def create_app():\n    return lambda environ, start_response: []\n"})
    image.config("app:create_app", ports=["80"])
    result = image.run()
    assert result.returncode == 2
    assert result.stderr.startswith("summon: entry app:create_app returned <function ")
    assert result.stderr.endswith(
        " and ended, as an app factory does: write its call in [tool.summon] and rebuild, "
        'entry = "app:create_app()" (with the arguments it takes), and the runtime serves '
        "the WSGI or ASGI app it returns\n"
    )
