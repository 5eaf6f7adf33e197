"""The KV_RW stores in a named volume: found, exported as Git bundles, imported from them.

`summon volume export NAME -o FILE` writes the history of a store in volume NAME as a Git
bundle (`git clone FILE` gives it back); `summon volume import NAME FILE` makes a new volume
holding a store made from one. A store is a folder holding a Git repository that summon.kv
keeps (a bare repository: HEAD, objects/, refs/).

An ext4 volume is read without a mount: its files are copied out by debugfs, run as the
volume's owner (volume_disks.dump_disk), into a scratch folder beside it, and the export
reads that copy. Everything here runs with the volume held exclusively: no instance writes
it meanwhile. The files were written by the app, so they are checked before summon (as
root) opens them: a store must hold only folders and regular files (a symbolic link could
lead the export to a host file).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from summon.errors import UserError
from summon.targets import volumes
from summon.targets.volume_disks import discard, dump_disk, give_to

if TYPE_CHECKING:
    from summon.targets.base import RunSpec, Volume

# The files that make a folder a Git repository summon.kv opens (a bare one).
_REPOSITORY = ("HEAD", "objects", "refs")


def find_stores(folder: Path) -> list[str]:
    """The stores below `folder`, as '/'-separated paths relative to it, sorted. A store's
    own folders are not searched; symbolic links are not followed."""
    found = []
    for top, dirs, _files in os.walk(folder, followlinks=False):
        here = Path(top)
        if all((here / part).exists() for part in _REPOSITORY) and here != folder:
            found.append(here.relative_to(folder).as_posix())
            dirs.clear()
        dirs.sort()
    return sorted(found)


def check_plain(folder: Path) -> None:
    """UserError unless everything below `folder` is a folder or a regular file."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        for entry in (*dirs, *files):
            path = Path(top) / entry
            mode = path.lstat().st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UserError(
                    f"{path} is not a folder or a regular file (a symbolic link or a device); "
                    "a store holds none: remove it, then export again"
                )


def export(name: str, dest: Path, store: str | None = None) -> str:
    """Write the store `store` (default: the only one) of volume `name` as a Git bundle at
    `dest`; return the store's path in the volume."""
    with volumes.held(name, "export it") as kind:
        if kind == volumes.FOLDER:
            return _export_from(volumes.folder_path(name), name, dest, store)
        scratch = volumes.volumes_dir() / f".{name}.export-{os.getpid()}"
        discard(scratch)
        try:
            scratch.mkdir(mode=0o700)
            owner = volumes.app_owner()
            if owner is not None:
                os.chown(scratch, *owner)
            dump_disk(volumes.disk_path(name), scratch, owner)
            return _export_from(scratch, name, dest, store)
        finally:
            discard(scratch)


def _export_from(folder: Path, name: str, dest: Path, store: str | None) -> str:
    from summon import kv

    stores = find_stores(folder)
    if store is None:
        if len(stores) != 1:
            found = ", ".join(stores) if stores else "none"
            raise UserError(
                f"volume {name} holds {len(stores)} stores ({found}); name one with --store"
            )
        store = stores[0]
    elif store.strip("/") not in stores:
        found = ", ".join(stores) if stores else "none"
        raise UserError(f"volume {name} has no store {store!r} (its stores: {found})")
    store = store.strip("/")
    check_plain(folder / store)
    if not dest.parent.is_dir():
        raise UserError(f"-o {dest}: no folder {dest.parent}")
    try:
        kv.export_bundle(str(folder / store), str(dest))
    except kv.StoreFull as e:
        raise UserError(f"volume {name}, store {store}: {e.strerror}") from None
    except kv.KVError as e:
        raise UserError(f"volume {name}, store {store}: {e}") from None
    except OSError as e:
        # The bundle goes to a temporary name beside dest first: its errors named that
        # file (never the user's), or none (a full disk at the write).
        said = _unwritable(e, dest.parent)
        raise UserError(f"-o {dest}: {said or e.strerror or e}") from None
    return store


