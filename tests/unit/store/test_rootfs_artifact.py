"""The verified root filesystem artifact: the file list, the erofs blob, finding and deriving."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from tiny_image import tiny_manifest

from summon.errors import CorruptBlob
from summon.store import rootfs_artifact
from summon.store.layout import INDEX, LAYER_GZIP, Descriptor, Store

needs_mkfs = pytest.mark.skipif(
    shutil.which("mkfs.erofs") is None, reason="apt-get install erofs-utils"
)


def tree(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "app.py").write_text("print('hi')\n")
    (root / "app" / "run").write_text("#!x\n")
    (root / "app" / "run").chmod(0o755)
    (root / "lib").symlink_to("app")
    return root


def test_the_file_list_names_kind_mode_size_and_content(tmp_path: Path) -> None:
    entries = rootfs_artifact.tree_entries(tree(tmp_path / "root"))
    by_path = {e[0]: e for e in entries}
    assert [e[0] for e in entries] == ["app", "app/app.py", "app/run", "lib"]
    assert by_path["app/run"][1:4] == ["f", 0o755, 4]
    assert by_path["lib"] == ["lib", "l", 0o777, 0, "app"]
    assert len(by_path["app/app.py"][4]) == 64
    assert rootfs_artifact.tree_difference(tmp_path / "root", entries) is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: (r / "app" / "app.py").write_text("edited\n"), "/app/app.py changed content"),
        (lambda r: (r / "app" / "os.so").write_bytes(b""), "/app/os.so is not in the image"),
        (lambda r: (r / "app" / "run").unlink(), "/app/run is missing"),
        (lambda r: (r / "app" / "app.py").chmod(0o777), "/app/app.py changed kind or mode"),
        (lambda r: ((r / "lib").unlink(), (r / "lib").symlink_to("/etc")), "/lib points elsewhere"),
    ],
)  # fmt: skip
def test_any_change_to_the_tree_is_named(tmp_path: Path, change: object, says: str) -> None:
    root = tree(tmp_path / "root")
    entries = rootfs_artifact.tree_entries(root)
    change(root)  # type: ignore[operator]
    difference = rootfs_artifact.tree_difference(root, entries)
    assert difference is not None and difference.startswith(says)


def image(store: Store, text: bytes = b"print('hi')\n") -> tuple[Descriptor, Descriptor]:
    """(manifest, layer) of a tiny image, layer written by build/rootfs.py."""
    return tiny_manifest(store, text)


def index_of(store: Store, *manifests: Descriptor) -> tuple[Descriptor, dict[str, object]]:
    doc = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [m.to_json() for m in manifests]}
    return store.put_json(doc, INDEX), doc


@needs_mkfs
def test_the_erofs_image_is_reproducible_and_keeps_modes(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _, layer = image(store)
    erofs, files = rootfs_artifact.make(store, layer)
    again = rootfs_artifact.make(store, layer)
    assert (erofs, files) == again
    entries = {e[0]: e for e in store.read_json(files)["entries"]}
    assert entries["tmp"][2] == 0o1777  # runc gives /tmp's tmpfs this folder's mode
    assert entries["lib64"] == ["lib64", "l", 0o777, 0, "usr/lib"]
    assert store.read(erofs)[1024:1028] == bytes.fromhex("e2e1f5e0")  # EROFS_SUPER_MAGIC_V1


@needs_mkfs
def test_a_built_artifact_is_found_in_the_index(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    manifest, layer = image(store)
    artifact = rootfs_artifact.create(store, layer, manifest)
    index, doc = index_of(store, manifest, artifact)
    found = rootfs_artifact.find(store, index, doc, layer)  # type: ignore[arg-type]
    assert found is not None and not found.derived and found.manifest.digest == artifact.digest
    # Paired with another image's layer, the index is corrupt, not silently re-derived.
    _, other = image(store, b"print('other')\n")
    with pytest.raises(CorruptBlob, match="was not made from its layer"):
        rootfs_artifact.find(store, index, doc, other)  # type: ignore[arg-type]


@needs_mkfs
def test_a_derived_artifact_counts_only_with_this_hosts_mac(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = Store(tmp_path / "store")
    manifest, layer = image(store)
    index, doc = index_of(store, manifest)
    assert rootfs_artifact.find(store, index, doc, layer) is None  # type: ignore[arg-type]
    derived = rootfs_artifact.derive(store, index, layer)
    found = rootfs_artifact.find(store, index, doc, layer)  # type: ignore[arg-type]
    assert found == derived and found.derived
    key = tmp_path / "state" / "summon" / "rootfs.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    # Another host (another key) does not take it.
    key.unlink()
    assert rootfs_artifact.find(store, index, doc, layer) is None  # type: ignore[arg-type]


def test_a_layer_member_outside_the_rules_stops_the_erofs_image(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|") as tar,
    ):
        fifo = tarfile.TarInfo("tmp/fifo")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    layer = store.put_bytes(buf.getvalue(), LAYER_GZIP)
    if shutil.which("mkfs.erofs") is None:
        pytest.skip("apt-get install erofs-utils")
    with pytest.raises(CorruptBlob, match="rule special-file"):
        rootfs_artifact.make(store, layer)
    assert os.listdir(store.tmp_dir) == []


@needs_mkfs
def test_a_full_disk_while_making_it_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacking the layer into a full store said only "No space left on device" (tarfile's
    write fails on close, with no file name)."""
    import errno

    from summon.errors import UserError
    from summon.store import layer_rules

    store = Store(tmp_path / "store")
    _, layer = image(store)

    def full(store: Store, layer: Descriptor, root: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(layer_rules, "extract", full)
    with pytest.raises(UserError) as e:
        rootfs_artifact.make(store, layer)
    assert str(e.value).startswith(
        f"no space left in the store ({store.root}) to make the image's root filesystem"
    )
    assert list(store.tmp_dir.iterdir()) == []  # nothing half-made is left


def test_mkfs_out_of_space_names_the_store_as_a_full_unpack_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store with room for the unpacked tree but not the erofs image said mkfs.erofs's own
    words ("<E> erofs: Could not format the device : [Error 28] ..."), not what to do."""
    from summon.errors import UserError

    store = Store(tmp_path / "store")
    _, layer = image(store)
    fake = tmp_path / "bin" / "mkfs.erofs"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho '<E> erofs: \tCould not format the device : [Error 28] No space "
        "left on device' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(UserError) as e:
        rootfs_artifact.make(store, layer)
    assert str(e.value) == (
        f"no space left in the store ({store.root}) to make the image's root filesystem "
        "(No space left on device); free some (summon rmi --dangling) and try again"
    )
    assert list(store.tmp_dir.iterdir()) == []


@needs_mkfs
def test_an_erofs_made_elsewhere_is_never_mounted_one_made_here_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule rootfs.made-here: the host kernel mounts an image's erofs blob as root, so only
    one this host made from the layer is mounted. An index's own artifact (a pulled image's,
    here a hand-made erofs image) still serves its file list, but for a mount one is derived
    here from the layer, and that one is what is found from then on."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = Store(tmp_path / "store")
    manifest, layer = image(store)
    _, files = rootfs_artifact.make(store, layer)
    forged = store.put_bytes(b"\0" * 1024 + bytes.fromhex("e2e1f5e0") + b"\0" * 3068, "x")
    forged = Descriptor(rootfs_artifact.EROFS_TYPE, forged.digest, forged.size)
    artifact = rootfs_artifact.attach(store, layer, manifest, forged, files)
    index, doc = index_of(store, manifest, artifact)
    own = rootfs_artifact.find(store, index, doc, layer)  # type: ignore[arg-type]
    assert own is not None and own.erofs == forged  # for the unix target's file list
    assert rootfs_artifact.find(store, index, doc, layer, mount=True) is None  # type: ignore[arg-type]
    derived = rootfs_artifact.derive(store, index, layer)
    assert derived.erofs != forged and derived.files == files
    found = rootfs_artifact.find(store, index, doc, layer, mount=True)  # type: ignore[arg-type]
    assert found == derived
    # An artifact this host built is mounted as it is; on another host (key) it is not.
    built = rootfs_artifact.create(store, layer, manifest)
    index, doc = index_of(store, manifest, built)
    found = rootfs_artifact.find(store, index, doc, layer, mount=True)  # type: ignore[arg-type]
    assert found is not None and not found.derived and found.manifest.digest == built.digest
    (tmp_path / "state" / "summon" / "rootfs.key").unlink()
    assert rootfs_artifact.find(store, index, doc, layer, mount=True) is None  # type: ignore[arg-type]
