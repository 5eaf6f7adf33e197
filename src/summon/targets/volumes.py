"""Named volumes for VM instances: ext4 disk images in summon's state folder, kept across runs.

A volume NAME is <state>/volumes/NAME.ext4, a sparse file made with mkfs.ext4 on first use.
The guest finds its disk by the file system's UUID (read back from the superblock here and
passed in the run's settings), so the order QEMU attaches disks in does not matter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from summon import paths
from summon.errors import SummonError, UserError
from summon.runtime.vm import ext4_uuid

DEFAULT_SIZE = 1024 * 1024 * 1024  # sparse: only what the guest writes takes host space
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def volumes_dir() -> Path:
    return paths.state_dir() / "volumes"


def check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise UserError(f"volume name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")


def check_path(path: str) -> None:
    parts = path.split("/")
    if not path.startswith("/") or path == "/" or ".." in parts or "" in parts[1:]:
        raise UserError(f"volume path {path!r}: give an absolute path in the image, like /data")
    if parts[1] in ("proc", "dev", "sys", "tmp", "usr", "etc", "lib", "lib64", "app"):
        raise UserError(
            f"volume path {path!r}: /{parts[1]} belongs to the image or the runtime; "
            "mount volumes elsewhere, like /data"
        )


def disk_path(name: str) -> Path:
    check_name(name)
    return volumes_dir() / f"{name}.ext4"


def ensure_disk(name: str, size: int = DEFAULT_SIZE) -> tuple[Path, str]:
    """(disk image, ext4 UUID as 32 hex digits) of volume `name`, made if it does not exist."""
    path = disk_path(name)
    if not path.exists():
        _make_disk(path, name, size)
    fs_uuid = ext4_uuid(str(path))
    if fs_uuid is None:
        raise UserError(f"volume {name}: {path} holds no ext4 file system; remove it to start anew")
    return path, fs_uuid


def _make_disk(path: Path, name: str, size: int) -> None:
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/sbin:/usr/sbin")
    if mkfs is None:
        raise UserError("mkfs.ext4 not found, needed to make volumes: apt-get install e2fsprogs")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.truncate(size)
        proc = subprocess.run(
            # -m 0: no blocks reserved for root, the only user; root_owner: the app is root.
            [
                mkfs,
                "-q",
                "-F",
                "-m",
                "0",
                "-U",
                str(uuid.uuid4()),
                "-L",
                name[:16],
                "-E",
                "root_owner=0:0",
                str(tmp),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SummonError(f"mkfs.ext4 could not make volume {name}: {last}")
        os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def list_volumes() -> list[tuple[str, Path]]:
    folder = volumes_dir()
    if not folder.is_dir():
        return []
    return sorted((p.stem, p) for p in folder.glob("*.ext4"))
