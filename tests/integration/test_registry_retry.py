"""A registry that says "too many requests" (429) or "unavailable" (503): summon push and pull
wait as it asks (Retry-After, in seconds or as a date), say so, and try again, within bounds.

A proxy in front of the real registry of registry_server.py answers the first requests of a
kind with 429 or 503, then lets them through.
"""

from __future__ import annotations

import email.utils
import http.client
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_server import REGISTRY_BIN, Registry
from summon_cli import EXAMPLES, Summon

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists(), reason="needs docker-registry (apt-get install docker-registry)"
)


class ThrottlingProxy:
    """Forwards every request to a registry, except that a request whose method and path
    match a rule (method, path part, [(status, Retry-After or None), ...]) first gets those
    answers, one per request, before it goes through."""

    def __init__(self, upstream: int) -> None:
        self.rules: list[tuple[str, str, list[tuple[int, str | None]]]] = []
        self.refused: list[tuple[str, str, int, float]] = []  # method, path, status, when
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                for rule_method, part, answers in proxy.rules:
                    if rule_method == method and part in self.path and answers:
                        status, after = answers.pop(0)
                        proxy.refused.append((method, self.path, status, time.monotonic()))
                        self.send_response(status)
                        if after is not None:
                            self.send_header("Retry-After", after)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                try:
                    conn.request(method, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self.handle_one("GET")

            def do_HEAD(self) -> None:
                self.handle_one("HEAD")

            def do_PUT(self) -> None:
                self.handle_one("PUT")

            def do_POST(self) -> None:
                self.handle_one("POST")

            def do_PATCH(self) -> None:
                self.handle_one("PATCH")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def shipper(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    s = Summon(tmp_path_factory.mktemp("shipper"))
    s.ok("build", str(EXAMPLES / "hello"), "-t", "hello:built")
    return s


@pytest.fixture
def proxy(registry: Registry) -> Iterator[ThrottlingProxy]:
    p = ThrottlingProxy(registry.port)
    yield p
    p.close()


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


def test_a_push_and_a_pull_wait_out_429_and_503(
    proxy: ThrottlingProxy, shipper: Summon, tmp_path: Path
) -> None:
    remote = f"{proxy.host}/team/hello:v1"
    shipper.ok("tag", "hello:built", remote)
    date = email.utils.formatdate(time.time() + 1, usegmt=True)
    proxy.rules = [
        ("PUT", "/manifests/v1", [(429, "1")]),
        ("POST", "/blobs/uploads/", [(503, None)]),  # no Retry-After: a second's backoff
    ]
    r = shipper("push", remote)
    assert r.returncode == 0, r.stderr
    assert (
        f"summon: registry {proxy.host} answered 429 (too many requests) while uploading "
        f"manifest v1 to team/hello: trying again in 1s (try 2 of 4)"
    ) in r.stderr
    assert "answered 503 (service unavailable) while uploading blob sha256:" in r.stderr
    assert len(proxy.refused) == 2

    proxy.rules = [
        ("GET", "/manifests/v1", [(429, date)]),  # an HTTP date, a second or so from now
        ("GET", "/blobs/sha256:", [(503, "0"), (429, "1")]),
    ]
    proxy.refused.clear()
    puller = Summon(tmp_path / "puller")
    r = puller("pull", remote)
    assert r.returncode == 0, r.stderr
    assert "while fetching manifest v1 of team/hello: trying again in" in r.stderr
    assert "while downloading blob sha256:" in r.stderr and "(try 3 of 4)" in r.stderr
    assert len(proxy.refused) == 3
    assert puller.ok("images").count("team/hello") == 1


def test_a_long_retry_after_is_one_error_line_at_once(
    proxy: ThrottlingProxy, tmp_path: Path
) -> None:
    proxy.rules = [("GET", "/v2/", [(429, "3600")])]
    t0 = time.monotonic()
    r = Summon(tmp_path / "home")("pull", f"{proxy.host}/team/hello:v1")
    assert time.monotonic() - t0 < 20
    assert one_error(r) == (
        f"summon: error: registry {proxy.host} answered 429 (too many requests) while checking "
        "it speaks the registry API and asks to wait 60 minutes, longer than summon waits "
        "(60s); try again later"
    )


def test_a_registry_that_stays_unavailable_is_given_up_on(
    proxy: ThrottlingProxy, tmp_path: Path
) -> None:
    proxy.rules = [("GET", "/v2/", [(503, "0")] * 10)]
    r = Summon(tmp_path / "home")("pull", f"{proxy.host}/team/hello:v1")
    assert one_error(r) == (
        f"summon: error: registry {proxy.host} answered 503 (service unavailable) while "
        "checking it speaks the registry API, 4 times over 0s; try again later"
    )
    assert r.stderr.count("trying again in 0s") == 3
    assert len(proxy.refused) == 4
