"""A tiny image made straight into a store (no build): one app file, its layer written by
build/rootfs.py, for the tests of what the store does with images and their roots."""

from __future__ import annotations

from summon.build.rootfs import Rootfs
from summon.store import rootfs_artifact
from summon.store.layout import CONFIG, INDEX, LAYER_GZIP, MANIFEST, Descriptor, Store
from summon.store.rootfs_artifact import RootfsArtifact


def tiny_manifest(store: Store, text: bytes = b"print('hi')\n") -> tuple[Descriptor, Descriptor]:
    """(manifest, layer) of an image whose /app/app.py is text (the same text, the same
    layer)."""
    fs = Rootfs()
    for folder in ("/dev", "/proc", "/tmp"):
        fs.add_dir(folder, 0o1777 if folder == "/tmp" else 0o755)
    fs.add_bytes("/app/app.py", text, "app")
    fs.add_symlink("/lib64", "usr/lib")
    writer = store.writer()
    fs.write(writer)  # type: ignore[arg-type]
    layer = writer.commit(LAYER_GZIP)
    config = store.put_json({"os": "linux"}, CONFIG)
    manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
         "layers": [layer.to_json()]},
        MANIFEST,
    )  # fmt: skip
    return manifest, layer


def tiny_image(
    store: Store, tag: str, text: bytes = b"print('hi')\n"
) -> tuple[RootfsArtifact, Descriptor]:
    """The image tagged tag, with its verified root (erofs: mkfs.erofs is needed): (the
    root's artifact, its erofs and file-list blobs; the layer)."""
    manifest, layer = tiny_manifest(store, text)
    artifact = rootfs_artifact.create(store, layer, manifest)
    doc = {"schemaVersion": 2, "mediaType": INDEX,
           "manifests": [manifest.to_json(), artifact.to_json()]}  # fmt: skip
    index = store.put_json(doc, INDEX)
    store.tag(tag, index)
    found = rootfs_artifact.find(store, index, doc, layer)
    assert found is not None
    return found, layer
