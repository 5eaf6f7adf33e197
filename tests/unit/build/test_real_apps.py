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
from typing import Any

import pytest

from summon.build.image import APP_DIR, RUNTIME_ROOT, SITE_DIR, BuildResult, build
from summon.build.python import Interpreter
from summon.build.records import host_etc_files
from summon.build.verify import VerifyError, VerifyPlan, verify_image
from summon.store.image import Image
from summon.store.layout import Store
from summon.targets.base import RunSpec
from summon.targets.unix import UnixTarget

APPS = Path(__file__).parent / "apps"
EXAMPLES = Path(__file__).parents[3] / "examples"
SIX_MB = 6 * 1000 * 1000

Build = Callable[[Path], BuildResult]


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


def test_stdlib_files_of_the_hosts_etc_ship_with_their_modules(
    stdlib_image: BuildResult, tmp_path: Path
) -> None:
    """http.server (mimetypes, socket): without /etc/mime.types an image sent .webp and .woff2
    as application/octet-stream (the host's mimetypes knows them from that file), and without
    /etc/services getaddrinfo(host, "http") failed, in the sandbox and a VM alike."""
    root = stdlib_image.image.rootfs()
    for path, module in (("mime.types", "mimetypes"), ("services", "socket")):
        host = Path("/etc", path)
        if not host.is_file():
            continue
        assert module in modules(stdlib_image)
        assert (root / "etc" / path).read_bytes() == host.read_bytes()
    probe = (
        "import mimetypes, os; mimetypes.init([os.getcwd() + '/etc/mime.types']); "
        "print(mimetypes.guess_type('a.webp')[0], mimetypes.guess_type('a.woff2')[0])"
    )
    if Path("/etc/mime.types").is_file():
        assert run_in_image(stdlib_image.image, probe).stdout.split() == [
            "image/webp",
            "font/woff2",
        ]
    assert host_etc_files(["json"]) == []
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/services").write_text("http 80/tcp\n")
    assert host_etc_files(["socket", "mimetypes"], tmp_path) == ["/etc/services"]


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


def test_why_with_json_is_one_json_document(http_image: BuildResult, store: Store) -> None:
    # `inspect --json --why MODULE` printed the text lines: a script parsing --json broke.
    env = {**os.environ, "SUMMON_STORE": str(store.root)}

    def why(module: str) -> Any:
        cmd = [sys.executable, "-m", "summon.cli.main", "inspect", "--json", "--why", module]
        out = subprocess.run([*cmd, "http:test"], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        return json.loads(out.stdout)

    doc = why("h11._readers")
    assert doc["module"] == "h11._readers" and doc["in_image"] is True
    assert doc["ref"] == "http:test" and doc["id"] == http_image.image.id
    assert doc["why"][0].startswith("h11._readers is in the image (site, ")
    assert doc["why"][-1].strip().endswith("-> h11._readers")
    doc = why("ssl")
    assert doc["in_image"] is False and doc["why"][0].startswith("ssl is not in the image")


# --- checking and reading the built images -----------------------------------------------


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
