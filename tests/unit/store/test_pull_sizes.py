"""A hostile registry against `summon pull`: a blob whose descriptor claims more bytes than
the store's disk has free is refused before a byte of it is fetched; a manifest that does not
end is cut off at MAX_MANIFEST (registry.py), not read into memory whole.

Until the image's signature is checked (at run), the sizes in its manifests are the
registry's word: one that lists a layer of an exabyte and streams without end would fill the
disk under the store (the stream is cut off only past the size its descriptor says).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from localhttp import LocalHTTP, Quiet

from summon.errors import UserError
from summon.store import Store
from summon.store.image import BOM_TYPE
from summon.store.layout import CONFIG, INDEX, LAYER_GZIP, MANIFEST
from summon.store.reference import RegistryError, RemoteRef
from summon.store.registry import MAX_MANIFEST
from summon.store.sync import pull

CONFIG_BODY = b'{"architecture":"amd64","os":"linux","config":{}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG_BODY).hexdigest()
HUGE = 1 << 60
LAYER_DIGEST = "sha256:" + "ab" * 32
MANIFEST_BODY = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": CONFIG_DIGEST, "size": len(CONFIG_BODY)},
        "layers": [{"mediaType": LAYER_GZIP, "digest": LAYER_DIGEST, "size": HUGE}],
    }
).encode()


MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST_BODY).hexdigest()
INDEX_BODY = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {"mediaType": MANIFEST, "digest": MANIFEST_DIGEST, "size": len(MANIFEST_BODY)},
            # as a summon image's: its bill of materials, never reached
            {"mediaType": MANIFEST, "artifactType": BOM_TYPE, "digest": CONFIG_DIGEST, "size": 1},
        ],
    }
).encode()


class HostileRegistry(LocalHTTP):
    """Serves one image whose layer's descriptor says 2**60 bytes; notes every path asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        registry = self

        class Handler(Quiet):
            def do_GET(self) -> None:
                registry.asked.append(self.path)
                if self.path == "/v2/":
                    self.reply(b"{}", "application/json")
                elif self.path == "/v2/team/huge/manifests/v1":
                    self.reply(INDEX_BODY, INDEX)
                elif self.path == f"/v2/team/huge/manifests/{MANIFEST_DIGEST}":
                    self.reply(MANIFEST_BODY, MANIFEST)
                elif self.path == "/v2/team/deep/manifests/v1":
                    self.reply(b"[" * 200_000 + b"]" * 200_000, MANIFEST)
                elif self.path == "/v2/team/endless/manifests/v1":
                    self.endless(MANIFEST)
                elif self.path == "/v2/team/trickle/manifests/v1":
                    self.trickle(INDEX_BODY, INDEX)
                elif self.path == f"/v2/team/huge/blobs/{CONFIG_DIGEST}":
                    self.reply(CONFIG_BODY, "application/octet-stream")
                else:  # the layer: bytes without end, were it ever asked for
                    self.endless("application/octet-stream")

            def endless(self, media_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b" " * 65536)
                except OSError:
                    pass

            def trickle(self, body: bytes, media_type: str) -> None:
                """A byte every 50 ms: each read comes well within the read timeout."""
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass

        super().__init__(Handler)


@pytest.fixture
def registry() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def test_a_blob_bigger_than_the_free_disk_is_refused_before_it_is_fetched(
    registry: HostileRegistry, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/huge:v1")
    with pytest.raises(RegistryError) as refused:
        pull(store, remote)
    text = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in text
    assert f"blob {LAYER_DIGEST}" in text and f"is {HUGE} bytes by its descriptor" in text
    assert "more than the" in text and "refused before fetching it" in text
    assert not [p for p in registry.asked if LAYER_DIGEST in p], registry.asked
    # Nothing of the pull is left: no tag, no blob.
    assert store.refs() == []


def test_a_manifest_without_end_is_cut_off(registry: HostileRegistry, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/endless:v1")
    with pytest.raises(RegistryError) as refused:
        pull(store, remote)
    text = str(refused.value)
    assert "\n" not in text
    assert f"sent more than {MAX_MANIFEST} bytes while fetching manifest v1" in text, text
    assert store.refs() == []


def test_a_manifest_nested_too_deep_is_one_line(registry: HostileRegistry, tmp_path: Path) -> None:
    """400 KB of nested arrays (under MAX_MANIFEST) made json.loads raise RecursionError,
    which ended `summon pull` as an internal error with a traceback; it is a reply that is
    not a manifest, said in one line."""
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/deep:v1")
    with pytest.raises(RegistryError) as refused:
        pull(store, remote)
    text = str(refused.value)
    assert "\n" not in text and "sent a manifest for v1 that is not JSON" in text, text
    assert store.refs() == []


def test_a_manifest_sent_a_byte_at_a_time_is_given_up_on(
    registry: HostileRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte came within the read timeout, so a registry trickling its manifest held
    summon pull for as long as it liked (hours for a few kB); a reply read whole now has
    REPLY_TIME to arrive."""
    from summon.store import registry as registry_mod

    monkeypatch.setattr(registry_mod, "REPLY_TIME", 1.0)
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/trickle:v1")
    t0 = time.monotonic()
    with pytest.raises(RegistryError) as refused:
        pull(store, remote)
    text = str(refused.value)
    assert "\n" not in text and "was still sending its reply after 1s" in text, text
    assert "while fetching manifest v1 of team/trickle" in text, text
    assert time.monotonic() - t0 < 10
    assert store.refs() == []
