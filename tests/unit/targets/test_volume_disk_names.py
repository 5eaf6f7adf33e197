"""A disk a VM wrote is untrusted input: its names must not lead debugfs out of the folder.

A VM's app is root in its guest and can write any bytes to its volume's disk. debugfs
`rdump` writes each entry at DEST/NAME as the disk names it, so an entry whose name holds a
`/` (which no ext4 may hold, and a raw write can) was written outside DEST: wherever the
volume's owner may write (another volume; the user's home when summon is not root). Rule
(targets/volume_disks.dump_disk): the disk is checked whole by `e2fsck -f -p` first, and one
it cannot preen is refused with one line, its files never copied out.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from summon.errors import UserError
from summon.targets.volume_disks import dump_disk

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mkfs.ext4", "debugfs", "e2fsck")),
    reason="needs e2fsprogs (mkfs.ext4, debugfs, e2fsck)",
)

PLACEHOLDER = b"AAAAAAAAAAAAAAAAAAAAA"
ESCAPE = b"../../escaped-by-name"  # from vols/DEST: two folders up, into the test's folder


def crafted_disk(folder: Path) -> Path:
    """An ext4 image with one file whose directory entry names ESCAPE, as a guest's raw
    write would leave it (no metadata checksums to mend after the edit)."""
    assert len(PLACEHOLDER) == len(ESCAPE)
    source = folder / "source"
    source.mkdir()
    (source / PLACEHOLDER.decode()).write_text("planted by the guest\n")
    disk = folder / "disk.ext4"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "-d", str(source), str(disk), "8M"],
        check=True,
    )
    data = disk.read_bytes()
    assert data.count(PLACEHOLDER) == 1
    disk.write_bytes(data.replace(PLACEHOLDER, ESCAPE))
    return disk


def test_control_debugfs_alone_writes_outside_the_folder(tmp_path: Path) -> None:
    vols = tmp_path / "vols"
    vols.mkdir()
    disk = crafted_disk(vols)
    (vols / "dest").mkdir()
    subprocess.run(["debugfs", "-R", "rdump / dest", disk.name], cwd=vols, capture_output=True)
    assert (tmp_path / "escaped-by-name").read_text() == "planted by the guest\n"


def test_a_disk_with_a_name_no_ext4_may_hold_is_refused(tmp_path: Path) -> None:
    vols = tmp_path / "vols"
    vols.mkdir()
    disk = crafted_disk(vols)
    dest = vols / "dest"
    dest.mkdir()
    with pytest.raises(UserError) as refused:
        dump_disk(disk, dest, None)
    text = str(refused.value)
    assert "\n" not in text
    assert "holds what no ext4 file system may" in text and "illegal characters" in text, text
    assert not (tmp_path / "escaped-by-name").exists()
    assert [p.name for p in dest.iterdir()] == []


def test_a_whole_disk_is_still_copied_out(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "file").write_text("kept\n")
    disk = tmp_path / "disk.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(source), str(disk), "8M"], check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    dump_disk(disk, dest, None)
    assert (dest / "sub" / "file").read_text() == "kept\n"
