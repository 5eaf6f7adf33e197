"""Named volumes: one kind on disk, moved between a folder and an ext4 disk with their files,
held by one VM or shared by folder users, crash-safe moves; host folders bound as they are."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from summon.errors import UserError
from summon.runtime.vm import ext4_uuid
from summon.targets import volume_stores, volumes
from summon.targets.base import RunSpec, Volume

needs_e2fsprogs = pytest.mark.skipif(
    shutil.which("debugfs", path="/sbin:/usr/sbin:/usr/bin:/bin") is None
    or shutil.which("mkfs.ext4", path="/sbin:/usr/sbin:/usr/bin:/bin") is None,
    reason="apt-get install e2fsprogs",
)


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "summon" / "volumes"


def spec(*mounts: Volume, declared: tuple[str, ...] = ("/data",)) -> RunSpec:
    return RunSpec(name="t", image="img", rootfs=Path("/nonexistent"),
                   app_config={"volumes": list(declared)}, volumes=mounts)  # fmt: skip


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/data", ""),
        ("/var/lib/app", ""),
        ("data", "give an absolute path"),
        ("/a//b", "give an absolute path"),
        ("/run/x", "/run belongs to the image or the runtime"),
        ("/a:b", "use letters, digits"),
        ("/a=b", "use letters, digits"),
    ],
)
def test_mount_paths(path: str, why: str) -> None:
    assert why in volumes.mount_path_problem(path)
    assert bool(why) == bool(volumes.mount_path_problem(path))


def test_a_new_volume_is_a_folder_the_app_owns(state: Path) -> None:
    folder, held = volumes.attach_folder("data")
    with held:
        assert folder == state / "data" and folder.is_dir()
        assert volumes.kind_of("data") == volumes.FOLDER
        owner = volumes.app_owner()
        if owner is not None:
            assert (folder.stat().st_uid, folder.stat().st_gid) == owner
        # Folder users share it; a VM or a removal may not have it meanwhile.
        _, again = volumes.attach_folder("data")
        again.close()
        with pytest.raises(volumes.VolumeInUse, match="volume data is in use"):
            volumes.attach_disk("data")
        with pytest.raises(volumes.VolumeInUse):
            volumes.remove("data")
    volumes.remove("data")
    assert volumes.kind_of("data") is None


def test_files_left_to_another_owner_are_given_back_never_through_a_link(
    state: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to the app's uid needs root")
    outside = tmp_path / "outside"
    outside.write_text("host file")
    folder, held = volumes.attach_folder("data")
    held.close()
    (folder / "sub").mkdir()
    (folder / "sub/f").write_text("x")  # as root, as a unix-target run leaves it
    (folder / "link").symlink_to(outside)
    _, held = volumes.attach_folder("data")
    held.close()
    owner = volumes.app_owner()
    assert owner is not None
    for path in (folder / "sub", folder / "sub/f", folder / "link"):
        assert path.lstat().st_uid == owner[0], path
    assert outside.stat().st_uid == 0


@needs_e2fsprogs
def test_a_volume_moves_into_a_disk_and_back_with_its_files(state: Path) -> None:
    folder, held = volumes.attach_folder("data")
    held.close()
    (folder / "todo/objects").mkdir(parents=True)
    (folder / "todo/HEAD").write_bytes(b"ref: refs/heads/main\n")
    (folder / "big").write_bytes(os.urandom(300_000))
    notes: list[str] = []
    disk, fs_uuid, held = volumes.attach_disk("data", notes.append)
    with held:
        assert disk == state / "data.ext4" and not folder.exists()
        assert ext4_uuid(str(disk)) == fs_uuid
        assert volumes.kind_of("data") == volumes.EXT4
        assert notes and "into an ext4 disk" in notes[0]
        # The VM holds it alone.
        with pytest.raises(volumes.VolumeInUse):
            volumes.attach_folder("data")
    back, held = volumes.attach_folder("data", notes.append)
    held.close()
    assert (back / "todo/HEAD").read_bytes() == b"ref: refs/heads/main\n"
    assert (back / "big").stat().st_size == 300_000
    assert not (back / "lost+found").exists()
    assert not disk.exists()
    assert sorted(p.name for p in state.iterdir() if not p.name.endswith(".lock")) == ["data"]


@needs_e2fsprogs
def test_a_move_cut_short_after_its_rename_is_finished(state: Path) -> None:
    folder, held = volumes.attach_folder("data")
    held.close()
    disk, _, held = volumes.attach_disk("data")
    held.close()
    # As if the host died between the new disk's rename and the old folder's removal.
    folder.mkdir()
    (state / ".data.converting").write_text("ext4\n")
    assert volumes.kind_of("data") == volumes.EXT4
    assert not folder.exists() and disk.exists()
    assert not (state / ".data.converting").exists()
    # Without the intent, nothing says which is newer: the user decides.
    folder.mkdir()
    with pytest.raises(Exception, match=r"both a folder .* and a disk image"):
        volumes.kind_of("data")


def test_host_folders_are_bound_as_they_are_and_must_be_declared(tmp_path: Path) -> None:
    mounts, leases = volumes.folder_mounts(spec(Volume(str(tmp_path), "/data")))
    assert (mounts, leases) == ([("/data", tmp_path)], [])
    with pytest.raises(UserError, match="-v /x:/data: /x is not a folder"):
        volumes.folder_mounts(spec(Volume("/x", "/data")))
    with pytest.raises(UserError, match=r"declares no volume at /srv \(its volumes: /data\)"):
        volumes.folder_mounts(spec(Volume("v", "/srv")))
    with pytest.raises(UserError, match="two volumes at /data"):
        volumes.folder_mounts(spec(Volume("a", "/data"), Volume("b", "/data")))


@needs_e2fsprogs
def test_create_list_info_and_remove(state: Path) -> None:
    volumes.create("a")
    volumes.create("b", volumes.EXT4, 16 << 20)
    with pytest.raises(UserError, match="volume a exists"):
        volumes.create("a", volumes.EXT4)
    with pytest.raises(UserError, match="volume name"):
        volumes.create("../x")
    assert [n for n, _ in volumes.list_volumes()] == ["a", "b"]
    b = volumes.info("b")
    assert (b.kind, b.capacity, b.busy) == ("ext4", 16 << 20, False)
    assert 0 < b.size < 16 << 20  # sparse
    with pytest.raises(UserError, match="no volume 'c'"):
        volumes.info("c")
    _, held = volumes.attach_folder("a")
    with held:
        assert volumes.info("a").busy
        volumes.remove("a", force=True)
    assert [n for n, _ in volumes.list_volumes()] == ["b"]


@needs_e2fsprogs
@pytest.mark.skipif(shutil.which("git") is None, reason="apt-get install git")
def test_a_stores_history_leaves_a_disk_volume_as_a_bundle_git_clones(
    state: Path, tmp_path: Path
) -> None:
    from summon import kv

    folder, held = volumes.attach_folder("todo")
    held.close()
    with kv.open_folder(str(folder / "todo")) as store:
        for i in range(3):
            store.set(f"task/{i}", b"milk", message=f"add {i}")
    volumes.attach_disk("todo")[2].close()  # now an ext4 disk: read without a mount
    assert volume_stores.export("todo", tmp_path / "t.bundle") == "todo"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "t.bundle"), str(clone)], check=True)
    log = subprocess.run(["git", "-C", str(clone), "log", "--format=%s"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert log.split() == ["add", "2", "add", "1", "add", "0"]
    assert not [p for p in state.iterdir() if ".export-" in p.name]
    volume_stores.import_bundle("copy", tmp_path / "t.bundle", "todo")
    with kv.open_folder(str(volumes.folder_path("copy") / "todo")) as store:
        assert [c.message for c in store.history()] == ["add 2", "add 1", "add 0"]
    with pytest.raises(UserError, match="volume copy has no store 'x'"):
        volume_stores.export("copy", tmp_path / "x.bundle", "x")


def test_an_export_refuses_a_store_holding_a_link(state: Path, tmp_path: Path) -> None:
    from summon import kv

    folder, held = volumes.attach_folder("v")
    held.close()
    with kv.open_folder(str(folder / "s")) as store:
        store.set("k", b"v")
    (folder / "s/objects/evil").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="is not a folder or a regular file"):
        volume_stores.export("v", tmp_path / "b")
    assert not (tmp_path / "b").exists()


@needs_e2fsprogs
@pytest.mark.parametrize("planted", ["sparse", "line break"])
def test_a_disk_whose_files_outgrow_it_is_not_copied_out(
    state: Path, tmp_path: Path, planted: str
) -> None:
    """Rule: a disk's files are copied out only up to its size. A file of holes costs an ext4
    disk nothing and debugfs wrote it out whole: an app's 1 GiB volume could fill the host's
    disk at `volume export`. A name with a line break, which could hide such a file from
    the listing, is refused too."""
    from summon import kv

    folder, held = volumes.attach_folder("holes")
    held.close()
    with kv.open_folder(str(folder / "todo")) as store:
        store.set("k", b"v")
    name = "holes" if planted == "sparse" else "we\nird"
    with (folder / name).open("wb") as f:
        f.truncate((2 << 30) if planted == "sparse" else 1)  # 2 GiB of holes, on a 1 GiB disk
    volumes.attach_disk("holes")[2].close()  # now an ext4 disk, the file in it
    said = "more than the disk itself" if planted == "sparse" else "names a file with a line"
    with pytest.raises(UserError, match=said):
        volume_stores.export("holes", tmp_path / "h.bundle")
    assert not (tmp_path / "h.bundle").exists()
    assert not [p for p in state.iterdir() if ".export-" in p.name]


def test_a_store_open_by_another_process_is_found_before_a_start(tmp_path: Path) -> None:
    import fcntl

    from summon import kv

    folder = tmp_path / "data"
    # Its lock held, as a running app's is.
    store = kv.open_folder(str(folder / "notes"), background=False)
    mounted = RunSpec(name="t", image="img", rootfs=Path("/nonexistent"),
                      app_config={"volumes": ["/data"], "stores": {"notes": "/data/notes"}},
                      volumes=(Volume(str(folder), "/data"),))  # fmt: skip
    try:
        assert volume_stores.open_stores(mounted) == [(Volume(str(folder), "/data"), "/data/notes")]
    finally:
        store.close()
    assert volume_stores.open_stores(mounted) == []
    # A link the app left at the lock's name is not followed to whatever it names.
    lock = folder / "notes" / "summon-kv" / "lock"
    elsewhere = tmp_path / "held"
    elsewhere.touch()
    fd = os.open(elsewhere, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        lock.unlink()
        lock.symlink_to(elsewhere)
        assert volume_stores.open_stores(mounted) == []
    finally:
        os.close(fd)


def test_an_imported_store_the_image_would_not_find_is_said_before_a_start(
    tmp_path: Path,
) -> None:
    """`summon volume export todo`, then `summon volume import copy FILE`: the store went to
    copy/ (the volume's name), todo's app looked for /data/todo, found nothing, and started an
    empty list without a word. The run now says where the data is and how to move it."""
    from summon import kv

    store = kv.open_folder(str(tmp_path / "src"))
    store.set("tasks/1", b"milk", message="add milk")
    store.close()
    kv.export_bundle(str(tmp_path / "src"), str(tmp_path / "todo.bundle"))
    volume_stores.import_bundle("copy", tmp_path / "todo.bundle", "copy")  # the CLI's default
    config = {"volumes": ["/data"], "stores": {"todo": "/data/todo"}}

    def run_with(name: str) -> RunSpec:
        return RunSpec(name="t", image="todo", rootfs=Path("/nonexistent"), app_config=config,
                       volumes=(Volume(name, "/data"),))  # fmt: skip

    said = volume_stores.misplaced_stores(run_with("copy"))
    assert len(said) == 1, said
    assert said[0].startswith(
        "warning: -v copy:/data: the volume holds the store(s) copy but not todo"
    )
    assert "--store todo" in said[0]
    # Imported where the app looks, or a new empty volume: nothing to say.
    volume_stores.import_bundle("right", tmp_path / "todo.bundle", "todo")
    volumes.create("fresh")
    assert volume_stores.misplaced_stores(run_with("right")) == []
    assert volume_stores.misplaced_stores(run_with("fresh")) == []
