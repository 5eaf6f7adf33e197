"""summon push and pull refusing what a registry or the store got wrong: blobs tampered with
in either, a registry that is down or answers garbage, and a pull cut off or interrupted mid-blob.

The registry is Debian's docker-registry, started per module on 127.0.0.1 (the fixtures are in
conftest.py); fake servers (junk, a cutting proxy) stand in for broken registries. Every error
case checks the promises: one `summon: error:` line naming what is wrong, exit status 2, and a
local store left as it was.
"""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from registry_checks import assert_one_error, key, layer_of, new_summon
from registry_server import REGISTRY_BIN, Registry, start_registry, stop_registry
from summon_cli import EXAMPLES, Summon, free_port

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists(), reason="needs docker-registry (apt-get install docker-registry)"
)


# --- tampering ---


def test_tampered_blob_in_the_registry_is_refused(
    tmp_path_factory: pytest.TempPathFactory, shipper: Summon
) -> None:
    reg = start_registry(tmp_path_factory.mktemp("tamper-registry"))
    try:
        remote = f"{reg.host}/team/http:v1"
        shipper.ok("tag", "http:built", remote)
        shipper.ok("push", remote)
        layer = layer_of(shipper, "http:built")
        data = reg.blob_file(layer)
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # same size, other content
        data.write_bytes(bytes(raw))

        s = new_summon(tmp_path_factory)
        s.ok("build", str(EXAMPLES / "hello"), "-t", "hello")  # something already in the store
        blobs, index = s.blobs(), s.index()
        line = assert_one_error(s("pull", remote), layer, "refused")
        assert "hashes to sha256:" in line
        assert s.blobs() == blobs and s.index() == index and s.tmp() == []
    finally:
        stop_registry(reg)


def test_tampered_blob_in_the_store_is_refused(
    registry: Registry, shipper: Summon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = new_summon(tmp_path_factory)
    shutil.copytree(shipper.store, s.store)  # a store of its own to damage
    s.ok("tag", "http:built", "http:v1")
    inspect = json.loads(s.ok("inspect", "http:v1", "--json"))
    config_digest = json.loads(
        (s.store / "blobs" / "sha256" / inspect["index"]["manifests"][1]["digest"][7:]).read_bytes()
    )["layers"][0]["digest"]  # the bill of materials
    path = s.store / "blobs" / "sha256" / config_digest[7:]
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x01
    path.write_bytes(bytes(raw))
    line = assert_one_error(
        s("push", "http:v1", f"{registry.host}/team/tampered:v1"), config_digest, "corrupt"
    )
    assert "hashes to" in line
    # Nothing was tagged in the registry.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{registry.host}/v2/team/tampered/manifests/v1")
    assert e.value.code == 404
    e.value.close()


# --- broken registries ---


def test_registry_down(tmp_path_factory: pytest.TempPathFactory, shipper: Summon) -> None:
    port = free_port()  # bound and closed: nothing listens there
    s = new_summon(tmp_path_factory)
    assert_one_error(
        s("pull", f"127.0.0.1:{port}/team/http:v1"), "cannot reach registry", f"127.0.0.1:{port}"
    )
    shipper.ok("tag", "http:built", f"127.0.0.1:{port}/team/http:v1")
    assert_one_error(shipper("push", f"127.0.0.1:{port}/team/http:v1"), "cannot reach registry")
    assert s.index() == [] and s.blobs() == set()


class JunkServer:
    """Answers every connection with MODE: `raw` bytes that are not HTTP, `html` pages,
    `loop`: a redirect to itself, or `token`: a login at a token server that is down."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.dead_port = free_port()  # bound and closed: nothing listens there
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    if self.mode == "raw":
                        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\xff garbage\r\n\r\n")
                    elif self.mode == "token":  # sends us to a token server that is down
                        conn.sendall(
                            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer "
                            b'realm="http://127.0.0.1:%d/token"\r\n'
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n" % self.dead_port
                        )
                    elif self.mode == "notfound":  # a web server: no /v2/ there
                        conn.sendall(
                            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                    elif self.mode == "loop":  # redirects to itself, for ever
                        conn.sendall(
                            b"HTTP/1.1 302 Found\r\nLocation: /v2/again\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                    else:
                        body = b"<html><body>It works!</body></html>"
                        conn.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                        )
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("raw", "broken reply"),
        ("html", "not JSON"),
        ("loop", "redirected too many times"),
        ("notfound", "/v2/ answered 404: the server there does not speak the registry API"),
        ("token", "where registry"),
    ],
)
def test_registry_answering_garbage(
    mode: str, needle: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    junk = JunkServer(mode)
    try:
        s = new_summon(tmp_path_factory)
        line = assert_one_error(
            s("pull", f"127.0.0.1:{junk.port}/team/http:v1"), needle, f"127.0.0.1:{junk.port}"
        )
        if mode == "token":  # the server that is down, not the registry that answered
            assert f"cannot reach http://127.0.0.1:{junk.dead_port} (where" in line
        assert s.index() == [] and s.blobs() == set() and s.tmp() == []
    finally:
        junk.close()


class CuttingProxy:
    """Forwards GET and HEAD to a registry, but breaks off blob BLOB halfway: `cut` closes the
    connection, `stall` waits (until closed) so the client can be interrupted mid-blob."""

    def __init__(self, upstream: int, blob: str, mode: str) -> None:
        self.streaming = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self, method: str) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(method, self.path, headers=headers)
                try:
                    resp = conn.getresponse()
                    body = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                if method == "HEAD":
                    return
                if blob in self.path and resp.status == 200:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    proxy.streaming.set()
                    if mode == "stall":
                        proxy.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.forward("GET")

            def do_HEAD(self) -> None:
                self.forward("HEAD")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pushed(registry: Registry, shipper: Summon) -> tuple[str, str]:
    """(repository path, layer digest) of the signed http image in the plain registry."""
    remote = f"{registry.host}/team/interrupted:v1"
    shipper.ok("tag", "http:built", remote)
    shipper.ok("sign", remote, "--key", key(shipper, "team.key"))
    shipper.ok("push", remote)
    return "team/interrupted:v1", layer_of(shipper, remote)


def test_a_pull_cut_off_mid_blob_leaves_the_store_as_it_was(
    registry: Registry, pushed: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, layer = pushed
    proxy = CuttingProxy(registry.port, layer, "cut")
    try:
        s = new_summon(tmp_path_factory)
        line = assert_one_error(s("pull", f"127.0.0.1:{proxy.port}/{path}"))
        assert "broken reply" in line or "connection" in line or layer in line
        assert s.index() == [] and s.blobs() == set() and s.tmp() == []
    finally:
        proxy.close()


def test_an_interrupted_pull_leaves_the_store_as_it_was(
    registry: Registry, pushed: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, layer = pushed
    proxy = CuttingProxy(registry.port, layer, "stall")
    try:
        s = new_summon(tmp_path_factory)
        proc = s.popen("pull", f"127.0.0.1:{proxy.port}/{path}")
        assert proxy.streaming.wait(60), "the pull never reached the layer"
        time.sleep(0.3)  # let the client write what it got into its temporary file
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM, err  # as a shell reports SIGTERM
        assert "summon: error: stopped by SIGTERM" in err
        assert s.index() == [] and s.blobs() == set() and s.tmp() == []
    finally:
        proxy.close()
