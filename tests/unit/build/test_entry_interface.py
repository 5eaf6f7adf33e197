"""The entry's interface, found at build time under the image's interpreter: WSGI, ASGI or
an entry function; the manifest's interface wins, and contradicting the signature fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from summon import manifest
from summon.build import interface
from summon.build.image import runtime_modules
from summon.build.interface import add_server_requirements, entry_interface
from summon.build.python import Interpreter
from summon.build.records import app_json as _app_config
from summon.errors import BuildError


def app(tmp_path: Path, source: str, table: str = "") -> manifest.Manifest:
    (tmp_path / "app.py").write_text(dedent(source))
    (tmp_path / "summon.toml").write_text('name = "t"\nentry = "app:app"\nports = [8000]\n' + table)
    (tmp_path / "site").mkdir(exist_ok=True)
    return manifest.load(tmp_path)


def kind(tmp_path: Path, interp: Interpreter, source: str, table: str = "") -> str:
    m = app(tmp_path, source, table)
    return entry_interface(m, interp, tmp_path / "site")[0]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def app(environ, start_response):\n    return []\n", "wsgi"),
        ("def app(environ: dict, start_response: object, extra=None) -> list:\n    return []\n",
         "wsgi"),
        ("async def app(scope, receive, send):\n    pass\n", "asgi"),
        (
            """
            class Web:
                def __call__(self, environ, start_response):
                    return []
            app = Web()
            """,
            "wsgi",
        ),
        (
            """
            class Web:
                async def __call__(self, scope, receive, send):
                    pass
            app = Web()
            """,
            "asgi",
        ),
        (
            """
            import functools
            def wrap(f):
                @functools.wraps(f)
                async def inner(*args):
                    return await f(*args)
                return inner
            @wrap
            async def app(scope, receive, send):
                pass
            """,
            "asgi",
        ),
        # Emmett's App: a plain __call__ returning its handler's coroutine (no WSGI server
        # passes three arguments); the build asked for interface = "asgi".
        (
            """
            class App:
                def __call__(self, scope, receive, send):
                    return self.handle(scope, receive, send)
                async def handle(self, scope, receive, send):
                    pass
            app = App()
            """,
            "asgi",
        ),
        # Entry functions stay entry functions:
        ("from summon.devices import Stack\nasync def app(stack: Stack):\n    pass\n", ""),
        (
            "from __future__ import annotations\nimport summon.devices as d\n"
            "def app(log: d.Console, clock: 'Clock'):\n    pass\n",
            "",
        ),
        ("def app():\n    return 0\n", ""),
        ("def app(argv=None):\n    return 0\n", ""),
        # A command-line entry point (click's Group, typer's app: [project.scripts]) reads
        # sys.argv; it was served as a WSGI app and every request answered 500.
        (
            """
            class Group:
                def __call__(self, *args, **kwargs):
                    return 0
            app = Group()
            """,
            "",
        ),
        ("import no_such_module_anywhere\napp = 1\n", ""),  # the trace reports it
    ],
)  # fmt: skip
def test_the_signature_says_what_the_entry_is(
    tmp_path: Path, interp: Interpreter, source: str, expected: str
) -> None:
    assert kind(tmp_path, interp, source) == expected


def test_a_real_flask_app_is_wsgi_and_starlette_asgi(tmp_path: Path, interp: Interpreter) -> None:
    """The frameworks as installed for the tests, through the image's interpreter."""
    pytest.importorskip("flask")
    pytest.importorskip("starlette")
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    flask_app = app(tmp_path, "from flask import Flask\napp = Flask('t')\n")
    assert entry_interface(flask_app, interp, site) == ("wsgi", True)
    (tmp_path / "app.py").write_text(
        "from starlette.applications import Starlette\napp = Starlette()\n"
    )
    assert entry_interface(flask_app, interp, site) == ("asgi", True)


@pytest.mark.parametrize(
    ("source", "served"),
    [
        ("from summon.devices import Stack\nasync def app(stack: Stack):\n    pass\n", True),
        ("from __future__ import annotations\ndef app(s: 'summon.devices.Stack'):\n    pass\n",
         True),
        ("def app(environ, start_response):\n    return []\n", True),  # the runtime serves it
        # Its own server (uvicorn.run in main, an asyncio server of its own): a target must
        # not hand its listeners to a Stack the entry never asks for.
        ("def app():\n    import uvicorn\n", False),
        ("from summon.devices import Console\ndef app(log: Console):\n    pass\n", False),
    ],
)  # fmt: skip
def test_whether_the_stack_serves_an_entry_function(
    tmp_path: Path, interp: Interpreter, source: str, served: bool
) -> None:
    m = app(tmp_path, source)
    assert entry_interface(m, interp, tmp_path / "site")[1] is served


def test_the_manifest_wins_where_the_signature_says_nothing_sure(
    tmp_path: Path, interp: Interpreter
) -> None:
    # A plain function returning a coroutine: ASGI in fact, though not an async def.
    source = "def app(scope, receive, send):\n    return send({})\n"
    assert kind(tmp_path, interp, source, 'interface = "asgi"\n') == "asgi"


def test_an_object_the_signature_cannot_place_needs_the_manifest(
    tmp_path: Path, interp: Interpreter
) -> None:
    source = "class App:\n    def __call__(self, request):\n        pass\napp = App()\n"
    with pytest.raises(BuildError) as e:
        kind(tmp_path, interp, source)
    assert str(e.value) == (
        "entry app:app is an object of class App with a __call__ taking (request): summon "
        'cannot tell whether it is a WSGI or an ASGI app; set interface = "wsgi" or '
        'interface = "asgi" in summon.toml'
    )
    assert kind(tmp_path, interp, source, 'interface = "wsgi"\n') == "wsgi"


