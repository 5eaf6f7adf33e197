"""Named volumes: one kind on disk per name, converted in user space when a target needs the other.

A named volume NAME lives in summon's state folder as exactly one of

- a folder <state>/volumes/NAME/ (kind "folder"): what the folder targets (sandbox, unix)
  bind into the instance; owned by the host uid the sandboxed app runs as, so it can write;
- an ext4 disk image <state>/volumes/NAME.ext4 (kind "ext4"): what the qemu target attaches
  as a virtio-blk disk; the guest finds it by the file system's UUID (read back from the
  superblock here and passed in the run's settings), whatever order QEMU attaches disks in.

A target attaches the kind it uses (attach_folder, attach_disk); a volume of the other kind
is converted first, whole or not at all, by user-space tools run as the volume's owner:
folder -> ext4 with `mkfs.ext4 -d` (fills a new file system from the folder, no mount),
ext4 -> folder with `debugfs -R "rdump / DIR"`. Never a loop mount: a disk a VM wrote is
untrusted input, and mounting it would have the host kernel's ext4 parse whatever a guest
crafted; debugfs parses it in a process with no privilege. So the same volume moves from the
sandbox to qemu and back with its data (`summon run -v NAME:/data --target qemu`).

A conversion is crash-safe: the new kind is made under a temporary name and synced, an
intent file names the kind being made, the new one is renamed into place, the old one is
renamed away and removed, then the intent goes. Finding both kinds, the intent says which
is new and the move is finished.

Who uses a volume is a flock on <state>/volumes/NAME.lock, held for an instance's life:
shared for folder users (several may share a folder, as Docker's volumes are shared; a
KV_RW store in it takes its own lock), exclusive for a disk (two VMs on one ext4 would
corrupt it), a conversion, a removal, an export or an import.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from summon import paths
from summon.errors import SummonError, UserError
from summon.runtime.config import manifest_table
from summon.runtime.vm import ext4_uuid
from summon.targets.volume_disks import (
    discard,
    dump_disk,
    give_to,
    make_disk,
    sync_dir,
    sync_tree,
    tree_size,
)

FOLDER, EXT4 = "folder", "ext4"
KINDS = (FOLDER, EXT4)
DEFAULT_SIZE = 1024 * 1024 * 1024  # sparse: only what the guest writes takes host space
MIN_FREE = 64 * 1024 * 1024  # room an ext4 made from a folder keeps beyond twice its data
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# Image paths a volume may not cover: the image's own folders and the runtime's mounts.
RESERVED = ("proc", "dev", "sys", "tmp", "usr", "etc", "lib", "lib64", "app", "run")
# Characters of a mount path: the runtime's SUMMON_VOLUMES (targets.base) uses ':' and '='.
_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+\Z")

if TYPE_CHECKING:
    from summon.targets.base import RunSpec


class VolumeInUse(UserError):
    """Another instance (or a summon volume command) holds the volume."""


@dataclass(frozen=True)
class VolumeInfo:
    """What `summon volume ls/inspect` shows of one volume."""

    name: str
    kind: str  # "folder" | "ext4"
    path: Path
    size: int  # bytes the volume takes on the host's disk
    capacity: int | None  # an ext4 image's size; None for a folder (the host disk's)
    busy: bool  # some process holds the volume's lock


def volumes_dir() -> Path:
    return paths.state_dir() / "volumes"


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UserError(
            f"volume name {name!r}: use ASCII letters, digits, '.', '_' and '-', starting with "
            "a letter or digit (at most 64)"
        )


def mount_path_problem(path: str) -> str:
    """Why `path` cannot be a volume's mount point in an image, or "" if it can."""
    parts = path.split("/")
    if not path.startswith("/") or path == "/" or ".." in parts or "" in parts[1:]:
        return "give an absolute path in the image, like /data"
    if parts[1] in RESERVED:
        return (
            f"/{parts[1]} belongs to the image or the runtime; mount volumes elsewhere, like /data"
        )
    if not _PATH_RE.match(path):
        return "use letters, digits, '.', '_' and '-' between the slashes, like /data"
    return ""


