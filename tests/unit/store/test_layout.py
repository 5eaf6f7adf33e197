"""The OCI image layout store: tags, verified reads, garbage collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import summon
from summon.errors import CorruptBlob, UnknownImage, UserError
from summon.store.layout import INDEX, MANIFEST, UNTAGGED, Descriptor, Store, normalize_ref


def make_image(store: Store, payload: bytes) -> Descriptor:
    layer = store.put_bytes(payload, "application/octet-stream")
    config = store.put_json({"x": 1}, "application/vnd.oci.image.config.v1+json")
    manifest = store.put_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json()],
        },
        MANIFEST,
    )
    return store.put_json(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest.to_json()]}, INDEX
    )


def test_layout_files_are_oci(tmp_path: Path) -> None:
    Store(tmp_path)
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"] == []


def test_tag_resolve_by_name_tag_and_id(tmp_path: Path) -> None:
    store = Store(tmp_path)
    desc = make_image(store, b"one")
    store.tag("web", desc)
    assert store.resolve("web") == ("web:latest", store.resolve("web:latest")[1])
    assert store.resolve("web")[1].digest == desc.digest
    assert store.resolve(desc.digest[7:19])[0] == "web:latest"
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "web:latest"
    with pytest.raises(UnknownImage, match="no image 'nope'"):
        store.resolve("nope")


def test_retag_moves_the_name(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = make_image(store, b"a"), make_image(store, b"b")
    store.tag("web:1", a)
    store.tag("web:1", b)
    assert [r for r, _ in store.refs()] == ["web:1"]
    assert store.resolve("web:1")[1].digest == b.digest


def test_a_moved_tag_leaves_its_old_image_untagged_and_reachable_by_id(tmp_path: Path) -> None:
    """As docker's <none>: a rebuild or pull that moves a tag keeps the image it named (an
    instance may still run it), listed, resolvable by ID, and kept by gc until removed."""
    store = Store(tmp_path)
    a, b = make_image(store, b"a"), make_image(store, b"b")
    assert store.tag("web:1", a) is None
    assert store.tag("web:1", b) == store.untagged()[0]
    assert [d.digest for d in store.untagged()] == [a.digest]
    assert store.untagged()[0].annotations[UNTAGGED] == "web:1"
    assert store.resolve(a.digest[7:19]) == ("", store.untagged()[0])
    assert store.resolve(a.digest)[1].digest == a.digest
    assert store.gc() == (0, 0) and store.has(a.digest)
    store.remove([a.digest])
    assert store.untagged() == [] and not store.has(a.digest)
    assert store.resolve("web:1")[1].digest == b.digest  # the tagged one untouched


def test_a_tag_moved_off_an_image_that_keeps_another_tag_leaves_nothing_untagged(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    a, b = make_image(store, b"a"), make_image(store, b"b")
    store.tag("web:1", a)
    store.tag("web:stable", a)
    store.tag("web:1", b)
    store.tag("web:1", b)  # the same image again: nothing moves
    assert store.untagged() == []
    assert store.resolve(a.digest[7:19])[0] == "web:stable"


def test_tagging_an_untagged_image_again_makes_it_an_image_like_any_other(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a, b = make_image(store, b"a"), make_image(store, b"b")
    store.tag("web:1", a)
    store.tag("web:1", b)
    _, old = store.resolve(a.digest[7:19])
    store.tag("web:0", old)
    assert store.untagged() == []
    assert store.resolve(a.digest[7:19])[0] == "web:0"
    assert UNTAGGED not in store.resolve("web:0")[1].annotations
    store.remove(["web:0"])  # and its last tag removed removes it
    assert not store.has(a.digest)


def test_a_superseding_index_takes_the_tag_without_leaving_the_old_one(tmp_path: Path) -> None:
    """The qemu target's boot artifact makes a new index of the same image: no <none>."""
    store = Store(tmp_path)
    a, b = make_image(store, b"a"), make_image(store, b"b")
    store.tag("web:1", a)
    store.tag("web:1", b, keep_old=False)
    assert store.untagged() == [] and store.resolve("web:1")[1].digest == b.digest


def test_tampered_blob_is_refused_naming_the_digest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    desc = store.put_bytes(b"hello world", "text/plain")
    store.blob_path(desc.digest).write_bytes(b"hello w0rld")
    with pytest.raises(CorruptBlob, match=desc.digest):
        store.read(desc)
    with pytest.raises(CorruptBlob, match=desc.digest), store.open_verified(desc) as f:
        f.read()


def test_missing_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    desc = store.put_bytes(b"x", "text/plain")
    store.blob_path(desc.digest).unlink()
    with pytest.raises(CorruptBlob, match="missing"):
        store.read(desc)


def test_gc_keeps_reachable_and_removes_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    keep, drop = make_image(store, b"keep"), make_image(store, b"drop")
    store.tag("keep", keep)
    store.tag("drop", drop)
    store.untag("drop")
    removed, _ = store.gc()
    assert removed == 3  # drop's index, manifest and layer; the config is shared
    assert store.has(keep.digest)
    assert not store.has(drop.digest)
    assert store.read_json(keep)["manifests"]


