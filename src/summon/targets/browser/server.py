"""The static file server of `summon run --target browser`: the site, nothing else.

A plain HTTP/1.1 server for one folder: GET and HEAD, gzip for whoever accepts it (each file
compressed once, as a static host would), ETag revalidation, and `Cache-Control: no-cache`
(the site's service worker is its cache; a new export must be seen at once). A navigation
to an address that is no file gets the page shell (as the service worker would give it), so
a deep link works on a first visit too. No app code runs here: the app runs in the tab.

It runs as its own process (`python3 -m summon.targets.browser.server`), on listening
sockets the target opened (so a port in use is the target's one-line error), and keeps
counters (requests, bytes sent) in a JSON file for `summon stats`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import mimetypes
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SHELL = "index.html"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".zip": "application/zip",
}
# Already compressed: gzip would only cost time.
NO_GZIP = frozenset((".zip", ".gz", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".woff2", ".br"))
MIN_GZIP = 512  # bytes; below this the gzip header and CRC are most of the gain
STATS_INTERVAL = 0.5  # seconds between writes of the counters file, while they change


class Counters:
    """Requests answered and bytes written (head and body): what the site cost the wire."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes_sent = 0

    def add(self, requests: int = 0, sent: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.bytes_sent += sent

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"http__requests": self.requests, "http__bytes_sent": self.bytes_sent}


class SiteServer(ThreadingHTTPServer):
    """Serves the site folder `root` on an already listening socket."""

    daemon_threads = True

    def __init__(self, root: Path, sock: socket.socket, quiet: bool = True) -> None:
        self.root = root.resolve()
        self.quiet = quiet
        self.counters = Counters()
        self._gzipped: dict[tuple[str, int, int], bytes] = {}
        self._gzip_lock = threading.Lock()
        super().__init__(sock.getsockname()[:2], SiteHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock

    def gzipped(self, path: Path, data: bytes, stat: os.stat_result) -> bytes:
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._gzip_lock:
            found = self._gzipped.get(key)
        if found is None:
            found = gzip.compress(data, compresslevel=6, mtime=0)
            with self._gzip_lock:
                self._gzipped[key] = found
        return found


class SiteHandler(BaseHTTPRequestHandler):
    server: SiteServer
    protocol_version = "HTTP/1.1"
    server_version = "summon-site"

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _refuse(self, status: HTTPStatus, extra: dict[str, str] | None = None) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self._write(body)

    def do_POST(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _file(self) -> tuple[Path, bool] | None:
        """(file, is the shell given for a navigation) for the request, or None (404)."""
        raw = urllib.parse.urlsplit(self.path).path
        rel = urllib.parse.unquote(raw).lstrip("/")
        parts = [p for p in rel.split("/") if p]
        if any(p in (".", "..") or "\0" in p for p in parts):
            return None
        path = self.server.root.joinpath(*parts)
        if path.is_dir():
            path = path / SHELL
        if path.is_file() and path.resolve().is_relative_to(self.server.root):
            return path, False
        navigation = self.headers.get("Sec-Fetch-Mode") == "navigate" or (
            "text/html" in (self.headers.get("Accept") or "")
        )
        if navigation and not rel.startswith("_summon"):
            return self.server.root / SHELL, True
        return None

    def _serve(self, head: bool) -> None:
        found = self._file()
        if found is None:
            self._refuse(HTTPStatus.NOT_FOUND)
            return
        path, deep_link = found
        stat = path.stat()
        data = path.read_bytes()
        if deep_link:
            # The shell loads its files relative to <base>: the site's root here.
            data = data.replace(b'<base href="./">', b'<base href="/">')
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-s" if deep_link else ""}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        ctype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        accepts_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "")
        compress = accepts_gzip and path.suffix not in NO_GZIP and len(data) >= MIN_GZIP
        body = self.server.gzipped(path, data, stat) if compress and not deep_link else data
        if compress and deep_link:
            body = gzip.compress(data, mtime=0)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("ETag", etag)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self._write(body)

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.server.counters.add(sent=len(data))

    def flush_headers(self) -> None:
        buffered = getattr(self, "_headers_buffer", [])
        self.server.counters.add(requests=1, sent=sum(len(b) for b in buffered))
        super().flush_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def write_counters(counters: Counters, path: Path) -> None:
    """The counters as JSON at path, atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(counters.snapshot()))
    os.replace(tmp, path)


def serve(root: Path, fds: list[int], stats: Path | None) -> None:
    """Serve root on each listening socket fd until SIGTERM, which ends it with status 0."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    servers = [SiteServer(root, socket.socket(fileno=fd)) for fd in fds]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    if stats is not None:
        counters = [s.counters for s in servers]

        def keep_writing() -> None:
            last: dict[str, int] = {}
            while True:
                total = Counters()
                for c in counters:
                    snap = c.snapshot()
                    total.add(snap["http__requests"], snap["http__bytes_sent"])
                if total.snapshot() != last:
                    last = total.snapshot()
                    write_counters(total, stats)
                time.sleep(STATS_INTERVAL)

        threading.Thread(target=keep_writing, daemon=True).start()
    servers[0].serve_forever()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m summon.targets.browser.server")
    parser.add_argument("root", type=Path)
    parser.add_argument("--fd", type=int, action="append", required=True)
    parser.add_argument("--stats", type=Path)
    args = parser.parse_args(argv)
    serve(args.root, args.fd, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