def check_path(path: str) -> None:
    why = mount_path_problem(path)
    if why:
        raise UserError(f"volume path {path!r}: {why}")


def folder_path(name: str) -> Path:
    check_name(name)
    return volumes_dir() / name


def disk_path(name: str) -> Path:
    check_name(name)
    return volumes_dir() / f"{name}.ext4"


def _lock_path(name: str) -> Path:
    return volumes_dir() / f".{name}.lock"


def _intent_path(name: str) -> Path:
    return volumes_dir() / f".{name}.converting"


def kind_of(name: str) -> str | None:
    """The kind volume `name` is on disk ("folder" or "ext4"), or None if there is none.

    Finishes a conversion a crash interrupted (both kinds present): see the docstring.
    """
    folder, disk = folder_path(name), disk_path(name)
    if folder.is_dir() and disk.is_file():
        intent = _intent_path(name)
        try:
            new = intent.read_text().strip()
        except OSError:
            raise SummonError(
                f"volume {name} is both a folder ({folder}) and a disk image ({disk}), and no "
                "record says which is newer: remove the one you do not want"
            ) from None
        discard(disk if new == FOLDER else folder)
        intent.unlink(missing_ok=True)
    if disk.is_file():
        return EXT4
    if folder.is_dir():
        return FOLDER
    return None


def require(name: str) -> str:
    """The kind of volume `name`; UserError if there is no such volume."""
    kind = kind_of(name)
    if kind is None:
        raise UserError(f"no volume {name!r}; see `summon volume ls`")
    return kind


def app_owner() -> tuple[int, int] | None:
    """(uid, gid) on the host that the sandboxed app runs as: a volume's files belong to it.
    None when summon does not run as root (volumes then belong to the user running it)."""
    if os.geteuid() != 0:
        return None
    from summon.targets.sandbox.config import APP_GID, APP_UID, id_range

    (uid, _), (gid, _) = id_range()
    return uid + APP_UID, gid + APP_GID


# --- locks -------------------------------------------------------------------------------------


