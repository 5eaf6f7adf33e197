"""The browser target in a real headless Chromium (Debian's; nothing is downloaded).

`summon export IMAGE --as browser` writes the site, `summon run -d IMAGE --target browser`
serves it, and Chromium, driven over the DevTools protocol (tests/chromium.py), opens it with
a fresh profile: examples/http must answer from the service worker with its static server
stopped, a POST must reach the app (its own 405), the first load must cost fewer bytes than
Pyodide's unpruned core; a WSGI app on a volume must keep a note in IndexedDB, and its
cookie, across a reload and a browser restart, and its errors must show on the page.
Screenshots are written under the test's tmp folder (their paths printed).
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from chromium import Chromium, Session, chromium_binary
from summon_cli import APPS, EXAMPLES, Summon, free_port

from summon.targets.browser import pyodide
from summon.targets.browser.server import SiteServer

pytestmark = [
    pytest.mark.skipif(
        chromium_binary() is None, reason="chromium is not installed: apt-get install chromium"
    ),
    pytest.mark.skipif(
        shutil.which("node") is None,
        reason="node is not installed (the export traces apps in Pyodide): apt-get install nodejs",
    ),
]

FRAME = "document.getElementById('summon-app')"
HTTP_TITLE = "summon: hello from a unikernel"


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Summon]:
    try:
        core = pyodide.find()
    except pyodide.PyodideMissing as e:
        pytest.skip(str(e))
    cli = Summon(tmp_path_factory.mktemp("home"))
    cli.env["SUMMON_PYODIDE"] = str(core)  # the test's HOME has no cache of its own
    yield cli
    for name, row in cli.ps().items():
        if row.get("status") == "running":
            cli("stop", name)


def export(summon: Summon, app: Path, tag: str, dest: Path) -> Path:
    summon.ok("build", str(app), "-t", tag)
    summon.ok("export", tag, "--as", "browser", "-o", str(dest))
    return dest


def serve(summon: Summon, image: str, name: str) -> str:
    """`summon run -d IMAGE --target browser -p PORT:80`; the URL it says to open."""
    port = free_port()
    summon.ok("run", "-d", "--name", name, "--target", "browser", "-p", f"{port}:80", image)
    url = f"http://127.0.0.1:{port}/"
    logs = summon.ok("logs", name)
    assert f"summon: open {url} in a browser" in logs
    return url


def app_ready(page: Session, has: str, timeout: float = 60.0) -> None:
    """Wait until the shell shows the app and the frame's document has `has` (a JS test)."""
    doc = f"{FRAME}.contentDocument"
    page.wait_for(
        f"!!(window.summon && window.summon.state === 'ready' && {FRAME} && {doc} && "
        f"{doc}.readyState === 'complete' && ({has}))",
        timeout=timeout,
    )


def responses(page: Session, since: int = 0) -> list[dict[str, Any]]:
    return [e["response"] | {"type": e.get("type")} for e in page.events(
        "Network.responseReceived", since)]  # fmt: skip


def shot(page: Session, path: Path) -> None:
    page.screenshot(path)
    print(f"screenshot: {path}")


def core_gzip_bytes() -> int:
    """What Pyodide's unpruned core files cost gzip-compressed, as the site's server sends."""
    total = 0
    for name in pyodide.CORE_FILES:
        data = (pyodide.folder() / name).read_bytes()
        total += len(data) if name.endswith(".zip") else len(gzip.compress(data, 6))
    return total


