"""The verified run path: what runs is what the image digest names, whatever the caches say.

Each test tampers with a cache or a blob the way an attacker with write access to the host's
folders could, then runs the image and checks which rule refused it, or that the tampered
bytes were provably not what ran (the probe app reports the marker module it imported).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hostile_apps import cache_dir, needs_sandbox, probe_report
from summon_cli import Summon

from summon.store import Store, rootfs_artifact
from summon.store.image import Image
from summon.store.layout import INDEX, Descriptor

pytestmark = needs_sandbox

EDITED_MARKER = 'VALUE = "edited in the cache"\n'


def run_probe(summon: Summon, image: str, target: str) -> dict[str, object]:
    r = summon("run", image, "--target", target)
    assert r.returncode == 0, r.stderr
    return probe_report(r.stdout)


def unpacked_folders(summon: Summon) -> list[Path]:
    """The unpacked roots (not their lists of stores, <folder>.stores, beside them)."""
    folder = cache_dir(summon.env) / "rootfs"
    return (
        sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
        if folder.is_dir()
        else []
    )


def edit_marker(root: Path) -> None:
    """Put code that says "edited" where the probe imports its marker from, as it would run."""
    (root / "app" / "marker.py").write_text(EDITED_MARKER)
    for pyc in (root / "app" / "__pycache__").glob("marker.*.pyc"):
        pyc.unlink()  # so an unverified interpreter would compile and run the edited source


@contextmanager
def flipped(path: Path, offset: int) -> Iterator[None]:
    """One byte of path changed in place (same inode), then restored."""
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))
    try:
        yield
    finally:
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(old)


def image_of(summon: Summon, ref: str) -> Image:
    return Image.open(Store(summon.store), ref)


def test_an_edited_unpacked_folder_is_set_aside_never_run(summon: Summon, probe_image: str) -> None:
    """Rule: the unpacked folder must match the image's file list (store/image.py unpack);
    the sandbox does not run it at all (its root is the verified erofs mount)."""
    assert run_probe(summon, probe_image, "unix")["marker"] == "as built"
    (folder,) = unpacked_folders(summon)
    edit_marker(folder)
    r = summon("run", probe_image, "--target", "unix")
    assert r.returncode == 0, r.stderr
    assert probe_report(r.stdout)["marker"] == "as built"
    assert "differs from its image (/app/__pycache__/marker.cpython-311.pyc is missing)" in r.stderr
    assert not folder.exists(), "the edited folder was set aside and removed"
    (fresh,) = unpacked_folders(summon)
    edit_marker(fresh)
    assert run_probe(summon, probe_image, "sandbox")["marker"] == "as built"
    # Control: the edited folder would run the edit, had nothing checked it.
    edited = subprocess.run(
        [str(fresh / "usr/bin/python3.11"), "-S", "-E", "-c", "import marker; print(marker.VALUE)"],
        cwd=fresh / "app", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert edited.stdout.strip() == "edited in the cache"


def test_the_mounted_root_cannot_be_edited(summon: Summon, probe_image: str) -> None:
    """Rule: the sandbox's root is an erofs image mounted read-only from its hashed blob."""
    run_probe(summon, probe_image, "sandbox")
    erofs = image_of(summon, probe_image).rootfs_artifact().erofs
    mounted = rootfs_artifact.mount_point(erofs)
    with pytest.raises(OSError) as caught:
        (mounted / "app" / "marker.py").write_text(EDITED_MARKER)
    assert caught.value.errno == 30  # EROFS


