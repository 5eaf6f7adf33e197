"""The browser target: the app in a browser tab, Pyodide in the page, HTTP behind a service worker.

`summon export IMAGE --as browser -o DIR` writes the static site (site.py). `summon run IMAGE
--target browser -p 8080:80` serves that site on 127.0.0.1:8080 and prints its address: the
instance is a plain static file server (server.py) in a process of its own; the app itself
runs in whichever tab opens the address. prepare() builds the site into summon's cache (one
per image and site-builder version), with progress; start() only serves it. -p's guest port
does not matter (the page routes every request to the app's own port); without -p the site
gets a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from summon import paths
from summon.errors import UserError
from summon.targets.base import Check, PortForward, RunSpec, Stats, Target
from summon.targets.browser import pyodide
from summon.targets.browser.closure import NODE_MISSING
from summon.targets.browser.site import build_site, builder_fingerprint
from summon.targets.unix import UnixInstance, _die_with

if TYPE_CHECKING:
    from summon.store import Store
    from summon.store.image import Image

    Step = Callable[[str], None]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BrowserInstance(UnixInstance):
    """The site's file server: a host process like the unix target's, plus its counters."""

    def __init__(self, proc: subprocess.Popen[bytes], urls: list[str], stats_file: Path) -> None:
        super().__init__(proc)
        self.urls = urls
        self.stats_file = stats_file

    def stats(self) -> Stats:
        base = super().stats()
        try:
            counters = {k: int(v) for k, v in json.loads(self.stats_file.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            counters = {}
        return Stats(base.memory_bytes, base.cpu_seconds, counters)


class BrowserTarget(Target):
    name: ClassVar[str] = "browser"
    description: ClassVar[str] = (
        "a browser tab: Pyodide in the page, the app behind a service worker"
    )
    export_formats: ClassVar[dict[str, str]] = {
        "browser": "a static site running the app in a browser tab (Pyodide; no server-side Python)"
    }
    forwards_to_app_ports: ClassVar[bool] = False  # -p's host port serves the page
    held_limits: ClassVar[frozenset[str]] = frozenset()  # the tab's browser decides
    env_at_run: ClassVar[bool] = False  # the tab reads the site's app.json: the manifest's env

    def __init__(self, store: Store | None = None, site_cache: Path | None = None) -> None:
        """store: the image store (default: the user's); site_cache: where sites are kept."""
        self.store = store
        self.site_cache = site_cache or paths.cache_dir() / "browser-sites"

    @classmethod
    def check(cls) -> list[Check]:
        checks = []
        try:
            pyodide.find()
            checks.append(
                Check(f"browser: Pyodide {pyodide.VERSION} (CPython {pyodide.PYTHON})", True)
            )
        except pyodide.PyodideMissing as e:
            checks.append(Check(f"browser: Pyodide {pyodide.VERSION}", False, str(e)))
        node = shutil.which("node")
        checks.append(
            Check(
                "browser: node (traces apps inside Pyodide at export)",
                node is not None,
                "" if node else NODE_MISSING,
            )
        )
        return checks

    def export(self, image: Image, fmt: str, dest: Path, step: Step, **options: Any) -> None:
        """browser: the static site (site.py); the format takes no options."""
        if fmt not in self.export_formats or options:
            super().export(image, fmt, dest, step, **options)
        site = build_site(image, dest, step)
        step(f"wrote {len(site.files)} files, {site.size / 1e6:.1f} MB")

    def site_for(self, image: Image, step: Step) -> Path:
        """The site of `image`, built into the cache unless it is there already."""
        key = f"{image.desc.digest.partition(':')[2][:32]}-{builder_fingerprint()[:16]}"
        where = self.site_cache / key
        if (where / "_summon-sw.js").is_file():
            return where
        build_site(image, where, step)
        return where

    def prepare(self, image: Image, step: Step) -> Image:
        """Build the site now, with progress, so that start() only has to serve it."""
        self.site_for(image, step)
        return image

    def _image(self, spec: RunSpec) -> Image:
        from summon.store import Store
        from summon.store.image import Image

        store = self.store or Store(paths.store_dir())
        return Image.by_digest(store, spec.image_digest, spec.image)

    def start(self, spec: RunSpec) -> BrowserInstance:
        site = self.site_for(self._image(spec), lambda line: None)
        forwards = spec.ports or (PortForward(0, 0),)
        sockets = [_listen(f) for f in forwards]
        urls = [_url(s) for s in sockets]
        state = spec.state_dir if str(spec.state_dir) not in ("", ".") else site.parent
        stats_file = state / f"site-stats-{os.getpid()}-{id(self)}.json"
        argv = [sys.executable, "-m", "summon.targets.browser.server", str(site)]
        for s in sockets:
            argv += ["--fd", str(s.fileno())]
        argv += ["--stats", str(stats_file)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=spec.stdout,
                stderr=spec.stdout,
                pass_fds=[s.fileno() for s in sockets],
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
            )
        finally:
            for s in sockets:
                s.close()  # the server has its copies
        _say(spec, urls, [f for f in forwards if f.host_addr not in LOOPBACK])
        return BrowserInstance(proc, urls, stats_file)


def _listen(forward: PortForward) -> socket.socket:
    if forward.protocol != "tcp":
        raise UserError(f"-p {forward}: a browser target serves its site over TCP only")
    family = socket.AF_INET6 if ":" in forward.host_addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((forward.host_addr, forward.host_port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UserError(
            f"-p {forward.host_addr}:{forward.host_port}: cannot serve the site there "
            f"({e.strerror})"
        ) from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _say(spec: RunSpec, urls: list[str], remote: list[PortForward]) -> None:
    """The one line a user needs: where to point a browser (on the app's console)."""
    line = f"summon: open {' or '.join(urls)} in a browser: the app runs in the tab\n"
    if remote:
        line += (
            "summon: note: browsers give service workers only to https or localhost pages; "
            "from another machine, put this site behind https\n"
        )
    if spec.stdout is not None:
        os.write(spec.stdout, line.encode())
    else:
        sys.stdout.write(line)
        sys.stdout.flush()
