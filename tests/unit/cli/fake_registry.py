"""A registry on 127.0.0.1 serving the images of a Store, which a test can make misbehave.

fault names what goes wrong (None: nothing): each of FAULTS is a way a hostile or broken
registry answers `summon pull`."""

from __future__ import annotations

import gzip
import io
import json
import socket
import struct
import tarfile
from pathlib import Path

from localhttp import LocalHTTP, Quiet

from summon.store import Store
from summon.store.image import BOM_TYPE
from summon.store.layout import CONFIG, INDEX, LAYER_GZIP, MANIFEST

# Each fault, and what summon's one line says of it.
FAULTS = {
    "html": "answered 502 while checking it speaks the registry API",  # an HTML error page
    "html200": "sent a manifest for v1 that is not JSON",  # a login page, status 200
    "badjson": "sent a manifest for v1 that is not JSON",  # JSON cut short
    "mismatch": "hashes to sha256:",  # the manifest fetched by digest is another's
    "longer": " bytes its descriptor says; refused",  # "is longer than the N bytes..."
    "shorter": " bytes, its descriptor says ",
    "redirect-scheme": "sent summon to file://",  # the layer redirected to a file: URL
    "redirect-host": "cannot reach http://127.0.0.1:",  # to a port where nothing listens
    "bad-auth": "sent a token challenge without a usable realm URL",
    "endless": " bytes its descriptor says; refused",  # no Content-Length, no end
    "reset": "Connection reset by peer",  # halfway through the layer
    "429": "asks to wait 60 minutes, longer than summon waits",  # Retry-After: an hour
}


class FakeRegistry(LocalHTTP):
    def __init__(self, source: Store, repository: str) -> None:
        self.fault: str | None = None
        self.source = source
        self.pushed: dict[str, bytes] = {}  # what `summon push` sent, by the path's end
        registry = self
        prefix = f"/v2/{repository}/"

        class Handler(Quiet):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                if not self.refused(registry.fault):
                    self.serve(registry.fault)

            def refused(self, fault: str | None) -> bool:
                """Whether a fault every request meets answered this one."""
                if fault == "html":
                    page = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
                    self.reply(page, "text/html", 502)
                elif fault == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "3600")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif fault == "bad-auth":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="=,,"x"="')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    return False
                return True

            def serve(self, fault: str | None) -> None:
                if self.path == "/v2/":
                    return self.reply(b"{}", "application/json")
                if not self.path.startswith(prefix):
                    return self.reply(status=404)
                kind, _, ref = self.path[len(prefix) :].partition("/")
                if kind == "manifests":
                    return self.manifest(ref, fault)
                if kind == "blobs":
                    return self.blob(ref, fault)
                return self.reply(status=404)

            def do_POST(self) -> None:  # an upload's start
                if not self.refused(registry.fault):
                    self.send_response(202)
                    self.send_header("Location", f"/upload/{len(registry.pushed)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_PUT(self) -> None:  # an upload's end, or a manifest
                fault = registry.fault
                if self.refused(fault):
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fault == "reset" and self.path.startswith("/upload/"):
                    return self.reset()
                if fault == "html200":
                    return self.reply(b"<!DOCTYPE html><html>Sign in</html>", "text/html")
                _, given, digest = self.path.rpartition("digest=")
                key = digest if given else self.path.rpartition("/")[2]
                registry.pushed[key] = body  # a blob by its digest, a manifest by its tag
                self.reply(status=201)

            def do_DELETE(self) -> None:  # an upload given up
                self.reply(status=202)

            def reset(self) -> None:
                """Close the connection with a reset rather than the end of the stream."""
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
                self.close_connection = True

            def manifest(self, ref: str, fault: str | None) -> None:
                tags = {t.rpartition(":")[2]: d.digest for t, d in registry.source.refs()}
                digest = ref if ref.startswith("sha256:") else tags.get(ref, "")
                if not digest or not registry.source.has(digest):
                    return self.reply(status=404)  # the referrers' tag, among others
                body = registry.source.read(digest)
                doc = json.loads(body)
                media_type = doc.get("mediaType", INDEX)
                if fault == "html200":
                    return self.reply(b"<!DOCTYPE html><html>Sign in</html>", "text/html")
                if fault == "badjson":
                    return self.reply(body[: len(body) // 2], media_type)
                if fault == "mismatch" and ref.startswith("sha256:"):
                    return self.reply(body + b" ", media_type)
                self.reply(body, media_type)

            def blob(self, digest: str, fault: str | None) -> None:
                if not registry.source.has(digest):
                    return self.reply(status=404)
                body = registry.source.read(digest)
                if not body.startswith(GZIP):  # the config, the bill of materials
                    return self.reply(body, "application/octet-stream")
                if fault == "longer":
                    return self.reply(body + b"and more", "application/octet-stream")
                if fault == "shorter":
                    return self.reply(body[:-3], "application/octet-stream")
                if fault in ("redirect-scheme", "redirect-host"):
                    self.send_response(307)
                    dead = _dead_port()
                    to = (
                        "file:///etc/passwd"
                        if fault == "redirect-scheme"
                        else (f"http://127.0.0.1:{dead}/blob")
                    )
                    self.send_header("Location", to)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if fault == "endless":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        return
                if fault == "reset":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    return self.reset()
                self.reply(body, "application/octet-stream")

        super().__init__(Handler)


GZIP = b"\x1f\x8b"


def summon_image(store: Store, tag: str) -> None:
    """A summon-shaped image (an index of its manifest and its bill of materials) of one
    layer (a gzipped tar of one file), tagged tag."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        data = b"print('hello')\n"
        info = tarfile.TarInfo("app/main.py")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    layer = store.put_bytes(gzip.compress(tar.getvalue(), mtime=0), LAYER_GZIP)
    config = store.put_json({"os": "linux", "architecture": "amd64"}, CONFIG)
    manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
         "layers": [layer.to_json()]},
        MANIFEST,
    )  # fmt: skip
    bom = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": BOM_TYPE,
         "config": config.to_json(), "layers": []},
        MANIFEST,
    )  # fmt: skip
    entries = [manifest.to_json(), {**bom.to_json(), "artifactType": BOM_TYPE}]
    index = store.put_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, INDEX)
    store.tag(tag, index)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store_files(root: Path) -> list[str]:
    """Every file under a store's folder (its blobs, index.json, temporaries), sorted."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