class Lease:
    """A hold on a volume (its lock file's flock) for as long as an instance uses it."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd = fd

    def share(self) -> None:
        """Turn an exclusive hold into a shared one (other folder users may come in)."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the flock goes with its last descriptor
            self._fd = -1

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lease(name: str, *, exclusive: bool, what: str = "") -> Lease:
    """Hold volume `name` (shared or exclusive), or raise VolumeInUse at once."""
    check_name(name)
    volumes_dir().mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(_lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        doing = f" to {what}" if what else ""
        raise VolumeInUse(
            f"volume {name} is in use by another instance; stop it first{doing} "
            "(summon volume ls shows who uses it)"
        ) from None
    return Lease(name, fd)


def busy(name: str) -> bool:
    """Whether some process holds volume `name` now. Read only (no lock file made, none
    opened for writing: flock needs neither), for `volume ls` of a read-only state folder."""
    check_name(name)
    try:
        fd = os.open(_lock_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # never held: a holder makes the file first
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (and the flock with it)
    return False


# --- attaching -----------------------------------------------------------------------------


Notice = Callable[[str], None]
Mount = tuple[str, Path]  # (image path, host folder)


def attach_folder(name: str, notice: Notice | None = None) -> tuple[Path, Lease]:
    """The folder of volume `name` (made, or converted from a disk image, if need be),
    owned by app_owner(), and a shared hold on it for the instance's life."""
    try:
        held = lease(name, exclusive=True)
    except VolumeInUse:
        # Used by another folder target already: share it as it is.
        held = lease(name, exclusive=False)
        if kind_of(name) != FOLDER:
            held.close()
            raise VolumeInUse(
                f"volume {name} is in use as a VM's disk; stop that VM first"
            ) from None
        return folder_path(name), held
    try:
        owner = app_owner()
        kind = kind_of(name)
        if kind == EXT4:
            _convert_to_folder(name, owner, notice)
        elif kind is None:
            _make_folder(folder_path(name), owner)
        if owner is not None:
            give_to(folder_path(name), owner)
        held.share()
    except BaseException:
        held.close()
        raise
    return folder_path(name), held


def attach_disk(name: str, notice: Notice | None = None) -> tuple[Path, str, Lease]:
    """(disk image, ext4 UUID as 32 hex digits, exclusive hold) of volume `name`: made,
    or converted from a folder, if need be."""
    held = lease(name, exclusive=True, what="attach it to a VM")
    try:
        kind = kind_of(name)
        if kind == FOLDER:
            _convert_to_disk(name, app_owner(), notice)
        path, fs_uuid = ensure_disk(name)
    except BaseException:
        held.close()
        raise
    return path, fs_uuid, held


def ensure_disk(name: str, size: int = DEFAULT_SIZE) -> tuple[Path, str]:
    """(disk image, ext4 UUID as 32 hex digits) of volume `name`, made if it does not exist."""
    path = disk_path(name)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            make_disk(tmp, name, size, app_owner())
            os.rename(tmp, path)
            sync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
    fs_uuid = ext4_uuid(str(path))
    if fs_uuid is None:
        raise UserError(f"volume {name}: {path} holds no ext4 file system; remove it to start anew")
    return path, fs_uuid


def holds_stores(path: str, app_config: Mapping[str, Any]) -> bool:
    """Whether one of the image's stores (app.json "stores") lives at or under path."""
    folder = path.rstrip("/")
    stores = app_config.get("stores") or {}
    return any(str(s) == folder or str(s).startswith(folder + "/") for s in stores.values())


def check_declared(spec: RunSpec) -> None:
    """Each of spec's volumes goes where the image declares one (its manifest's volumes):
    there the image has a mount point and the seal lets the app write."""
    declared = [str(v) for v in spec.app_config.get("volumes") or []]
    seen: set[str] = set()
    for vol in spec.volumes:
        check_path(vol.path)
        if vol.path in seen:
            raise UserError(f"-v {vol}: two volumes at {vol.path}")
        seen.add(vol.path)
        if vol.path not in declared:
            where = ", ".join(declared) if declared else "none"
            raise UserError(
                f"-v {vol}: image {spec.image} declares no volume at {vol.path} (its volumes: "
                f'{where}); declare it with volumes = ["{vol.path}"] in '
                f"{manifest_table(spec.app_config)} and rebuild"
            )


def folder_mounts(spec: RunSpec, notice: Notice | None = None) -> tuple[list[Mount], list[Lease]]:
    """What a folder target binds: (image path, host folder) for each of spec's volumes, a
    named one attached as a folder (made or converted if need be), and the holds to release
    when the instance is gone."""
    check_declared(spec)
    mounts: list[Mount] = []
    leases: list[Lease] = []
    try:
        for vol in spec.volumes:
            if vol.is_bind:
                folder = Path(os.path.realpath(vol.name))
                if not folder.is_dir():
                    raise UserError(f"-v {vol}: {vol.name} is not a folder on this host")
            else:
                folder, held = attach_folder(vol.name, notice)
                leases.append(held)
            mounts.append((vol.path, folder))
    except BaseException:
        for held in leases:
            held.close()
        raise
    return mounts, leases


# --- making and converting ---------------------------------------------------------------------


def _make_folder(folder: Path, owner: tuple[int, int] | None) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.new")
    discard(tmp)
    _new_folder(tmp, owner)
    os.rename(tmp, folder)
    sync_dir(folder.parent)


def _new_folder(folder: Path, owner: tuple[int, int] | None) -> None:
    folder.mkdir(mode=0o755)
    if owner is not None:
        os.chown(folder, *owner)


def _convert_to_disk(name: str, owner: tuple[int, int] | None, notice: Notice | None) -> None:
    folder, disk = folder_path(name), disk_path(name)
    if owner is not None:
        give_to(folder, owner)  # mkfs runs as the owner: it must read every file
    used = tree_size(folder)
    if notice:
        notice(f"volume {name}: moving {_mib(used)} from its folder into an ext4 disk for the VM")
    tmp = disk.with_name(f".{disk.name}.{os.getpid()}.tmp")
    try:
        make_disk(tmp, name, max(DEFAULT_SIZE, 2 * used + MIN_FREE), owner, source=folder)
        _swap(name, tmp, disk, folder, EXT4)
    finally:
        tmp.unlink(missing_ok=True)


def _convert_to_folder(name: str, owner: tuple[int, int] | None, notice: Notice | None) -> None:
    folder, disk = folder_path(name), disk_path(name)
    if notice:
        notice(f"volume {name}: moving its ext4 disk's files into a folder")
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.new")
    discard(tmp)
    try:
        _new_folder(tmp, owner)  # made whole under its temporary name
        dump_disk(disk, tmp, owner)
        sync_tree(tmp)
        _swap(name, tmp, folder, disk, FOLDER)
    finally:
        discard(tmp)


def _swap(name: str, new: Path, final: Path, old: Path, kind: str) -> None:
    """Put `new` in place as `final` and remove `old`, so that a crash leaves one whole kind."""
    intent = _intent_path(name)
    intent.write_text(kind + "\n")
    with intent.open("rb") as f:
        os.fsync(f.fileno())
    sync_dir(intent.parent)
    os.rename(new, final)
    sync_dir(final.parent)
    discard(old)
    intent.unlink(missing_ok=True)
    sync_dir(final.parent)


def create(name: str, kind: str = FOLDER, size: int = DEFAULT_SIZE) -> Path:
    """Make the new volume `name` of `kind` (an ext4 disk of `size` bytes); its path."""
    if kind not in KINDS:
        raise UserError(f"volume kind {kind!r}: one of {', '.join(KINDS)}")
    if kind_of(name) is not None:
        raise UserError(f"volume {name} exists; see summon volume inspect {name}")
    with lease(name, exclusive=True, what="create it"):
        if kind == EXT4:
            return ensure_disk(name, size)[0]
        _make_folder(folder_path(name), app_owner())
        return folder_path(name)


def remove(name: str, force: bool = False) -> None:
    """Delete volume `name` (whichever kind); VolumeInUse if an instance holds it, unless
    `force`. The lock file stays: an instance may hold it still."""
    kind = require(name)
    try:
        held = lease(name, exclusive=True, what="remove it")
    except VolumeInUse:
        if not force:
            raise
        held = None  # its users keep the files they hold open until they stop
    try:
        discard(disk_path(name) if kind == EXT4 else folder_path(name))
        _intent_path(name).unlink(missing_ok=True)
    finally:
        if held is not None:
            held.close()


def info(name: str) -> VolumeInfo:
    kind = require(name)
    path = disk_path(name) if kind == EXT4 else folder_path(name)
    capacity = path.stat().st_size if kind == EXT4 else None
    size = path.stat().st_blocks * 512 if kind == EXT4 else tree_size(path)
    return VolumeInfo(name, kind, path, size, capacity, busy(name))


def list_volumes() -> list[tuple[str, Path]]:
    """(name, path) of every volume, by name."""
    folder = volumes_dir()
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.suffix == ".ext4" and p.is_file() and NAME_RE.match(p.stem):
            found.append((p.stem, p))
        elif p.is_dir() and NAME_RE.match(p.name):
            found.append((p.name, p))
    return sorted(found)


# --- helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def held(name: str, what: str) -> Iterator[str]:
    """An exclusive hold on existing volume `name` for a summon volume command; its kind."""
    kind = require(name)
    with lease(name, exclusive=True, what=what):
        yield kind


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
