"""`summon push` against a registry whose replies are wrong: each is one line saying what was
wrong with the reply, never a success status quoted as if it were the failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from localhttp import LocalHTTP, Quiet

from summon.store import Store
from summon.store.layout import INDEX, MANIFEST
from summon.store.reference import RegistryError, RemoteRef
from summon.store.sync import push


class NoLocationRegistry(LocalHTTP):
    """Accepts an upload (202) but names no Location to send the blob to."""

    def __init__(self) -> None:
        class Handler(Quiet):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.reply(b"{}") if self.path == "/v2/" else self.reply(status=404)

            def do_HEAD(self) -> None:
                self.reply(status=404)

            def do_POST(self) -> None:
                self.reply(status=202)

        super().__init__(Handler)


@pytest.fixture
def registry() -> Iterator[NoLocationRegistry]:
    server = NoLocationRegistry()
    yield server
    server.close()


def test_an_upload_without_a_location_is_said_so(
    registry: NoLocationRegistry, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    config = store.put_json({"x": 1}, "application/vnd.oci.image.config.v1+json")
    manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(), "layers": []},
        MANIFEST,
    )
    store.tag("app:v1", store.put_json({"schemaVersion": 2, "mediaType": INDEX,
                                        "manifests": [manifest.to_json()]}, INDEX))  # fmt: skip
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/app:v1")
    with pytest.raises(RegistryError) as refused:
        push(store, "app:v1", remote)
    text = str(refused.value)
    assert "\n" not in text and f"uploading blob {config.digest}" in text, text
    assert "said no Location to send it to" in text, text
