"""The image's root written into the store: its layer and its verified root's blobs (erofs,
file list), once, or again when the recording run changed app.json (the seal's code)."""

from __future__ import annotations

from collections.abc import Callable

from summon.build.rootfs import Rootfs
from summon.store import rootfs_artifact, undo
from summon.store.layout import LAYER_GZIP, Descriptor, Store

# diff_id, the layer's uncompressed size, the layer, the erofs blob, the file list
Written = tuple[str, int, Descriptor, Descriptor, Descriptor]


def write_root(
    store: Store, fs: Rootfs, step: Callable[[str], None], lap: Callable[[str], None]
) -> Written:
    """The layer (diff_id, its uncompressed size, its blob) and the verified root's blobs."""
    writer = store.writer()
    try:
        diff_id, uncompressed = fs.write(writer)  # type: ignore[arg-type]
        layer = writer.commit(LAYER_GZIP)
    except BaseException:
        writer.abort()
        raise
    lap("write")
    step("writing the verified root filesystem (erofs)")
    erofs_blob, files_blob = rootfs_artifact.make(store, layer)
    lap("erofs")
    return diff_id, uncompressed, layer, erofs_blob, files_blob


def write_root_again(
    store: Store,
    fs: Rootfs,
    first: Written,
    step: Callable[[str], None],
    lap: Callable[[str], None],
) -> Written:
    """The root written again (fs changed since first was written), and first's blobs this
    build put in the store removed: no image names them (they stayed, unreferenced, until
    `summon rmi --dangling`: a layer and an erofs image, megabytes, at every such build).
    One that was in the store before, or that something else reaches, stays."""
    start = len(store.written)
    again = write_root(store, fs, step, lap)
    ours = set(store.written[:start])
    old = {d.digest for d in first[2:]} - {d.digest for d in again[2:]}
    undo.discard(store, sorted(old & ours))
    return again