def test_an_erofs_blob_changed_after_it_was_mounted_is_refused(
    summon: Summon, probe_image: str
) -> None:
    """Rule: a reuse of the mount checks the blob's inode is unchanged (ctime) since it was
    hashed; a changed one is hashed again through the fd it is mounted from, and refused."""
    assert run_probe(summon, probe_image, "sandbox")["marker"] == "as built"
    erofs = image_of(summon, probe_image).rootfs_artifact().erofs
    blob = summon.store / "blobs" / "sha256" / erofs.digest[7:]
    with flipped(blob, erofs.size // 2):
        r = summon("run", probe_image, "--target", "sandbox")
        assert r.returncode == 2, r.stderr
        (line,) = [x for x in r.stderr.splitlines() if x.startswith("summon: error:")]
        assert f"root filesystem blob {erofs.digest} is corrupt" in line
        assert "verified run path" in line
    assert run_probe(summon, probe_image, "sandbox")["marker"] == "as built"


@pytest.mark.parametrize("target", ["unix", "sandbox"])
def test_a_corrupted_layer_is_refused_while_a_cache_exists(
    summon: Summon, probe_image: str, target: str
) -> None:
    """Rule: every blob is checked against its digest when used: the layer too, while the
    unpacked folder (unix) or the mount (sandbox) of the same image is there and intact."""
    run_probe(summon, probe_image, target)  # the cache or mount exists now
    layer = image_of(summon, probe_image).layer
    blob = summon.store / "blobs" / "sha256" / layer.digest[7:]
    with flipped(blob, layer.size // 2):
        r = summon("run", probe_image, "--target", target)
        assert r.returncode == 2, r.stderr
        (line,) = [x for x in r.stderr.splitlines() if x.startswith("summon: error:")]
        assert f"blob {layer.digest} is corrupt" in line
    assert run_probe(summon, probe_image, target)["marker"] == "as built"


def without_rootfs_artifact(summon: Summon, ref: str, new_ref: str) -> Image:
    """The image as an older build or a foreign copy has it: no root filesystem artifact."""
    store = Store(summon.store)
    image = image_of(summon, ref)
    kept = [
        d for d in image.index["manifests"] if d.get("artifactType") != rootfs_artifact.ROOTFS_TYPE
    ]
    # A title of its own, so each such image is a new index, with no referrers yet.
    annotations = {**image.index.get("annotations", {}), "org.opencontainers.image.title": new_ref}
    desc = store.put_json({**image.index, "manifests": kept, "annotations": annotations}, INDEX)
    store.tag(new_ref, desc)
    return Image(store, new_ref, Descriptor(INDEX, desc.digest, desc.size))


def test_an_image_without_the_artifact_gets_it_derived_once(
    summon: Summon, probe_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a derived artifact is a local referrer of the index: the index digest (what
    signatures cover) does not change; it is derived once and said so once."""
    monkeypatch.setenv("XDG_STATE_HOME", summon.env["XDG_STATE_HOME"])  # its host key
    old = without_rootfs_artifact(summon, probe_image, "probe:old")
    assert rootfs_artifact.find(old.store, old.desc, old.index, old.layer) is None
    r = summon("run", "probe:old", "--target", "sandbox")
    assert r.returncode == 0, r.stderr
    assert probe_report(r.stdout)["marker"] == "as built"
    assert r.stderr.count("deriving it from the image's layer") == 1
    assert summon.digest("probe:old") == old.desc.digest
    found = rootfs_artifact.find(old.store, old.desc, old.index, old.layer)
    assert found is not None and found.derived
    again = summon("run", "probe:old", "--target", "sandbox")
    assert again.returncode == 0 and "deriving" not in again.stderr


def test_a_forged_referrer_is_ignored(
    summon: Summon, probe_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a derived artifact counts only with this host's MAC: anyone who can write the
    store can add a referrer, and no signature covers one."""
    monkeypatch.setenv("XDG_STATE_HOME", summon.env["XDG_STATE_HOME"])  # its host key
    old = without_rootfs_artifact(summon, probe_image, "probe:forged")
    store = old.store
    # The attacker's root filesystem: the image's, with the marker edited, as an erofs blob.
    folder = image_of(summon, probe_image).rootfs()  # its own artifact: nothing derived
    forged_root = tmp_path / "forged"
    shutil.copytree(folder, forged_root, symlinks=True)
    edit_marker(forged_root)
    image_file = store.tmp_dir / "forged.erofs"
    subprocess.run(["mkfs.erofs", "--quiet", str(image_file), str(forged_root)], check=True)
    erofs = store.put_file(image_file, rootfs_artifact.EROFS_TYPE)
    entries = rootfs_artifact.tree_entries(forged_root)
    files = store.put_json({"schemaVersion": 1, "entries": entries}, rootfs_artifact.FILES_TYPE)
    for mac in ("", "0" * 64):
        annotations = {rootfs_artifact.LAYER_ANNOTATION: old.layer.digest}
        if mac:
            annotations[rootfs_artifact.MAC_ANNOTATION] = mac
        forged = store.put_artifact(
            rootfs_artifact.ROOTFS_TYPE, [erofs, files], old.desc, annotations
        )
        store.add_referrer(forged)
    assert rootfs_artifact.find(store, old.desc, old.index, old.layer) is None
    r = summon("run", "probe:forged", "--target", "sandbox")
    assert r.returncode == 0, r.stderr
    assert probe_report(r.stdout)["marker"] == "as built"
    assert "deriving" in r.stderr
    # The key that makes a MAC valid is this host's, outside the store, readable by root only.
    key = Path(summon.env["XDG_STATE_HOME"]) / "summon" / "rootfs.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_an_erofs_image_made_elsewhere_is_never_mounted(
    summon: Summon, probe_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule rootfs.made-here: an image's own erofs blob (a pulled image's: its publisher's
    bytes) reached the host kernel's erofs code, mounted as root. Here the index carries a
    hand-made one: the run derives its own from the layer, runs the image as built, and the
    hand-made blob is never mounted."""
    monkeypatch.setenv("XDG_STATE_HOME", summon.env["XDG_STATE_HOME"])  # its host key
    store = Store(summon.store)
    image = image_of(summon, probe_image)
    own = rootfs_artifact.find(store, image.desc, image.index, image.layer)
    assert own is not None
    junk = store.put_bytes(b"\0" * 1024 + bytes.fromhex("e2e1f5e0") + b"\1" * 8192, "x")
    forged = Descriptor(rootfs_artifact.EROFS_TYPE, junk.digest, junk.size)
    manifest = Descriptor.from_json(image.index["manifests"][0], "index")
    artifact = rootfs_artifact.attach(store, image.layer, manifest, forged, own.files)
    kept = [d for d in image.index["manifests"] if d["digest"] != own.manifest.digest]
    doc = {
        **image.index,
        "manifests": [*kept, artifact.to_json()],
        "annotations": {"org.opencontainers.image.title": "probe:foreign"},
    }
    desc = store.put_json(doc, INDEX)
    store.tag("probe:foreign", desc)
    r = summon("run", "probe:foreign", "--target", "sandbox")
    assert r.returncode == 0, r.stderr
    assert probe_report(r.stdout)["marker"] == "as built"
    assert r.stderr.count("deriving it from the image's layer") == 1
    assert not rootfs_artifact.mount_point(forged).exists()
    assert summon.digest("probe:foreign") == desc.digest
