"""A registry sending manifests of the wrong shape against `summon pull`: descriptors whose
annotations or platform are not objects, `layers` or `manifests` that are not lists, a
referrers list that is not an index. Each is one line naming the manifest (exit status 2),
and the store is left as it was; before, some ended the pull as an internal error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localhttp import LocalHTTP, Quiet

from summon.errors import UserError
from summon.store import Store
from summon.store.image import BOM_TYPE
from summon.store.layout import CONFIG, INDEX, MANIFEST
from summon.store.reference import RemoteRef
from summon.store.signing import SIGNATURE_TYPE
from summon.store.sync import pull

CONFIG_BODY = b'{"architecture":"amd64","os":"linux","config":{}}'


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _manifest(**extra: Any) -> bytes:
    config = {"mediaType": CONFIG, "digest": _digest(CONFIG_BODY), "size": len(CONFIG_BODY)}
    doc = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, **extra}
    return json.dumps(doc).encode()


GOOD = _manifest(layers=[])
BOM = _manifest(layers=[], artifactType=BOM_TYPE)  # a summon image's bill of materials


def _entry(body: bytes, **fields: Any) -> dict[str, Any]:
    return {"mediaType": MANIFEST, "digest": _digest(body), "size": len(body), **fields}


def _index(*more: dict[str, Any], **fields: Any) -> bytes:
    bom = _entry(BOM, artifactType=BOM_TYPE)
    doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [_entry(GOOD, **fields), *more]}
    if not more:
        doc["manifests"].append(bom)
    return json.dumps(doc).encode()


ARM = _manifest(layers=[], annotations={"arch": "arm64"})


TAGS = {
    "annotations": _index(annotations="not an object"),
    "annotation-values": _index(annotations={"org.example": 5}),
    "platform": _index(platform=["amd64"]),
    "layers": _index(digest=_digest(_manifest(layers=5)), size=len(_manifest(layers=5))),
    "manifests": json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": 7}).encode(),
    "referrers": _index(),
    "lone": GOOD,  # another tool's image: a manifest with no index
    # another tool's multi-platform image: an index of two images, no bill of materials
    "multi": _index(
        _entry(ARM, platform={"architecture": "arm64", "os": "linux"}),
        platform={"architecture": "amd64", "os": "linux"},
    ),
    # a summon image whose copier dropped artifactType from the index (skopeo 1.9)
    "untyped": _index(_entry(BOM)),
}


class ShapeRegistry(LocalHTTP):
    """Serves team/app at each tag of TAGS, the manifest and config they name, and, for the
    referrers API, an answer that is not an index."""

    def __init__(self) -> None:
        bodies = (*TAGS.values(), GOOD, BOM, ARM, _manifest(layers=5), CONFIG_BODY)
        blobs = {_digest(b): b for b in bodies}

        class Handler(Quiet):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                last = path.rsplit("/", 1)[-1]
                if path == "/v2/":
                    self.reply(b"{}", "application/json")
                elif "/referrers/" in path:
                    self.reply(b'{"manifests": 3}', INDEX)
                elif "/manifests/" in path and (last in TAGS or last in blobs):
                    body = TAGS.get(last) or blobs[last]
                    self.reply(body, str(json.loads(body)["mediaType"]))
                elif "/blobs/" in path and last in blobs:
                    self.reply(blobs[last], "application/octet-stream")
                else:
                    self.send_error(404)

        super().__init__(Handler)


@pytest.fixture(scope="module")
def registry() -> Iterator[ShapeRegistry]:
    server = ShapeRegistry()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("annotations", "has annotations that are not strings"),
        ("annotation-values", "has annotations that are not strings"),
        ("platform", "has a platform that is not an object"),
        ("layers", "its layers are not a list"),
        ("manifests", "its manifests are not a list"),
        ("lone", "is a single OCI manifest, not a summon image"),
        ("multi", "is an image index without a summon bill of materials"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line(
    registry: ShapeRegistry, tmp_path: Path, tag: str, says: str
) -> None:
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/app:{tag}")
    with pytest.raises(UserError) as refused:
        pull(store, remote)
    text = str(refused.value)
    assert "\n" not in text and says in text, text
    assert f"127.0.0.1:{registry.port}" in text, text  # the registry is named
    assert store.refs() == [] and not list((tmp_path / "store" / "blobs" / "sha256").iterdir())


def test_a_referrers_answer_that_is_not_an_index_is_one_line(
    registry: ShapeRegistry, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/app:referrers")
    with pytest.raises(UserError) as refused:
        pull(store, remote, referrer_types=(SIGNATURE_TYPE,))
    assert "the referrers of sha256:" in str(refused.value) and "are not an index" in str(
        refused.value
    )
    assert store.refs() == []
    # Without signatures asked for, the same image pulls.
    assert pull(store, remote).local.endswith("team/app:referrers")


def test_a_summon_index_whose_copier_dropped_artifact_types_still_pulls(
    registry: ShapeRegistry, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    remote = RemoteRef.parse(f"127.0.0.1:{registry.port}/team/app:untyped")
    assert pull(store, remote).local.endswith("team/app:untyped")