@pytest.mark.parametrize(
    ("source", "table", "message"),
    [
        (
            "async def app(scope, receive, send):\n    pass\n",
            'interface = "wsgi"\n',
            'interface = "wsgi" in summon.toml, but entry app:app is an async function taking '
            "(scope, receive, send), which makes it an ASGI app; fix interface or entry",
        ),
        (
            "from summon.devices import Stack\nasync def app(stack: Stack):\n    pass\n",
            'interface = "asgi"\n',
            'interface = "asgi" in summon.toml, but entry app:app is an async function that asks '
            "for devices (stack), which makes it an entry function; fix interface or entry",
        ),
    ],
)
def test_an_interface_against_the_signature_fails_the_build(
    tmp_path: Path, interp: Interpreter, source: str, table: str, message: str
) -> None:
    with pytest.raises(BuildError) as e:
        kind(tmp_path, interp, source, table)
    assert str(e.value) == message


def test_a_served_app_needs_a_tcp_port_and_a_network(tmp_path: Path, interp: Interpreter) -> None:
    wsgi = "def app(environ, start_response):\n    return []\n"
    m = replace(app(tmp_path, wsgi), ports=(manifest.Port(53, "udp"),))
    with pytest.raises(BuildError, match="lists no TCP port; add ports = \\[8000\\]"):
        entry_interface(m, interp, tmp_path / "site")
    m = replace(app(tmp_path, wsgi), network="none")
    with pytest.raises(BuildError, match='network = "none"; set network = "socket"'):
        entry_interface(m, interp, tmp_path / "site")


def test_a_script_entry_is_not_inspected(tmp_path: Path, interp: Interpreter) -> None:
    (tmp_path / "s.py").write_text("raise SystemExit('never run at build time')\n")
    (tmp_path / "summon.toml").write_text('name = "t"\nentry = "s.py"\n')
    assert entry_interface(manifest.load(tmp_path), interp, tmp_path) == ("", False)


def test_what_goes_into_an_image_served_by_the_runtime(tmp_path: Path) -> None:
    m = app(tmp_path, "def app(environ, start_response):\n    return []\n")
    plain = runtime_modules(m)
    served = runtime_modules(replace(m, interface="wsgi"))
    assert not any(name.startswith("summon.runtime.http") for name in plain)
    assert set(served) - set(plain) == {
        "summon.runtime.http.settings",
        "summon.runtime.http.server",
        "summon.runtime.http.exchange",  # the browser target serves with it
        "summon.runtime.http.warmup",  # its requests before the seal (sealed by default)
    }
    asgi = runtime_modules(replace(m, interface="asgi"))
    assert set(asgi) - set(served) == {"summon.runtime.http.websocket"}  # WSGI has none
    unsealed = runtime_modules(replace(m, interface="wsgi", seal="off"))
    assert "summon.runtime.http.warmup" not in unsealed
    assert "summon.runtime.hints" in plain  # every image: the fork hint
    config = _app_config(replace(m, interface="asgi"), {})
    assert config["entry"] == {"kind": "asgi", "module": "app", "attr": "app"}
    assert _app_config(m, {})["entry"] == {"kind": "function", "module": "app", "function": "app"}


def test_the_apps_own_h11_is_kept(tmp_path: Path, interp: Interpreter) -> None:
    site = tmp_path / "site"
    (site / "h11").mkdir(parents=True)
    assert add_server_requirements(interp, site) == []  # no pip run: nothing to add
    (site / "wsproto").mkdir()
    assert add_server_requirements(interp, site, "asgi") == []


def test_an_asgi_app_with_its_own_h11_gets_wsproto_alone(
    tmp_path: Path, interp: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wsproto is vendored without its dependencies: the app's pinned h11 is the image's."""
    calls: list[tuple[list[str], bool]] = []

    def fake_vendor(wanted: list[str], interp: Interpreter, dest: Path, no_deps: bool) -> list[Any]:
        calls.append((wanted, no_deps))
        (dest / "wsproto").mkdir(parents=True)
        return []

    monkeypatch.setattr(interface, "vendor", fake_vendor)
    site = tmp_path / "site"
    (site / "h11").mkdir(parents=True)
    add_server_requirements(interp, site, "asgi")
    assert calls == [(["wsproto==1.2.0"], True)]
    assert (site / "wsproto").is_dir() and (site / "h11").is_dir()
    add_server_requirements(interp, tmp_path / "other", "wsgi")
    assert calls[1:] == [(["h11==0.16.0"], False)]  # WSGI: h11 only


def test_only_an_image_with_stores_carries_the_store(tmp_path: Path) -> None:
    m = app(tmp_path, "def main():\n    return 0\n")
    plain = runtime_modules(m)
    stored = runtime_modules(replace(m, volumes=("/data",), stores={"todo": "/data/todo"}))
    assert not any(name.startswith("summon.kv") for name in plain)
    # What summon.kv imports in its functions only (the lock, a JSON merge, a bundle).
    assert set(stored) - set(plain) == {
        "summon.kv",
        "summon.kv.bundle",
        "fcntl",
        "warnings",
        "json",
    }
    config = _app_config(replace(m, volumes=("/data",), stores={"todo": "/data/todo"}), {})
    assert (config["volumes"], config["stores"]) == (["/data"], {"todo": "/data/todo"})
    assert "stores" not in _app_config(m, {})  # images without stores keep their digests
