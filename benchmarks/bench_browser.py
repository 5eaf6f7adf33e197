"""The browser target's figures, each beside its baseline from the same run (see run.py).

- first-load bytes: what the site's server sent while headless Chromium (fresh profile) opened
  examples/http's site until the app's page showed, vs what the same server sent for a page
  that only starts Pyodide from its unpruned npm core (the same files, gzip as served);
- first load to first app response: navigation to the app's page loaded in its frame (service
  worker install, Pyodide, the app, the page through the service worker), vs navigation to
  the unpruned Pyodide's first runPython in a worker, both with a fresh profile;
- the same after a reload (everything from the service worker's cache) vs the bare page's
  reload (its files revalidated with the server);
- requests/s from the page to the app served by the page's worker (fetch of /robots.txt,
  one at a time), vs the same fetches to the same image on the unix target (a host process).

    python3 benchmarks/bench_browser.py [--requests N] [--runs N]

run(report, image) adds rows to run.py's Report. Needs chromium and node; nothing here is a
test, and nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium import Chromium, Session  # the tests' DevTools driver
from common import HTTP_APP, Report, Row, first_response, free_port, mb, ms

from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec
from summon.targets.browser import pyodide
from summon.targets.browser.server import SiteServer
from summon.targets.browser.site import build_site

FRAME = "document.getElementById('summon-app')"
BARE_PAGE = """<!doctype html><meta charset=utf-8><title>bare pyodide</title>
<script>new Worker("worker.js").onmessage = () => { window.done = performance.now(); };</script>
"""
BARE_WORKER = """importScripts("pyodide.js");
loadPyodide({indexURL: new URL("./", self.location.href).href})
  .then((py) => { py.runPython("1 + 1"); postMessage("ready"); });
"""


@contextmanager
def site_server(root: Path) -> Iterator[tuple[str, SiteServer]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = SiteServer(root, sock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/", server
    finally:
        server.shutdown()
        server.server_close()


def bare_pyodide(folder: Path) -> Path:
    """A page that starts Pyodide from its unpruned npm core files, in a worker."""
    core = pyodide.find()
    for name in pyodide.CORE_FILES:
        shutil.copyfile(core / name, folder / name)
    (folder / "index.html").write_text(BARE_PAGE)
    (folder / "worker.js").write_text(BARE_WORKER)
    return folder


def open_site(page: Session, url: str) -> float:
    """Open the site; ms from navigation to the app's page loaded in its frame."""
    page.navigate(url)
    doc = f"{FRAME}.contentDocument"
    page.wait_for(
        f"!!(window.summon && window.summon.appLoadedAt && {doc} && {doc}.title)",
        timeout=120,
        interval=0.05,
    )
    return float(page.evaluate("window.summon.appLoadedAt"))


def open_bare(page: Session, url: str) -> float:
    page.navigate(url)
    return float(page.wait_for("window.done", timeout=120, interval=0.05))


def requests_per_second(page: Session, where: str, url: str, n: int) -> float:
    """n fetches of url one after another from `where` (a window expression); per second."""
    return float(
        page.evaluate(
            f"""(async () => {{
                const w = {where}; const t0 = performance.now();
                for (let i = 0; i < {n}; i++) {{
                    const r = await w.fetch({url!r}, {{cache: "no-store", mode: "no-cors"}});
                    await r.arrayBuffer();
                }}
                return {n} / ((performance.now() - t0) / 1000);
            }})()""",
            timeout=300,
        )
    )


def run(report: Report, image: Image, requests: int = 300, runs: int = 3) -> None:
    from summon import targets

    cold: list[float] = []
    warm: list[float] = []
    bare_cold: list[float] = []
    bare_warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="summon-bench-browser-") as tmp:
        work = Path(tmp)
        print("exporting examples/http as a browser site...", file=sys.stderr)
        site = build_site(image, work / "site", lambda line: None)
        bare = bare_pyodide(Path(tempfile.mkdtemp(dir=work)))
        with site_server(site.path) as (url, server), site_server(bare) as (bare_url, bare_srv):
            for i in range(runs):
                # Interleaved, each with a fresh profile (a first visit), so that noise from
                # the shared machine hits both alike.
                with Chromium(work / f"profile-bare-{i}") as browser:
                    page = browser.new_page()
                    before = bare_srv.counters.snapshot()["http__bytes_sent"]
                    bare_cold.append(open_bare(page, bare_url))
                    bare_bytes = bare_srv.counters.snapshot()["http__bytes_sent"] - before
                    bare_warm.append(open_bare(page, bare_url))
                with Chromium(work / f"profile-site-{i}") as browser:
                    page = browser.new_page()
                    before = server.counters.snapshot()["http__bytes_sent"]
                    cold.append(open_site(page, url))
                    site_bytes = server.counters.snapshot()["http__bytes_sent"] - before
                    warm.append(open_site(page, url))
                    if i == runs - 1:
                        served_rps = requests_per_second(
                            page, f"{FRAME}.contentWindow", "/robots.txt", requests
                        )
            port = free_port()
            spec = RunSpec.for_image(
                image, name="bench-browser", state_dir=work, ports=(PortForward(port, 80),)
            )
            native = targets.get("unix").start(spec)
            try:
                first_response(port, time.monotonic() + 60)
                with Chromium(work / "profile-native") as browser:
                    page = browser.new_page()
                    page.navigate(url + "_summon/site.json")  # a page of the same origin
                    native_rps = requests_per_second(
                        page, "window", f"http://127.0.0.1:{port}/robots.txt", requests
                    )
            finally:
                native.stop(5)
    report.add(
        Row(
            "browser: first-load bytes, examples/http site (gzip as served)",
            mb(site_bytes),
            mb(bare_bytes) + " unpruned Pyodide core",
            site_bytes / bare_bytes,
            "< 1",
        )
    )
    report.add(
        Row(
            f"browser: first load to the app's page, headless Chromium (median of {runs})",
            ms(median(cold) / 1000),
            ms(median(bare_cold) / 1000) + " bare Pyodide start",
            median(cold) / median(bare_cold),
        )
    )
    report.add(
        Row(
            "  the same after a reload (service worker cache)",
            ms(median(warm) / 1000),
            ms(median(bare_warm) / 1000) + " bare Pyodide reload",
            median(warm) / median(bare_warm),
        )
    )
    report.add(
        Row(
            f"browser: requests/s, page to the worker-served app ({requests}, sequential)",
            f"{served_rps:.0f}/s",
            f"{native_rps:.0f}/s unix target",
            served_rps / native_rps,
        )
    )
    modules = site.stdlib.modules if site.stdlib else []
    report.notes.append(
        f"the site's stdlib archive keeps {len(modules)} modules "
        f"({site.files['_summon/pyodide/python_stdlib.zip'] / 1e6:.2f} MB of Pyodide's "
        f"{(pyodide.folder() / 'python_stdlib.zip').stat().st_size / 1e6:.2f} MB); "
        f"pyodide.asm.wasm ({site.files['_summon/pyodide/pyodide.asm.wasm'] / 1e6:.1f} MB "
        "unpacked) is the same in both and most of either first load"
    )


def main() -> int:
    from summon.build.image import build

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3, help="fresh-profile loads of each page")
    args = parser.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="summon-bench-store-") as tmp:
        image = build(HTTP_APP, Store(Path(tmp)), "bench-http:browser").image
        run(report, image, args.requests, args.runs)
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
