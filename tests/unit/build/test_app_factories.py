"""App factories at build time: "module:create_app()" (as Flask's --app and gunicorn spell
it) is called under the image's interpreter and what it returns decides the interface; an
entry function whose parameters the runtime cannot fill fails the build, saying how to write
the call; a factory returning what the runtime cannot serve fails it too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from textwrap import dedent

import pytest

from summon import manifest
from summon.build.interface import entry_interface
from summon.build.python import Interpreter
from summon.build.records import app_json
from summon.errors import BuildError, ManifestError


def load(tmp_path: Path, entry: str, source: str) -> manifest.Manifest:
    (tmp_path / "app.py").write_text(dedent(source))
    (tmp_path / "summon.toml").write_text(f'name = "t"\nentry = {entry!r}\nports = [8000]\n')
    (tmp_path / "site").mkdir(exist_ok=True)
    return manifest.load(tmp_path)


WSGI_FACTORY = """
    def create_app(test_config=None):
        def app(environ, start_response):
            return []
        return app
"""
ASGI_FACTORY = """
    def create_app(debug, settings):
        async def app(scope, receive, send):
            pass
        return app
"""


@pytest.mark.parametrize(
    ("entry", "source", "expected"),
    [
        ("app:create_app()", WSGI_FACTORY, "wsgi"),
        ("app:create_app({'TESTING': True})", WSGI_FACTORY, "wsgi"),
        ("app:create_app(True, settings={'a': [1, 2.5, None]})", ASGI_FACTORY, "asgi"),
    ],
)
def test_a_factory_named_with_its_call_is_served_as_what_it_returns(
    tmp_path: Path, interp: Interpreter, entry: str, source: str, expected: str
) -> None:
    m = load(tmp_path, entry, source)
    found = entry_interface(m, interp, tmp_path / "site")[0]
    assert found == expected
    assert str(m.entry) == entry
    config = app_json(replace(m, interface=found), {})["entry"]
    assert (config["kind"], config["attr"]) == (expected, "create_app")
    assert m.entry.call is not None and config["call"] == m.entry.call.to_json()


def test_parameters_the_runtime_cannot_fill_fail_the_build_naming_the_call(
    tmp_path: Path, interp: Interpreter
) -> None:
    """Pyramid's main(global_config, **settings) as the entry built, and every start ended
    with "parameter 'global_config' ... has no annotation"."""
    source = "def main(global_config, **settings):\n    return None\n"
    m = load(tmp_path, "app:main", source)
    with pytest.raises(BuildError) as e:
        entry_interface(m, interp, tmp_path / "site")
    assert str(e.value) == (
        "entry app:main is a function taking (global_config, settings), and the runtime fills "
        "an entry function's parameters with devices only (Console, Clock, Random, Stack, "
        "KV_RO, KV_RW, TLS, Secrets), not global_config. If it is an app factory returning a "
        'WSGI or ASGI app, write its call with the arguments it takes: entry = "app:main(None)"'
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            # aiohttp's web.Application, returned by an init_func(argv) for python -m aiohttp.web
            "class Application:\n    def __call__(self):\n        return self\n"
            "def init_func(argv):\n    return Application()\n",
            "neither a WSGI nor an ASGI app, which is what the runtime serves of a factory's "
            "result. An app that needs its own server",
        ),
        ("def init_func(argv):\n    raise RuntimeError('no database')\n",
         "the app factory fails when called: RuntimeError: no database"),
    ],
)  # fmt: skip
def test_a_factory_whose_result_the_runtime_cannot_serve_fails_the_build(
    tmp_path: Path, interp: Interpreter, source: str, message: str
) -> None:
    m = load(tmp_path, "app:init_func(None)", source)
    with pytest.raises(BuildError, match=r"^entry app:init_func\(None\)") as e:
        entry_interface(m, interp, tmp_path / "site")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("app:create_app(os.environ)", "must be literals"),
        ("app:create_app(*args)", "must be literals"),
        ("app:create_app(**{'a': 1})", "** arguments are not literals"),
        ("app:create_app((1, 2))", "JSON's kinds"),
        ("app:create_app(", "is not a call's argument list"),
        ("app:create_app()()", "is not a call's argument list"),
    ],
)
def test_a_factory_call_takes_literal_arguments_only(tmp_path: Path, entry: str, why: str) -> None:
    with pytest.raises(ManifestError, match="entry") as e:
        load(tmp_path, entry, WSGI_FACTORY)
    assert why in str(e.value)
