"""Real apps, with real PyPI packages at pinned versions, built into images and run from them.

Each class of failure the closure once had is reproduced here against a built image: imports
only vendored code makes when it runs, imports by string, introspection of vendored sources,
subpackages nothing imports at start, error paths, codecs named in a script entry. Images
are built once per session into a temporary store and shared.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from summon.build.image import APP_DIR, RUNTIME_ROOT, SITE_DIR, BuildResult, build
from summon.build.python import Interpreter
from summon.build.verify import VerifyError, VerifyPlan, verify_image
from summon.errors import BuildError
from summon.store.image import Image
from summon.store.layout import Store
from summon.targets.base import RunSpec
from summon.targets.unix import UnixTarget

APPS = Path(__file__).parent / "apps"
EXAMPLES = Path(__file__).parents[3] / "examples"
SIX_MB = 6 * 1000 * 1000

Build = Callable[[Path], BuildResult]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def built(store: Store, interp: Interpreter) -> Build:
    """Build an app folder once per session (tagged after the folder)."""
    results: dict[Path, BuildResult] = {}

    def get(app: Path) -> BuildResult:
        if app not in results:
            results[app] = build(app, store, tag=f"{app.name}:test")
        return results[app]

    return get


@pytest.fixture(scope="session")
def flask_image(built: Build) -> BuildResult:
    return built(APPS / "flaskapp")


def test_the_bill_of_materials_names_image_files_not_the_builds_own(
    flask_image: BuildResult, store: Store
) -> None:
    """A vendored extension (markupsafe's) was named by its temporary build path, different
    at every build: no two builds of an app with a C extension had the same digest."""
    bom = flask_image.image.bom
    needers = {p for lib in bom["libraries"] for p in lib["needed_by"]}
    assert f"{SITE_DIR}/markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so" in needers
    assert not [p for p in needers if str(store.root) in p or "/.tmp/" in p], needers


@pytest.fixture(scope="session")
def uvicorn_image(built: Build) -> BuildResult:
    return built(APPS / "uvicornapp")


@pytest.fixture(scope="session")
def stdlib_image(built: Build) -> BuildResult:
    return built(APPS / "stdlibserver")


@pytest.fixture(scope="session")
def http_image(built: Build) -> BuildResult:
    return built(EXAMPLES / "http")


def modules(result: BuildResult) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in result.image.bom["modules"]}


def run_in_image(image: Image, code: str) -> subprocess.CompletedProcess[str]:
    """Run code with the image's own interpreter in its root filesystem, on its sys.path."""
    root = image.rootfs()
    path = [f"{root}{p}" for p in (APP_DIR, SITE_DIR, RUNTIME_ROOT)]
    prelude = f"import sys; sys.path[0:1] = {path!r}\n"
    return subprocess.run(
        [str(root / "usr/bin/python3.11"), "-S", "-E", "-c", prelude + code],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(image: Image, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Start the image with the unix target on a free loopback port; yield (port, log)."""
    port = free_port()
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        spec = RunSpec(
            name=f"test-{port}",
            image=image.ref,
            rootfs=image.rootfs(),
            app_config=image.app_config(),
            env={"PORT": str(port)},
            stdout=out.fileno(),
        )
        instance = UnixTarget().start(spec)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if instance.wait(0.05) is not None or time.monotonic() > deadline:
                    pytest.fail(f"the app did not listen on {port}:\n{log.read_text()}")
        yield port, log
    finally:
        instance.stop(grace=5)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- a Flask app -------------------------------------------------------------------------


def test_flask_serves_with_what_only_requests_import(
    flask_image: BuildResult, tmp_path: Path
) -> None:
    mods = modules(flask_image)
    # app.run() imports werkzeug.serving lazily, and werkzeug.serving imports socketserver
    # and http.server: all in, and serving works from the image.
    for name in ("werkzeug.serving", "socketserver", "http.server"):
        assert name in mods, name
    # Imports only request handlers make: in app code (colorsys) and in vendored code
    # (click.utils._expand_args imports glob when called).
    assert mods["colorsys"]["reason"] == "static import in app code"
    assert mods["glob"].get("via") == {
        "module": "click.utils",
        "line": 603,
        "how": "statement",
        "runs": "call",
    }
    with serve(flask_image.image, tmp_path) as (port, _log):
        assert get(port, "/") == (200, b"(0.0, 1.0, 1)")
        assert get(port, "/expand") == (200, b"['no-such-*.txt']")


def test_vendored_sources_ship_beside_their_bytecode(flask_image: BuildResult) -> None:
    result = run_in_image(
        flask_image.image,
        "import inspect, werkzeug.serving\n"
        "print(werkzeug.serving.__file__)\n"
        "print(inspect.getsource(werkzeug.serving.run_simple).splitlines()[0])\n"
        "print(type(werkzeug.serving.__spec__.loader).__name__)\n",
    )
    assert result.returncode == 0, result.stderr
    file, first_line, loader = result.stdout.splitlines()
    assert file.endswith("/usr/lib/summon/site/werkzeug/serving.py")
    assert first_line == "def run_simple("
    # Imported from the unchecked-hash .pyc in __pycache__, with the source for inspect.
    assert loader == "SourceFileLoader"
    pyc = flask_image.image.rootfs() / "usr/lib/summon/site/werkzeug/__pycache__"
    assert (pyc / "serving.cpython-311.pyc").is_file()


def test_a_subpackage_nothing_imported_at_start_ships_whole(flask_image: BuildResult) -> None:
    mods = modules(flask_image)
    # werkzeug.debug: not imported while the app starts, but part of the distribution.
    assert mods["werkzeug.debug.tbtools"]["reason"] in (
        "part of a vendored distribution",
        "static import in shipped code",
    )
    # Its traceback renderer reads the source lines of vendored frames (linecache).
    result = run_in_image(
        flask_image.image,
        "from werkzeug.debug.tbtools import DebugTraceback\n"
        "from werkzeug.routing import Map\n"
        "try:\n    Map([]).bind('example.org').match('/')\n"
        "except Exception as e:\n    print(DebugTraceback(e).render_traceback_text())\n",
    )
    assert result.returncode == 0, result.stderr
    assert "werkzeug/routing/map.py" in result.stdout
    assert "raise NotFound() from None" in result.stdout


def test_vendored_test_folders_stay_out(flask_image: BuildResult) -> None:
    root = flask_image.image.rootfs()
    site = root / SITE_DIR.lstrip("/")
    assert not [p for p in site.rglob("*") if p.is_dir() and p.name in ("tests", "test")]
    assert (site / "flask-3.0.3.dist-info" / "METADATA").is_file()


# --- uvicorn ---------------------------------------------------------------------------------


def test_uvicorn_string_imports(uvicorn_image: BuildResult, tmp_path: Path) -> None:
    mods = modules(uvicorn_image)
    # LOOP_SETUPS and HTTP_PROTOCOLS in uvicorn.config name these as "module:attr" strings.
    for name in ("uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl"):
        via = mods[name].get("via")
        assert isinstance(via, dict) and via["how"] == "string", (name, via)
    result = run_in_image(
        uvicorn_image.image,
        "import uvicorn.loops.asyncio, uvicorn.protocols.http.h11_impl, uvicorn.lifespan.on\n",
    )
    assert result.returncode == 0, result.stderr
    with serve(uvicorn_image.image, tmp_path) as (port, _log):
        assert get(port, "/") == (200, b"hello from uvicorn")


# --- a stdlib http.server script ---------------------------------------------------------------


def test_stdlib_server_survives_a_failing_request_and_speaks_cp1252(
    stdlib_image: BuildResult, tmp_path: Path
) -> None:
    mods = modules(stdlib_image)
    assert {"socketserver", "traceback", "linecache"} <= set(mods)
    # The codec is named only in the script entry, which the trace never imports.
    via = mods["encodings.cp1252"].get("via")
    assert isinstance(via, dict) and via["how"] == "codec"
    with serve(stdlib_image.image, tmp_path) as (port, log):
        status, _ = get_or_closed(port, "/boom")
        assert status in (500, 0)
        assert get(port, "/") == (200, "price: 5 €".encode("cp1252"))
        deadline = time.monotonic() + 5
        while "RuntimeError: boom" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        # socketserver printed the traceback (traceback imported lazily) and went on.
        assert "RuntimeError: boom" in log.read_text()


def get_or_closed(port: int, path: str) -> tuple[int, bytes]:
    """A request whose handler raises: http.server closes the connection unanswered."""
    try:
        return get(port, path)
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return 0, b""


# --- examples/http: an asyncio app ------------------------------------------------------------


def test_asyncio_app_has_no_ssl(http_image: BuildResult) -> None:
    mods = modules(http_image)
    assert "ssl" not in mods and "_ssl" not in mods
    sonames = {lib["soname"] for lib in http_image.image.bom["libraries"]}
    assert not {"libssl.so.3", "libcrypto.so.3"} & sonames
    absent = {a["name"]: a for a in http_image.image.bom["absent"]}
    assert absent["ssl"]["why"] == "optional"
    assert http_image.layer_size <= SIX_MB


def test_why(http_image: BuildResult, store: Store) -> None:
    def why(module: str) -> str:
        env = {**os.environ, "SUMMON_STORE": str(store.root)}
        cmd = [sys.executable, "-m", "summon.cli.main", "inspect", "http:test", "--why", module]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        return out.stdout

    text = why("h11._readers")
    lines = text.splitlines()
    assert lines[0].startswith("h11._readers is in the image (site, ")
    assert lines[1].strip() == "app  [entry import]"
    assert lines[2].strip().startswith("/app/app.py:") and lines[2].endswith("-> h11")
    assert lines[-1].strip().endswith("-> h11._readers")
    text = why("ssl")
    assert text.startswith("ssl is not in the image: optional: ")
    assert "/usr/lib/python3.11/asyncio/" in text and "(guarded: optional)" in text
    assert "include = ['ssl']" in text
    assert why("tkinter.nonexistent").startswith("tkinter.nonexistent is not in the image")


# --- failures that must stop a build ------------------------------------------------------------


def _app(app: Path, manifest: str, source: str) -> Path:
    """The app folder `app`: summon.toml and app.py."""
    app.mkdir()
    (app / "summon.toml").write_text(manifest)
    (app / "app.py").write_text(source)
    return app


def _build_error(store: Store, app: Path, manifest: str, source: str) -> str:
    """The one line a build of the app folder `app` (summon.toml and app.py) fails with."""
    _app(app, manifest, source)
    with pytest.raises(BuildError) as info:
        build(app, store, tag=f"{app.name}:test")
    return str(info.value)


def test_broken_exclude_fails_the_build(store: Store, tmp_path: Path, interp: Interpreter) -> None:
    manifest = 'name = "x"\nentry = "app:main"\nexclude = ["json"]\n'
    source = "import json\n\ndef main():\n    print(json.dumps(1))\n"
    assert _build_error(store, tmp_path / "broken", manifest, source) == (
        "module json (imported by app, line 1) is excluded by exclude = ['json'], but the "
        "app needs it to start (app -> json); remove it from exclude"
    )


def test_warm_up_for_an_entry_the_runtime_does_not_serve_fails_the_build(
    store: Store, tmp_path: Path
) -> None:
    app = tmp_path / "warm"
    manifest = 'name = "x"\nentry = "app:main"\nwarm_up = ["/"]\n'
    assert _build_error(store, app, manifest, "def main():\n    return 0\n") == (
        f"{app / 'summon.toml'}: warm_up: app:main is not a WSGI or ASGI app the runtime "
        "serves; remove warm_up, or point entry at the app object"
    )


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None, reason="sandbox")
def test_an_import_that_outgrows_the_memory_limit_says_so(store: Store, tmp_path: Path) -> None:
    """The verification run holds the app's memory limit: killed by the OOM killer there,
    the build says that and what to raise, not a bare exit status 137."""
    source = "BALLAST = b'x' * (160 * 1024 * 1024)\n\ndef main():\n    return 0\n"
    manifest = 'name = "x"\nentry = "app:main"\nmemory = "64M"\n'
    assert _build_error(store, tmp_path / "heavy", manifest, source) == (
        "verifying the image: importing the entry inside it was killed: out of memory (limit "
        '64M); give the app more, such as memory = "256M" in summon.toml (the same limit '
        "holds when it runs)"
    )


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None, reason="sandbox")
def test_a_call_the_sandbox_refuses_is_named_by_the_build(store: Store, tmp_path: Path) -> None:
    """Outside the sandbox's allowlist an instance gets EPERM and a line; the build's
    recording run hears of it too, and says what to add before the image ever runs."""
    source = (
        "import os\n\ndef main():\n    try:\n        os.getpriority(os.PRIO_PROCESS, 0)\n"
        "    except OSError:\n        pass\n"
    )
    app = _app(tmp_path / "nice", 'name = "nice"\nentry = "app:main"\n', source)
    result = build(app, store, tag="nice:test")
    [line] = [w for w in result.warnings if w.startswith("the app called")]
    assert line == (
        "the app called getpriority in the recording run, which the sandbox refuses (EPERM, "
        "with a line on the console: they are outside its allowlist); if it needs them, add "
        'syscalls = ["getpriority"] to summon.toml'
    )


def test_an_app_reading_its_files_by_relative_name_at_import_builds(
    store: Store, tmp_path: Path
) -> None:
    # FastAPI's first example mounts StaticFiles(directory="static"), which checks the
    # folder at import: the in-image check ran in / and the build failed, though the
    # runtime runs every app in its folder (as `python app.py` in the project folder).
    source = (
        "GREETING = open('greeting.txt').read()\n\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [GREETING.encode()]\n"
    )
    app = _app(tmp_path / "rel", 'name = "rel"\nentry = "app:app"\nports = [8000]\n', source)
    (app / "greeting.txt").write_text("hello\n")
    result = build(app, store, tag="rel:test", record=False)
    assert result.image.app_config()["name"] == "rel"


KEY_AT_IMPORT = (
    "import os\n"
    "KEY = os.environ['SECRET_KEY']\n\n"
    "def app(environ, start_response):\n"
    "    start_response('200 OK', [])\n"
    "    return [b'ok']\n"
)
KEY_MANIFEST = 'name = "keyed"\nentry = "app:app"\nports = [8000]\n'


def test_a_variable_read_at_import_is_named_with_the_build_flag_that_gives_it(
    store: Store, tmp_path: Path
) -> None:
    line = _build_error(store, tmp_path / "keyed", KEY_MANIFEST, KEY_AT_IMPORT)
    assert line.endswith(
        "KeyError: 'SECRET_KEY'; the app reads the variable SECRET_KEY at import: give the "
        "build a value with summon build -e SECRET_KEY=VALUE (used by the build's runs only, "
        "never kept in the image) and each run its own with summon run -e SECRET_KEY=VALUE"
    )


def test_build_env_reaches_the_builds_runs_and_never_the_image(
    store: Store, tmp_path: Path
) -> None:
    app = _app(tmp_path / "keyed", KEY_MANIFEST, KEY_AT_IMPORT)
    result = build(app, store, tag="keyed:test", env={"SECRET_KEY": "build-only-value"})
    assert result.syscalls is not None  # the recording run had it too, and answered
    assert "SECRET_KEY" not in result.image.app_config()["env"]
    layer_text = json.dumps(result.image.bom) + json.dumps(result.image.app_config())
    assert "build-only-value" not in layer_text


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="root, unshare")
def test_an_app_writing_its_volume_at_import_leaves_the_build_hosts_folder_alone(
    store: Store, tmp_path: Path
) -> None:
    # Django's "migrate at start" writes the database at import: the build imported the
    # app on the host, as root, and would have migrated the host's /data if it had one.
    volume = Path("/srv") / f"summon-shield-{os.getpid()}"
    volume.mkdir(parents=True)
    try:
        source = (
            f"open({str(volume / 'db.sqlite3')!r}, 'w').write('migrated')\n\n"
            "def app(environ, start_response):\n"
            "    start_response('200 OK', [])\n"
            "    return [b'ok']\n"
        )
        manifest = f'name = "vol"\nentry = "app:app"\nports = [8000]\nvolumes = ["{volume}"]\n'
        app = _app(tmp_path / "vol", manifest, source)
        build(app, store, tag="vol:test")  # the trace, the check, the recording: all wrote
        assert list(volume.iterdir()) == []
    finally:
        shutil.rmtree(volume)


def test_zoneinfo_without_tzdata_is_warned_of(store: Store, tmp_path: Path) -> None:
    source = "import zoneinfo\n\ndef main():\n    return str(zoneinfo.ZoneInfo('Europe/Paris'))\n"
    app = _app(tmp_path / "zones", 'name = "zones"\nentry = "app:main"\n', source)
    result = build(app, store, tag="zones:test", verify=False)
    [line] = [w for w in result.warnings if "time zone" in w]
    assert line.startswith("app.py names a time zone ('Europe/Paris')")
    assert line.endswith("add tzdata to the requirements")


def test_utc_is_in_every_image_with_zoneinfo_and_no_warning_for_it(
    store: Store, tmp_path: Path
) -> None:
    # FastAPI's and pydantic's closures hold zoneinfo: every such build used to warn, and
    # ZoneInfo("UTC") (Django's USE_TZ) raised ZoneInfoNotFoundError in the image.
    source = "import zoneinfo\n\ndef main():\n    return str(zoneinfo.ZoneInfo('UTC'))\n"
    app = _app(tmp_path / "utc", 'name = "utc"\nentry = "app:main"\n', source)
    result = build(app, store, tag="utc:test", verify=False)
    assert [w for w in result.warnings if "time zone" in w] == []
    zones = result.image.rootfs() / "usr/share/zoneinfo"
    # Where the image's interpreter looks (its TZPATH's first folder), as the image has it.
    code = (
        "import datetime, zoneinfo\n"
        f"zoneinfo.reset_tzpath([{str(zones)!r}])\n"
        "for key in ('UTC', 'Etc/UTC'):\n"
        "    z = zoneinfo.ZoneInfo(key)\n"
        "    print(key, datetime.datetime(2026, 7, 1, tzinfo=z).utcoffset(), z.tzname(None))\n"
        "try:\n"
        "    zoneinfo.ZoneInfo('Europe/Paris')\n"
        "except zoneinfo.ZoneInfoNotFoundError:\n"
        "    print('no Europe/Paris')\n"
    )
    out = run_in_image(result.image, code)
    assert out.stdout == "UTC 0:00:00 UTC\nEtc/UTC 0:00:00 UTC\nno Europe/Paris\n", out.stderr
    # The local zone, for tzlocal (APScheduler) and glibc: UTC.
    assert (result.image.rootfs() / "etc/localtime").read_bytes() == (zones / "UTC").read_bytes()


def test_a_module_the_image_lacks_fails_verification(
    stdlib_image: BuildResult, tmp_path: Path
) -> None:
    # A closure bug, simulated: the image's socketserver is gone.
    rootfs = tmp_path / "rootfs"
    shutil.copytree(stdlib_image.image.rootfs(), rootfs, symlinks=True)
    (rootfs / "usr/lib/python3.11/socketserver.pyc").unlink()
    plan = VerifyPlan(
        interpreter="/usr/bin/python3.11",
        path=(APP_DIR, SITE_DIR, RUNTIME_ROOT),
        runtime=("summon.runtime.init",),
        entry={"kind": "script", "script": "server.py", "imports": [("http.server", 3)]},
    )
    with pytest.raises(VerifyError) as info:
        verify_image(rootfs, plan, image="test", app_config=stdlib_image.image.app_config())
    message = str(info.value)
    assert message.startswith("module socketserver (imported by http.server (")
    assert message.endswith("is not in the image; add it to include, or report a closure bug")
    # And the untouched image passes.
    ok = verify_image(
        stdlib_image.image.rootfs(), plan, image="test", app_config=stdlib_image.image.app_config()
    )
    assert ok.how in ("isolated", "netns", "plain")


def test_a_data_folder_is_still_where_the_apps_relative_paths_look(
    store: Store, tmp_path: Path
) -> None:
    # data = ["data"] bakes the folder in at /data/data; Flask's send_file("data/report.csv")
    # (from the app's folder) answered 500 since the folder had left /app.
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    (app / "data" / "report.csv").write_text("a,b\n")
    (app / "summon.toml").write_text('name = "d"\nentry = "app:main"\ndata = ["data"]\n')
    (app / "app.py").write_text("def main():\n    print(open('data/report.csv').read())\n")
    root = build(app, store, tag="datalink:test", record=False).image.rootfs()
    assert os.readlink(root / "app" / "data") == "../data/data"  # inside the image
    assert (root / "data" / "data" / "report.csv").read_text() == "a,b\n"


def test_a_module_placed_where_the_image_cannot_find_it_fails_the_build(
    store: Store, tmp_path: Path, interp: Interpreter
) -> None:
    # helper.py sits in a data folder: the trace finds it through the app folder, the image
    # holds it only as data, under /data. The build must say so, not the first request.
    app = tmp_path / "app"
    (app / "static").mkdir(parents=True)
    (app / "summon.toml").write_text('name = "y"\nentry = "app:main"\ndata = ["static"]\n')
    (app / "static" / "helper.py").write_text("X = 1\n")
    (app / "app.py").write_text(
        "import os, sys\n"
        "sys.path.append(os.path.join(os.path.dirname(__file__), 'static'))\n"
        "import helper\n\ndef main():\n    pass\n"
    )
    with pytest.raises(BuildError, match=r"^module helper \(.*\) is not in the image; add it "):
        build(app, store, tag="placed:test")


def test_modules_made_in_code_and_named_at_run_time_build(
    store: Store, tmp_path: Path, interp: Interpreter
) -> None:
    """Two closure bugs the compatibility corpus found (tests/compat): bottle puts a module
    made in code, whose __file__ is bottle.py, in sys.modules as bottle.ext; sysconfig
    imports _sysconfigdata__x86_64-linux-gnu, a name no import statement could write (FastAPI
    and Django apps load it at start). Both failed the build as "not in the image"."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "summon.toml").write_text('name = "z"\nentry = "app:main"\n')
    (app / "app.py").write_text(
        "import sys, sysconfig, types\n"
        "ext = types.ModuleType(__name__ + '.ext')\n"
        "ext.__file__, ext.__path__ = __file__, []\n"
        "sys.modules[ext.__name__] = ext\n"
        "CC = sysconfig.get_config_var('CC')\n\n"
        "def main():\n    return 0 if CC else 1\n"
    )
    result = build(app, store, tag="made-in-code:test")
    modules = {m["name"]: m for m in result.image.bom["modules"]}
    data = next(name for name in modules if name.startswith("_sysconfigdata_"))
    assert modules[data]["path"].startswith("/usr/lib/python3.11/_sysconfigdata_")
    assert "app.ext" not in modules or modules["app.ext"]["kind"] == "dynamic"


def test_files_beside_the_app_code_ship_with_it(store: Store, tmp_path: Path) -> None:
    """Found by the compatibility corpus: a Flask app's templates/ folder was left out, and
    every page answered 500 (TemplateNotFound) in the image."""
    app = tmp_path / "app"
    for folder in ("templates", "static", "pkg", ".git", "venv"):
        (app / folder).mkdir(parents=True)
    (app / "summon.toml").write_text('name = "t"\nentry = "app:main"\ndata = ["static"]\n')
    (app / "app.py").write_text(
        "import os\n\ndef main():\n"
        "    return 0 if os.path.exists(os.path.join(os.path.dirname(__file__), 'templates', "
        "'index.html')) else 3\n"
    )
    (app / "templates" / "index.html").write_text("<p>{{ x }}</p>\n")
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "schema.json").write_text("{}\n")
    (app / "static" / "logo.svg").write_text("<svg/>\n")
    (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (app / "venv" / "pyvenv.cfg").write_text("")
    rootfs = build(app, store, tag="beside:test").image.rootfs()
    assert (rootfs / "app/templates/index.html").read_text() == "<p>{{ x }}</p>\n"
    assert (rootfs / "app/pkg/schema.json").is_file()
    assert (rootfs / "data/static/logo.svg").is_file()  # data folders go to /data only,
    assert os.readlink(rootfs / "app/static") == "../data/static"  # linked, not copied
    for absent in ("app/.git", "app/venv"):
        assert not (rootfs / absent).exists(), absent


def test_build_and_images_agree_on_the_unpacked_size(http_image: BuildResult, store: Store) -> None:
    env = {**os.environ, "SUMMON_STORE": str(store.root)}
    out = subprocess.run(
        [sys.executable, "-m", "summon.cli.main", "images", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows = {r["ref"]: r for r in json.loads(out.stdout)}
    assert rows["http:test"]["unpacked"] == http_image.unpacked
    assert http_image.unpacked == sum(http_image.sizes.values())


def test_an_image_finds_its_unpacked_folder_again_once_set_aside(
    http_image: BuildResult, store: Store
) -> None:
    """An Image checks its unpacked folder once; if another unpack sets that folder aside
    meanwhile (it found it changed), the Image unpacks again instead of naming a folder that
    is gone (a long-lived caller, such as the benchmarks, read no app.json then)."""
    image = Image.open(store, http_image.image.ref)
    first = image.rootfs()
    assert image.app_config()["name"] == "http"
    (first / "app" / "stray.txt").write_text("not the image's")  # changed since
    fresh = Image.open(store, http_image.image.ref).rootfs()  # sets the changed one aside
    assert fresh != first and not first.exists()
    assert image.rootfs() == fresh and image.app_config()["name"] == "http"