def test_aborted_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    w = store.writer()
    w.write(b"partial")
    w.abort()
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []
    assert list(store.tmp_dir.iterdir()) == []


def test_normalize_ref() -> None:
    assert normalize_ref("http") == "http:latest"
    assert normalize_ref("reg.example/team/http:v2") == "reg.example/team/http:v2"
    with pytest.raises(UserError):
        normalize_ref("Bad Name")
    # `build -t` of 5000 letters was taken, a name no registry takes (255 at most, as docker's
    # reference); the tag and a registry's port do not count.
    longest = "127.0.0.1:5000/" + "a" * 240
    assert normalize_ref(longest + ":v1") == longest + ":v1"
    with pytest.raises(UserError) as refused:
        normalize_ref(longest + "a:v1")
    assert str(refused.value) == (
        "'127.0.0.1:5000/aaaaa'...: an image name is at most 255 characters (256 given)"
    )


def test_remove_frees_unshared_blobs_before_rewriting_the_index(tmp_path: Path) -> None:
    store = Store(tmp_path)
    one, two = make_image(store, b"one"), make_image(store, b"two")
    store.tag("one", one)
    store.tag("two", two)
    store.tag("also-two", two)
    dead = store.tmp_root / "p999999-dead"  # the folder of a process killed mid-write
    dead.mkdir()
    (dead / "blob-stale").write_bytes(b"left by a killed write")
    (store.tmp_root / "blob-stale").write_bytes(b"left by an earlier version")
    told: list[set[str]] = []

    def before_delete(gone: set[str]) -> None:
        # The index still names them: blobs go first, the index is rewritten last.
        assert "one:latest" in {name for name, _ in store.refs()}
        told.append(gone)

    removed, freed = store.remove(["one:latest", "also-two:latest"], before_delete)
    assert [name for name, _ in store.refs()] == ["two:latest"]
    assert removed == 3 and freed > 0  # one's index, manifest and layer; the config is shared
    assert one.digest in told[0] and two.digest not in told[0]
    assert not store.has(one.digest) and store.has(two.digest)
    own = store.tmp_dir  # this process's own folder, empty, and its leases
    assert sorted(store.tmp_root.iterdir()) == [own, Path(f"{own}.lease")]
    assert list(store.tmp_dir.iterdir()) == []


# A writer in another process: it writes, says so, waits for a line on stdin, then commits;
# then it puts another blob in and waits again, as a build does before it tags its image.
WRITER = """
import sys
from pathlib import Path
from summon.store.layout import Store
store = Store(Path(sys.argv[1]))
w = store.writer()
w.write(b"a blob on its way in")
print("written", flush=True)
sys.stdin.readline()
print(w.commit("application/octet-stream").digest, flush=True)
print(store.put_bytes(b"in, not tagged yet", "application/octet-stream").digest, flush=True)
sys.stdin.readline()
"""


def start_writer(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(summon.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    return proc


def test_rmi_in_one_process_leaves_a_write_in_progress_in_another_alone(tmp_path: Path) -> None:
    """`summon rmi` while a build or pull runs: neither the build's temporaries nor the blobs
    it put in but has not tagged yet are swept away."""
    store = Store(tmp_path)
    writer = start_writer(tmp_path)
    try:
        store.gc()
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        first, second = writer.stdout.readline().strip(), writer.stdout.readline().strip()
        # Both are in the store, unreachable from any tag until the writer tags them: an rmi
        # now keeps them (it removed them, and the build failed: "blob ... is missing").
        store.gc()
        assert store.read(first) == b"a blob on its way in"
        assert store.read(second) == b"in, not tagged yet"
        writer.communicate("done\n", timeout=30)
        assert writer.returncode == 0
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate(timeout=30)
    store.gc()  # the writer is gone, its leases with it
    assert not store.has(first) and not store.has(second)


def test_what_a_killed_write_left_goes_at_the_next_write(tmp_path: Path) -> None:
    """A pull killed with -9 and retried: nothing of the first attempt stays behind."""
    store = Store(tmp_path)
    writer = start_writer(tmp_path)
    writer.kill()
    writer.communicate(timeout=30)
    w = store.writer()
    w.abort()
    assert list(store.tmp_root.iterdir()) == [store.tmp_dir]  # no lease of the dead one
    assert list(store.tmp_dir.iterdir()) == []
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def test_a_full_disk_names_the_store_and_what_to_do(tmp_path: Path) -> None:
    """A pull or build filling the store's disk: one line naming the store (was: a bare
    "No space left on device"), and no temporary left."""
    store = Store(tmp_path)
    w = store.writer()
    w._file.close()
    w._file = open("/dev/full", "wb")  # the disk fills up under the writer
    with pytest.raises(UserError) as e:
        w.write(b"x" * (1 << 20))
    w.abort()
    assert str(e.value).startswith(f"no space left on the disk of the image store {tmp_path}")
    assert "summon rmi --dangling" in str(e.value)
    assert list(store.tmp_dir.iterdir()) == []
