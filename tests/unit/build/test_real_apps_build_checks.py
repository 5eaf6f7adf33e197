"""What a build stops on, warns of, or gets right, for small apps each test writes itself.

A build fails with one line saying what to change (an exclude the app needs, a warm-up the
runtime cannot serve, a memory limit, a variable read at import, a module placed where the
image cannot find it); warns of a call the sandbox refuses and of time zones it lacks; and
ships what the app reads at run time (files by relative name, data folders, files beside the
code), never the build's own environment or the host's folders.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_real_apps import run_in_image

from summon.build.image import build
from summon.build.python import Interpreter
from summon.build.zones import missing_zone_line
from summon.errors import BuildError
from summon.store.layout import Store

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


def test_a_name_the_stdlib_defines_only_with_ssl_says_to_include_it(
    store: Store, tmp_path: Path
) -> None:
    """prometheus_client imports urllib.request's HTTPSHandler, which exists only when
    http.client could import ssl, which images leave out unless asked: the build failed
    with the bare ImportError, and include = ["ssl"] did not help (the stdlib's import of it
    came first, and was still refused)."""
    source = "from urllib.request import HTTPSHandler\n\ndef main():\n    pass\n"
    manifest = 'name = "tls"\nentry = "app:main"\nnetwork = "none"\n'
    assert _build_error(store, tmp_path / "tls", manifest, source) == (
        "app failed to import during the closure trace: ImportError: cannot import name "
        "'HTTPSHandler' from 'urllib.request' (/usr/lib/python3.11/urllib/request.py); that "
        "stdlib module defines some names only with ssl, which the stdlib imports optionally "
        "and images leave out unless asked: add include = ['ssl'] to summon.toml and build "
        "again"
    )
    app = _app(tmp_path / "tls2", manifest + 'include = ["ssl"]\n', source)
    result = build(app, store, tag="tls2:test", record=False)
    names = {m["name"] for m in result.image.bom["modules"]}
    assert {"ssl", "_ssl"} <= names
    check = run_in_image(result.image, "from urllib.request import HTTPSHandler; print('ok')")
    assert check.stdout == "ok\n", check.stderr


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


def test_a_zone_the_image_lacks_at_import_fails_the_build_naming_tzdata(
    store: Store, tmp_path: Path
) -> None:
    # A module-level ZoneInfo of a zone the host has: the trace imported it, the image (UTC
    # only) raised, and the build's line said only "it did on the host during the trace".
    source = (
        "import zoneinfo\nLOCAL = zoneinfo.ZoneInfo('America/Chicago')\n\ndef main():\n    pass\n"
    )
    manifest = 'name = "chicago"\nentry = "app:main"\n'
    line = _build_error(store, tmp_path / "chicago", manifest, source)
    assert line.startswith("the entry does not import inside the image: ZoneInfoNotFoundError")
    assert line.endswith(
        "the image holds no time zone data but UTC (the host's /usr/share/zoneinfo is not "
        "shipped): add tzdata to the requirements for America/Chicago"
    )


def test_djangos_time_zone_check_names_its_setting_and_tzdata() -> None:
    """Django checks TIME_ZONE against /usr/share/zoneinfo when its settings load, and the
    image's holds UTC only: a settings module naming no TIME_ZONE (Django's default is
    America/Chicago) failed the build with a zone the developer never wrote."""
    problem = "ValueError: Incorrect timezone setting: America/Chicago"
    assert missing_zone_line("the entry", problem) == (
        f"the entry does not import inside the image: {problem}; the image holds no time zone "
        "data but UTC (the host's /usr/share/zoneinfo is not shipped): add tzdata to the "
        "requirements for America/Chicago (Django's TIME_ZONE, America/Chicago when the "
        'settings name none; or set TIME_ZONE = "UTC")'
    )
    assert missing_zone_line("the entry", "ValueError: Incorrect padding") is None


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


def test_a_library_the_app_loads_by_name_at_import_is_shipped(store: Store, tmp_path: Path) -> None:
    """python-magic loads libmagic with ctypes.CDLL("libmagic.so.1") at import: no DT_NEEDED
    names it, the image lacked it, and the build failed its check inside the image
    ("failed to find libmagic"). The trace's mapped host libraries go in (with libanl,
    which every glibc host has, standing in for libmagic here)."""
    if not Path("/usr/lib/x86_64-linux-gnu/libanl.so.1").exists():
        pytest.skip("no Debian x86_64 libanl.so.1 on this host")
    source = (
        "import ctypes\n\nANL = ctypes.CDLL('libanl.so.1')\n\n"
        "def main():\n    print(ANL.getaddrinfo_a is not None)\n"
    )
    app = _app(tmp_path / "bylib", 'name = "bylib"\nentry = "app:main"\n', source)
    result = build(app, store, tag="bylib:test")
    assert (result.image.rootfs() / "usr/lib/x86_64-linux-gnu/libanl.so.1").is_file()