def _unwritable(e: OSError, folder: Path) -> str | None:
    """What a full or read-only folder says, naming it, or None for another error."""
    why = os.strerror(e.errno) if e.errno else str(e)  # (kv.StoreFull's strerror names a file)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left in {folder} ({why})"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write in {folder} ({why})"
    return None


def import_bundle(name: str, bundle: Path, store: str) -> None:
    """Make the new volume `name` (a folder) holding the store `store` made from `bundle`."""
    from summon import kv

    volumes.check_name(name)  # before the store, whose name defaults to it
    if not bundle.is_file():
        raise UserError(f"{bundle}: no such file")
    parts = store.strip("/").split("/")
    if not store.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"--store {store!r}: give a folder in the volume, such as todo")
    if volumes.kind_of(name) is not None:
        raise UserError(f"volume {name} exists; import into a new name, or remove it first")
    with volumes.lease(name, exclusive=True, what="import into it"):
        final = volumes.folder_path(name)
        tmp = final.with_name(f".{name}.import-{os.getpid()}")
        discard(tmp)
        try:
            try:
                tmp.mkdir(mode=0o755)
            except OSError as e:
                said = _unwritable(e, final.parent)
                raise UserError(f"volume {name}: {said or e.strerror}") from None
            try:
                kv.import_bundle(str(bundle), str(tmp / "/".join(parts)))
            except kv.StoreFull as e:
                # It named the temporary folder the store was being made in.
                raise UserError(f"volume {name}: {_unwritable(e, final.parent)}") from None
            except kv.KVError as e:
                said = str(e)  # a bundle's own errors name it already
                raise UserError(said if str(bundle) in said else f"{bundle}: {said}") from None
            owner = volumes.app_owner()
            if owner is not None:
                give_to(tmp, owner)
            if volumes.kind_of(name) is not None:
                raise UserError(f"volume {name} was made meanwhile; import into a new name")
            os.rename(tmp, final)
        finally:
            discard(tmp)


def _declared(spec: RunSpec) -> list[tuple[Volume, Path, str, str]]:
    """The image's KV_RW stores in spec's folder volumes: (volume, its folder on the host,
    the store's path in the image, its path in the volume). A volume that is an ext4 disk
    is not looked into (its lease is exclusive)."""
    found = []
    stores = [str(s).rstrip("/") for s in (spec.app_config.get("stores") or {}).values()]
    for vol in spec.volumes:
        if vol.is_bind:
            host = Path(os.path.realpath(vol.name))
        elif volumes.kind_of(vol.name) == volumes.FOLDER:
            host = volumes.folder_path(vol.name)
        else:
            continue
        top = vol.path.rstrip("/")
        for store in stores:
            if store == top or store.startswith(top + "/"):
                found.append((vol, host, store, store[len(top) :].strip("/")))
    return found


def open_stores(spec: RunSpec) -> list[tuple[Volume, str]]:
    """The image's KV_RW stores in spec's folder volumes that some process has open now (its
    lock held), each with the volume it is in: a second writer's app would only fail at its
    start."""
    from summon.kv.backend import LOCK_FILE

    return [
        (vol, store)
        for vol, host, store, inside in _declared(spec)
        if _locked(host / inside / LOCK_FILE)
    ]


def misplaced_stores(spec: RunSpec) -> list[str]:
    """Warnings for stores of the image missing from a volume that holds other stores: the
    app would start an empty one beside them. `summon volume import NAME FILE` puts the store
    at NAME unless told --store, so an exported volume imported under a new name held its
    data where the app never looked."""
    said = []
    for vol, host, store, inside in _declared(spec):
        if not host.is_dir() or (host / inside).exists():
            continue
        if others := find_stores(host):
            said.append(
                f"warning: -v {vol}: the volume holds the store(s) {', '.join(others)} but not "
                f"{inside}, where the image keeps its store {store}: the app starts a new, "
                f"empty one; if {others[0]} is its data, export it and import it again with "
                f"`summon volume import NAME FILE --store {inside}`"
            )
    return said


def _locked(path: Path) -> bool:
    """Whether some process holds the flock of the (app-written) lock file at path; a link
    there is not followed, nor anything but a regular file locked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # none: nobody has opened the store yet
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # and with it the lock taken for the test