@pytest.fixture(scope="module")
def http_site(summon: Summon, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/http built as the image `http` and exported: the site's folder."""
    return export(summon, Path("examples/http"), "http", tmp_path_factory.mktemp("h") / "site")


@pytest.mark.slow
def test_examples_http_runs_in_a_tab_from_the_service_worker(
    summon: Summon, http_site: Path, tmp_path: Path
) -> None:
    assert (http_site / "_summon-sw.js").is_file() and (http_site / "index.html").is_file()
    url = serve(summon, "http", "web")
    with Chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.send("Network.enable")
        page.navigate(url)
        app_ready(page, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")
        assert page.evaluate("document.title") == HTTP_TITLE  # the shell follows the frame
        first = responses(page)
        app_doc = [r for r in first if r["url"] == url and r["type"] == "Document"]
        assert [r["fromServiceWorker"] for r in app_doc] == [False, True]  # shell, then app
        style = [r for r in first if r["url"] == url + "style.css"]
        assert len(style) == 1 and style[0]["fromServiceWorker"] and style[0]["status"] == 200
        shot(page, tmp_path / "http-first-load.png")
        stats = json.loads(summon.ok("stats", "web", "--no-stream", "--json"))[0]["network"]
        assert stats["http__bytes_sent"] < core_gzip_bytes(), (stats, core_gzip_bytes())

        # A hard reload (Shift-reload) loads the page past its service worker: the shell
        # asks the worker to take it, or it waited at "Installing" for ever.
        mark = page.mark()
        page.send("Page.reload", {"ignoreCache": True})
        page.wait_event("Page.loadEventFired", since=mark)
        app_ready(page, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}", 30)
        assert page.evaluate("!!navigator.serviceWorker.controller")

        # Two tabs each run their own app; a restarted service worker has lost its ports and
        # asks both for new ones: every request still goes to the newest tab's app (its
        # access log shows it), not to whichever tab offered first.
        newer = browser.new_page()
        newer.navigate(url)
        app_ready(newer, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")
        page.send("ServiceWorker.enable")
        for round_ in range(2):
            page.send("ServiceWorker.stopAllWorkers")
            for n, tab in enumerate((page, newer)):
                path = f"/which-app-{round_}-{n}"
                tab.evaluate(f"{FRAME}.contentWindow.fetch({json.dumps(path)}).then(r => r.status)")
                logs = [t.evaluate("window.summon.log.join('\\n')") for t in (page, newer)]
                assert path not in logs[0] and path in logs[1], (path, logs)
        newer.send("Page.close")

        summon.ok("stop", "web")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), 2)
        mark = page.mark()
        page.navigate(url)
        app_ready(page, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")
        again = [r for r in responses(page, mark) if not r["url"].endswith("favicon.ico")]
        assert {r["url"] for r in again} >= {url, url + "style.css", url + "_summon/shell.js"}
        assert all(r["fromServiceWorker"] and r["status"] == 200 for r in again), again
        # Nothing failed to load with the server gone (but the favicon, which is not ours).
        failed = [f for f in page.events("Network.loadingFailed", mark) if f["type"] != "Other"]
        assert failed == []

        post = page.evaluate(
            f"""(async () => {{
                const r = await {FRAME}.contentWindow.fetch("/", {{method: "POST", body: "a=1",
                    headers: {{"Content-Type": "application/x-www-form-urlencoded"}}}});
                return {{status: r.status, server: r.headers.get("server"),
                         allow: r.headers.get("allow"),
                         bridge: r.headers.get("x-summon-bridge"), body: await r.text()}};
            }})()"""
        )
        assert post == {
            "status": 405,
            "server": "summon-http",  # examples/http's own Server field: the app answered
            "allow": "GET, HEAD",
            "bridge": None,
            "body": "405 Method Not Allowed\n",
        }
        posted = [r for r in responses(page, mark) if r["status"] == 405]
        assert posted and all(r["fromServiceWorker"] for r in posted)

        checks = page.evaluate("window.summon.selftest()")
        assert checks["urandomBytes"] == 16 and checks["urandomUsedGetRandomValues"], checks
        assert checks["clockSkewMs"] < 5000, checks

        page.evaluate(
            f"""(() => {{ const d = {FRAME}.contentDocument; const f = d.createElement("form");
                f.method = "post"; f.action = "/"; d.body.appendChild(f); f.submit(); }})()"""
        )
        app_ready(page, f"{FRAME}.contentDocument.body.innerText.includes('405 Method')")
        shot(page, tmp_path / "http-form-post-405.png")


# In the page, the moment the shell's state leaves "loading": a fetch of an app route from
# the frame's window (the app's page) and one from the shell's own.
FIRST_FETCHES = f"""new Promise((done) => {{
    const seen = async (w) => {{
        try {{
            const r = await w.fetch("/robots.txt");
            return {{status: r.status, server: r.headers.get("server")}};
        }} catch (e) {{
            return {{error: String(e)}};
        }}
    }};
    const poll = async () => {{
        if (window.summon.state === "loading") return setTimeout(poll, 0);
        done([window.summon.state, await seen({FRAME}.contentWindow), await seen(window)]);
    }};
    poll();
}})"""


@pytest.mark.slow
def test_once_the_shell_says_ready_a_first_visits_fetches_reach_the_app(
    summon: Summon, http_site: Path, tmp_path: Path
) -> None:
    """The shell said "ready" as the app began to listen, when its frame still held the
    initial about:blank, which no service worker controls: a fetch from the frame went to the
    static server (a 404) or failed as the frame navigated (4 of 20 first visits checked
    every 100 ms; every one checked at once). "ready" now waits for the app's page."""
    url = serve(summon, "http", "web-first")
    app = {"status": 200, "server": "summon-http"}  # examples/http's own Server field
    with Chromium(tmp_path / "profile") as browser:
        for _ in range(3):  # every one failed so when polled at once
            page = browser.new_page(fresh=True)  # a first visit: no service worker yet
            page.navigate(url)
            assert page.evaluate(FIRST_FETCHES, timeout=60) == ["ready", app, app]
            browser.send("Target.closeTarget", {"targetId": page.target_id})
    summon.ok("stop", "web-first")


# From the frame, a GET and a POST whose answers (or failures) are kept in window.inflight.
IN_FLIGHT = f"""window.inflight = {{}};
for (const method of ["GET", "POST"]) {{
    {FRAME}.contentWindow.fetch("/in-flight-" + method, {{method}}).then(
        async (r) => {{ window.inflight[method] = [r.status, r.headers.get("server"),
            (await r.text()).trim()]; }},
        (e) => {{ window.inflight[method] = String(e); }});
}}
"sent";  // not the last fetch's promise: evaluate would wait for it"""


@pytest.mark.slow
def test_a_tab_closed_while_its_app_answers_another_tabs_request(
    summon: Summon, http_site: Path, tmp_path: Path
) -> None:
    """Of two tabs, the newer one's app answers both; when that tab went (closed, reloaded)
    while its app owed an answer, the other tab's request waited 90 s for a 503 "the app did
    not answer". A GET is now sent again to the app still open; a POST, which may have taken
    effect, is a 503 at once."""
    url = serve(summon, "http", "web-two")
    with Chromium(tmp_path / "profile") as browser:
        older = browser.new_page()
        older.navigate(url)
        app_ready(older, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")
        newer = browser.new_page()
        attach = {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True}
        newer.send("Target.setAutoAttach", attach)  # its workers: sessions of their own
        mark = newer.mark()
        newer.navigate(url)
        app_ready(newer, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")
        # The newer tab's app worker, paused in the debugger: it takes requests, answers none.
        worker = newer.wait_event(
            "Target.attachedToTarget", lambda p: p["targetInfo"]["type"] == "worker", since=mark
        )
        app = Session(browser, worker["sessionId"], worker["targetInfo"]["targetId"])
        app.send("Debugger.enable")
        app.send("Debugger.pause")
        assert older.evaluate(IN_FLIGHT) == "sent"
        time.sleep(1)
        assert older.evaluate("window.inflight") == {}  # both wait for the newer tab's app
        browser.send("Target.closeTarget", {"targetId": newer.target_id})
        older.wait_for("Object.keys(window.inflight).length === 2", timeout=30)
        assert older.evaluate("window.inflight") == {
            "GET": [404, "summon-http", "404 Not Found"],  # examples/http's own answer
            "POST": [503, None, "summon: the tab running the app was closed before it "
                     "answered; send it again"],
        }  # fmt: skip
        assert older.evaluate("window.summon.log.some((l) => l.includes('/in-flight-GET'))")
    summon.ok("stop", "web-two")


@contextmanager
def static_site(root: Path) -> Iterator[str]:
    """summon's static server on a site folder as it is (a host that lost a file): its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = SiteServer(root, sock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_first_visit_whose_site_files_cannot_be_downloaded_says_so(
    http_site: Path, tmp_path: Path
) -> None:
    """The service worker's install failed (a file its host lost, the network gone halfway)
    and the page, waiting for it, showed "Downloading the site" for ever. It now says which
    file failed and to reload; a reload once the file is back starts the app."""
    site = tmp_path / "site"
    shutil.copytree(http_site, site)
    bundle = site / "_summon" / "app.zip"
    kept = bundle.rename(tmp_path / "app.zip")
    with static_site(site) as url, Chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.navigate(url)
        page.wait_for("window.summon.state !== 'loading'", timeout=60)
        assert page.evaluate("window.summon.state") == "failed"
        assert page.evaluate("window.summon.error") == (
            "the site's files could not be downloaded (_summon/app.zip: HTTP 404); "
            "reload the page to try again"
        )
        kept.rename(bundle)
        page.navigate(url)
        app_ready(page, f"{FRAME}.contentDocument.title === {json.dumps(HTTP_TITLE)}")


@pytest.fixture(scope="module")
def notes_url(summon: Summon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The notes app (WSGI, a volume) exported and served: its URL."""
    export(summon, APPS / "browser_notes", "notes", tmp_path_factory.mktemp("n") / "site")
    return serve(summon, "notes", "notes")


NOTES = f"{FRAME}.contentDocument.getElementById('notes')"
ADDED = f"{FRAME}.contentDocument.getElementById('added').textContent"


@pytest.mark.slow
def test_a_wsgi_apps_note_survives_a_reload_and_a_browser_restart(
    notes_url: str, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    with Chromium(profile) as browser:
        page = browser.new_page()
        page.navigate(notes_url)
        app_ready(page, f"{NOTES} && {NOTES}.textContent === ''")
        page.evaluate(
            f"""(() => {{ const d = {FRAME}.contentDocument;
                d.querySelector("input[name=text]").value = "water the plants";
                d.querySelector("form").submit(); }})()"""
        )  # a form POST, answered 303 See Other -> GET /
        app_ready(page, f"{NOTES} && {NOTES}.textContent === 'water the plants'")
        # The POST's Set-Cookie came back with the GET it redirected to (the tab's jar),
        # and HttpOnly holds: the page's scripts do not see it.
        assert page.evaluate(ADDED) == "1"
        assert page.evaluate(f"{FRAME}.contentDocument.cookie") == ""
        page.navigate(notes_url)
        app_ready(page, f"{NOTES} && {NOTES}.textContent === 'water the plants'")
        assert page.evaluate(ADDED) == "1"  # the jar was saved: a reload keeps the session
        shot(page, tmp_path / "notes-after-reload.png")
    with Chromium(profile) as browser:  # the same profile: IndexedDB is all that remains
        page = browser.new_page()
        page.navigate(notes_url)
        app_ready(page, f"{NOTES} && {NOTES}.textContent === 'water the plants'")
        assert page.evaluate(ADDED) == "1"  # a persistent cookie outlives the browser too
        page.evaluate(f"{FRAME}.contentWindow.location.href = '/boom'")
        page.wait_for("!!window.summon.errors.some(e => e.includes('boom: the notes app failed'))")
        assert page.evaluate("document.getElementById('summon-errors').hidden") is False
        assert "Traceback" in page.evaluate(
            "document.getElementById('summon-errors-text').textContent"
        )
        shot(page, tmp_path / "notes-error-on-the-page.png")


@pytest.mark.slow
def test_a_second_tab_waits_for_the_first_to_hand_over_the_volume(
    notes_url: str, tmp_path: Path
) -> None:
    """Two tabs saving their own copies of one IndexedDB volume would undo each other."""
    with Chromium(tmp_path / "profile") as browser:
        first = browser.new_page()
        first.navigate(notes_url)
        app_ready(first, f"{NOTES} && {NOTES}.textContent === ''")
        second = browser.new_page()
        second.navigate(notes_url)
        second.wait_for(
            "document.getElementById('summon-step').textContent.includes('another tab')"
        )
        added = first.evaluate(
            f"""(async () => {{
                const r = await {FRAME}.contentWindow.fetch("/add", {{method: "POST",
                    body: "text=from+the+first+tab",
                    headers: {{"Content-Type": "application/x-www-form-urlencoded"}}}});
                return [r.status, r.redirected, (await r.text()).includes("first tab")];
            }})()"""
        )
        assert added == [200, True, True]  # the first tab's app answered, the second waits
        assert second.evaluate("window.summon.state") == "loading"
        browser.send("Target.closeTarget", {"targetId": first.target_id})
        app_ready(second, f"{NOTES} && {NOTES}.textContent === 'from the first tab'")


@pytest.fixture(scope="module")
def todo_url(summon: Summon, tmp_path_factory: pytest.TempPathFactory) -> str:
    export(summon, EXAMPLES / "todo", "todo", tmp_path_factory.mktemp("t") / "site")
    return serve(summon, "todo", "todo")


OPEN = f"{FRAME}.contentDocument.getElementById('open')"


@pytest.mark.slow
def test_examples_todo_keeps_its_tasks_and_history_across_reloads(
    summon: Summon, todo_url: str, tmp_path: Path
) -> None:
    """examples/todo unchanged: an entry function with a KV_RW store (a Git repository on
    the /data volume, in IndexedDB here) serving its WSGI app with the runtime's server,
    which runs it on the event loop in a tab (no threads)."""
    with Chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.navigate(todo_url)
        app_ready(page, f"{OPEN} && {OPEN}.textContent === ''")
        stats = json.loads(summon.ok("stats", "todo", "--no-stream", "--json"))[0]["network"]
        assert stats["http__bytes_sent"] < core_gzip_bytes(), (stats, core_gzip_bytes())
        page.evaluate(
            f"""(() => {{ const d = {FRAME}.contentDocument;
                d.querySelector("input[name=title]").value = "buy milk";
                d.querySelector("form[action='/tasks']").submit(); }})()"""
        )  # a form POST: a commit in the store, then 303 See Other -> GET /
        app_ready(page, f"{OPEN} && {OPEN}.textContent.includes('buy milk')")
        page.navigate(todo_url)  # a reload: Pyodide starts over, the store is read back
        app_ready(page, f"{OPEN} && {OPEN}.textContent.includes('buy milk')")
        history = page.evaluate(
            f"""(async () => {{
                const r = await {FRAME}.contentWindow.fetch("/history?format=json");
                return [r.status, await r.text()];
            }})()"""
        )
        assert history[0] == 200, history
        assert "buy milk" in history[1], history
        shot(page, tmp_path / "todo-after-reload.png")
        # Nothing on the error panel: kv's "no exclusive lock" warning (Pyodide has no fcntl)
        # showed there at every start, though the tab's Web Lock holds the store.
        assert page.evaluate("window.summon.errors") == []
