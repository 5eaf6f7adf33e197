"""The site builder's parts without Node or a browser: the stdlib closure, the refusals, the
app bundle, the pinned Pyodide's checks, and the static file server (as a real HTTP peer)."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from summon import targets
from summon.errors import UserError
from summon.targets.browser import pyodide, refusals
from summon.targets.browser.archive import write_zip
from summon.targets.browser.bundle import bundle_entries, write_bundle
from summon.targets.browser.closure import Trace, module_members, prune_stdlib, stdlib_closure
from summon.targets.browser.server import SiteServer

ARCHIVE = [
    "asyncio/",
    "asyncio/__init__.py",
    "asyncio/events.py",
    "email/",
    "email/__init__.py",
    "email/mime/__init__.py",
    "email/mime/text.py",
    "json/__init__.py",
    "json/decoder.py",
    "os.py",
    "site-packages/",
    "ctypes/macholib/fetch_macholib",
    "_pyodide/__init__.py",
    "sqlite3/__init__.py",
]


def test_module_names_of_an_archive() -> None:
    assert module_members(ARCHIVE) == {
        "asyncio": "asyncio/__init__.py",
        "asyncio.events": "asyncio/events.py",
        "email": "email/__init__.py",
        "email.mime": "email/mime/__init__.py",
        "email.mime.text": "email/mime/text.py",
        "json": "json/__init__.py",
        "json.decoder": "json/decoder.py",
        "os": "os.py",
        "_pyodide": "_pyodide/__init__.py",
        "sqlite3": "sqlite3/__init__.py",
    }


def test_the_closure_is_the_traces_and_the_boms_modules_with_their_parents() -> None:
    trace = Trace(
        python="3.11.3",
        builtin=frozenset({"_socket", "_json"}),
        modules={
            "os": "/lib/python3.11/os.py",
            "asyncio.events": "/lib/python311.zip/asyncio/events.py",
            "_pyodide": "/lib/python311.zip/_pyodide/__init__.py",
            "app": "/app/app.py",  # not the stdlib's: never in the archive
            "sys": None,
        },
        status=200,
    )
    bom = {
        "modules": [
            {"name": "email.mime.text", "group": "stdlib"},
            {"name": "_socket", "group": "builtin"},
            {"name": "fcntl", "group": "stdlib"},  # neither in Pyodide's archive nor builtin
            {"name": "h11", "group": "site"},
        ]
    }
    closure = stdlib_closure(trace, bom, ARCHIVE)
    assert closure.modules == [
        "_pyodide",
        "asyncio",
        "asyncio.events",
        "email",
        "email.mime",
        "email.mime.text",
        "os",
    ]
    assert closure.members == [
        "asyncio/__init__.py",
        "asyncio/events.py",
        "email/__init__.py",
        "email/mime/__init__.py",
        "email/mime/text.py",
        "os.py",
        "site-packages/",
        "_pyodide/__init__.py",
    ]
    assert closure.left_out == ["fcntl"]


def test_pruning_writes_only_the_closure_reproducibly(tmp_path: Path) -> None:
    source = tmp_path / "stdlib.zip"
    write_zip(source, [(n, b"" if n.endswith("/") else n.encode()) for n in ARCHIVE])
    trace = Trace("3.11.3", frozenset(), {"json.decoder": "/lib/python3.11/json/decoder.py"}, 200)
    closure = stdlib_closure(trace, {}, ARCHIVE)
    prune_stdlib(source, closure, tmp_path / "a.zip")
    prune_stdlib(source, closure, tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == ["json/__init__.py", "json/decoder.py", "site-packages/"]
        assert zf.read("json/decoder.py") == b"json/decoder.py"
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


# --- refusals ------------------------------------------------------------------------------------


def rootfs(tmp: Path) -> Path:
    root = tmp / "rootfs"
    (root / "app").mkdir(parents=True)
    (root / "app" / "app.py").write_text("x = 1\n")
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"stale")
    site = root / "usr" / "lib" / "summon" / "site"
    (site / "h11").mkdir(parents=True)
    (site / "h11" / "__init__.pyc").write_bytes(b"pyc")
    (site / "h11-0.16.0.dist-info").mkdir()
    (site / "h11-0.16.0.dist-info" / "top_level.txt").write_text("h11\n")
    runtime = root / "usr" / "lib" / "summon" / "summon"
    (runtime / "runtime").mkdir(parents=True)
    for name in ("__init__.pyc", "devices.pyc", "runtime/__init__.pyc", "runtime/init.pyc",
                 "runtime/vm.pyc"):  # fmt: skip
        (runtime / name).write_bytes(b"pyc")
    (root / "data" / "static").mkdir(parents=True)
    (root / "data" / "static" / "index.html").write_text("<p>hi</p>")
    (root / "etc" / "summon").mkdir(parents=True)
    (root / "etc" / "summon" / "app.json").write_text("{}")
    return root


APP = {
    "name": "demo",
    "entry": {"kind": "function", "module": "app", "function": "main"},
    "path": ["/app", "/usr/lib/summon/site"],
    "data": {"static": "/data/static"},
}


def test_an_ordinary_image_passes_every_rule(tmp_path: Path) -> None:
    refusals.check(refusals.Candidate(rootfs(tmp_path), APP, {}))


def test_an_optional_native_extension_is_left_out_not_refused(tmp_path: Path) -> None:
    # Flask's quickstart: Jinja2 needs MarkupSafe, whose wheel carries C speed-ups with a
    # pure-Python fallback. Refusing every package with a .so refused every Flask app; the
    # bundle leaves the .so out (no use in WebAssembly) and the trace decides.
    root = rootfs(tmp_path)
    site = root / "usr" / "lib" / "summon" / "site"
    (site / "markupsafe").mkdir()
    (site / "markupsafe" / "__init__.py").write_text("x = 1\n")
    so = "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"
    (site / so).write_bytes(b"\x7fELF")
    info = site / "MarkupSafe-3.0.4.dist-info"
    info.mkdir()
    (info / "top_level.txt").write_text("markupsafe\n")
    candidate = refusals.Candidate(root, APP, {})
    refusals.check(candidate)
    natives = refusals.native_extensions(candidate)
    assert natives == [
        refusals.NativeExtension(
            "MarkupSafe 3.0.4", f"/usr/lib/summon/site/{so}", "markupsafe._speedups"
        )
    ]
    names = [name for name, _ in bundle_entries(root, APP, for_trace=True)]
    assert "usr/lib/summon/site/markupsafe/__init__.py" in names
    assert not any(name.endswith(".so") for name in names)
    # The app started without it: nothing to refuse.
    assert refusals.refused_for_native(natives, "NameError: name 'x' is not defined") is None


def test_a_native_extension_the_app_cannot_start_without_is_refused_naming_its_package(
    tmp_path: Path,
) -> None:
    root = rootfs(tmp_path)
    site = root / "usr" / "lib" / "summon" / "site"
    (site / "_cffi_backend.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    info = site / "cffi-1.17.1.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("_cffi_backend.cpython-311-x86_64-linux-gnu.so,sha256=x,1\n")
    natives = refusals.native_extensions(refusals.Candidate(root, APP, {}))
    trace_error = (
        "the app does not start in Pyodide 0.25.1 (CPython 3.11.3): importing app: "
        "ModuleNotFoundError: No module named '_cffi_backend'"
    )
    message = refusals.refused_for_native(natives, trace_error)
    assert message is not None
    assert message.startswith("package cffi 1.17.1 has a native extension (/usr/lib/summon/")
    assert "cannot start without" in message and "\n" not in message
    nested = refusals.NativeExtension("pkg 1.0", "/usr/lib/summon/site/pkg/_c.so", "pkg._c")
    from_import = "ImportError: cannot import name '_c' from 'pkg' (/usr/lib/summon/site/pkg/...)"
    assert refusals.refused_for_native([nested], from_import) == nested.refusal()
    assert refusals.refused_for_native([nested], "No module named 'pkg._c'") == nested.refusal()
    assert refusals.refused_for_native([nested], "No module named 'other'") is None
    assert message.endswith("run it on another target (summon run IMAGE), or pick a pure-Python "
                            "package for a tab")  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (
            {"entry": {"kind": "script", "path": "/app/serve.py"}},
            "/app/serve.py is a script.*set the manifest's entry to the app object",
        ),
        ({"secrets": ["DB_PASSWORD"]}, r"it needs secrets \(DB_PASSWORD\)"),
        ({"egress": ["api.example.org:443"]}, "reaches out to the network"),
    ],
)
def test_what_a_tab_cannot_give_is_refused_in_one_line(
    tmp_path: Path, extra: dict[str, object], why: str
) -> None:
    with pytest.raises(refusals.Unexportable, match=why):
        refusals.check(refusals.Candidate(rootfs(tmp_path), {**APP, **extra}, {}))


def test_a_rule_added_by_someone_else_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusals, "RULES", [*refusals.RULES, lambda c: "it wants a GPU"])
    with pytest.raises(refusals.Unexportable, match="it wants a GPU"):
        refusals.check(refusals.Candidate(rootfs(tmp_path), APP, {}))


# --- the bundle ----------------------------------------------------------------------------------


def test_the_bundle_holds_the_images_paths_without_pycache(tmp_path: Path) -> None:
    root = rootfs(tmp_path)
    names = write_bundle(root, APP, tmp_path / "app.zip")
    assert names == [
        "etc/summon/app.json",
        "app/app.py",
        "usr/lib/summon/site/h11/__init__.pyc",
        "usr/lib/summon/site/h11-0.16.0.dist-info/top_level.txt",
        "data/static/index.html",
        "usr/lib/summon/summon/__init__.pyc",
        "usr/lib/summon/summon/devices.pyc",
        "usr/lib/summon/summon/runtime/__init__.pyc",
        "usr/lib/summon/summon/runtime/init.pyc",
        "usr/lib/summon/summon/runtime/vm.pyc",
        "usr/lib/summon/summon_browser/__init__.py",
        "usr/lib/summon/summon_browser/boot.py",
        "usr/lib/summon/summon_browser/content.py",
        "usr/lib/summon/summon_browser/cookies.py",
        "usr/lib/summon/summon_browser/http1.py",
        "usr/lib/summon/summon_browser/served.py",
        "usr/lib/summon/summon_browser/stack.py",
    ]
    with zipfile.ZipFile(tmp_path / "app.zip") as zf:
        assert zf.namelist() == names
    traced = [name for name, _ in bundle_entries(root, APP, for_trace=True)]
    assert traced == [*names, "usr/lib/summon/summon_browser/trace.py"]


def test_an_image_serving_wsgi_without_the_exchange_is_refused_not_patched(
    tmp_path: Path,
) -> None:
    # Rule: a tab runs only the image's own code; an image from an older summon that left the
    # exchange out is refused with the fix, never completed with this summon's copy.
    root = rootfs(tmp_path)
    served = root / "usr" / "lib" / "summon" / "summon" / "runtime" / "http"
    served.mkdir()
    (served / "__init__.pyc").write_bytes(b"pyc")
    wsgi = APP | {"entry": {"kind": "wsgi", "module": "app", "attr": "app"}}
    with pytest.raises(UserError, match="rebuild it"):
        dict(bundle_entries(root, wsgi))
    # An entry function that runs the server itself is served by the tab's Stack instead.
    assert "usr/lib/summon/summon/runtime/http/__init__.pyc" in dict(bundle_entries(root, APP))
    (served / "exchange.pyc").write_bytes(b"the image's own")
    names = dict(bundle_entries(root, wsgi))
    assert names["usr/lib/summon/summon/runtime/http/exchange.pyc"].read_bytes() == (
        b"the image's own"
    )


# --- the pinned Pyodide -------------------------------------------------------------------------


def test_a_missing_or_altered_pyodide_is_one_line_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMON_PYODIDE", str(tmp_path))
    with pytest.raises(pyodide.PyodideMissing, match=r"is not installed .* run python3 -m"):
        pyodide.find()
    for name in pyodide.CORE_FILES:
        (tmp_path / name).write_bytes(b"not pyodide")
    with pytest.raises(pyodide.PyodideMissing, match="SHA-256 differs from the pinned one"):
        pyodide.find()


def test_the_browser_target_is_registered_and_exports_the_browser_format() -> None:
    assert "browser" in targets.names()
    assert targets.export_formats()["browser"] == "browser"


# --- the static server ---------------------------------------------------------------------------


@pytest.fixture
def site_server(tmp_path: Path) -> Iterator[tuple[int, SiteServer]]:
    site = tmp_path / "site"
    (site / "_summon").mkdir(parents=True)
    (site / "index.html").write_text('<base href="./"><p>shell</p>' + " " * 600)
    (site / "_summon" / "app.zip").write_bytes(b"PK" + bytes(2000))
    (site / "_summon" / "worker.js").write_text("// worker\n" * 200)
    (tmp_path / "secret.txt").write_text("outside the site")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = SiteServer(site, sock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sock.getsockname()[1], server
    server.shutdown()
    server.server_close()


def get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_the_server_gzips_what_compresses_and_revalidates(
    site_server: tuple[int, SiteServer],
) -> None:
    port, server = site_server
    status, headers, body = get(port, "/_summon/worker.js", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert gzip.decompress(body) == b"// worker\n" * 200
    assert headers["cache-control"] == "no-cache"
    status, headers2, body = get(port, "/_summon/app.zip", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in headers2 and len(body) == 2002  # compressed already
    status, _, body = get(port, "/_summon/worker.js", {"If-None-Match": headers["etag"]})
    assert (status, body) == (304, b"")
    counters = server.counters.snapshot()
    assert counters["http__requests"] == 3
    assert counters["http__bytes_sent"] > 2002 + len(gzip.compress(b"// worker\n" * 200))


def test_a_navigation_anywhere_gets_the_shell_and_nothing_leaves_the_site(
    site_server: tuple[int, SiteServer],
) -> None:
    port, _ = site_server
    status, headers, body = get(port, "/deep/link?x=1", {"Sec-Fetch-Mode": "navigate"})
    assert status == 200 and body.startswith(b'<base href="/"><p>shell</p>')
    assert get(port, "/deep/link")[0] == 404  # not a navigation: no shell
    assert get(port, "/_summon/missing.js", {"Accept": "text/html"})[0] == 404
    assert get(port, "/../secret.txt")[0] == 404
    assert get(port, "/%2e%2e/secret.txt")[0] == 404
    status, headers, _ = get(port, "/", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = get(port, "/", method="HEAD")
    assert status == 200 and body == b"" and headers["content-type"].startswith("text/html")
