"""Images unpacked into folders (the unix target's root, the build's trial runs), and their
removal once no image needs them.

Each unpacked root is `<cache>/rootfs/<layer digest>-<random>`, used again by every store
whose image has that layer, and `<folder>.stores` beside it lists those stores. Before the
list, nothing removed a folder: `summon rmi` left it, a store deleted by hand left it, and a
host that built for a while held gigabytes of them (1.6 GB after one test session here).
sweep(), at every `summon rmi`, removes a folder when each store that used it is gone or no
longer reaches its layer, and no process runs from it (its cwd, executable or root inside).
A folder without a list (unpacked by an older summon) is not ours to judge and stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import CorruptBlob, UserError
from summon.store import rootfs_artifact
from summon.store.layout import Descriptor, Store, atomic_write
from summon.store.rootfs_artifact import Entry

STORES_SUFFIX = ".stores"
# Leftovers of an unpack or a removal cut short (.unpack-*, .stale-*): one on its way takes
# seconds, so one this old is nobody's.
LEFTOVER_SECONDS = 3600.0


def cache() -> Path:
    return paths.cache_dir() / "rootfs"


def unpack(store: Store, layer: Descriptor, files: Descriptor) -> Path:
    """The layer unpacked into the cache, as the file list `files` says it must be.

    A folder unpacked before is used again only if it still matches the list; else it is
    set aside (with a warning naming the first difference) and the layer unpacked afresh
    into a new folder, which a running instance of the old one does not notice. Either way
    the store is added to the folder's list of users.
    """
    base = cache()
    with paths.no_space_said(base):  # (a full cache: extraction's writes name no file)
        folder = _unpack(store, layer, files, base)
        _note_user(folder, store)
        return folder


def _unpack(store: Store, layer: Descriptor, files: Descriptor, base: Path) -> Path:
    entries: list[Entry] = store.read_json(files).get("entries") or []
    prefix = layer.digest.removeprefix("sha256:") + "-"
    with contextlib.suppress(FileNotFoundError):
        for folder in sorted(base.iterdir(), key=_age):
            if not folder.name.startswith(prefix) or not folder.is_dir():
                continue
            difference = rootfs_artifact.tree_difference(folder, entries)
            if difference is None:
                # The folder is what the image says; the layer is checked too, so a damaged
                # store shows now, not at the next push or unpack (about 10 ms for 5 MB).
                store.verify(layer)
                return folder
            print(
                f"summon: warning: the unpacked root filesystem {folder} differs from its image "
                f"({difference}); not using it, unpacking the image again",
                file=sys.stderr,
                flush=True,
            )
            _discard(folder)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".unpack-"))
    try:
        root = tmp / "root"
        root.mkdir(mode=0o755)
        from summon.store import layer_rules  # tarfile: not on every run's path

        layer_rules.extract(store, layer, root)
        difference = rootfs_artifact.tree_difference(root, entries)
        if difference is not None:
            raise CorruptBlob(
                f"layer {layer.digest} does not match its image's file list: {difference}"
            )
        dest = base / (prefix + os.urandom(6).hex())
        root.chmod(0o755)
        try:
            os.rename(root, dest)
        except OSError as e:
            raise UserError(f"cannot unpack the image into {dest}: {e.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _age(folder: Path) -> float:
    """Newest first: the folder a recent run used is the one most likely intact."""
    try:
        return -folder.stat().st_mtime
    except OSError:
        return 0.0


def _discard(folder: Path) -> None:
    """Rename a folder out of the way (an instance may still run from it), then remove it."""
    aside = folder.with_name(f".stale-{folder.name}-{os.urandom(4).hex()}")
    try:
        os.rename(folder, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _note_user(folder: Path, store: Store) -> None:
    """Add store to folder's list of users (once; atomically, under the cache's lock)."""
    user = str(store.root.resolve())
    sidecar = folder.with_name(folder.name + STORES_SUFFIX)
    if user in _users(sidecar):  # the common case: a run of an image used before
        return
    with paths.locked(folder.parent / ".lock"):
        users = _users(sidecar)
        if user in users:
            return
        atomic_write(sidecar, json.dumps(sorted({*users, user})).encode())


def _users(sidecar: Path) -> list[str]:
    try:
        doc: Any = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return []
    return [u for u in doc if isinstance(u, str)] if isinstance(doc, list) else []


def sweep(base: Path | None = None) -> int:
    """Remove the unpacked roots no store needs and no process uses; return how many went."""
    base = cache() if base is None else base
    try:
        folders = sorted(base.iterdir())
    except OSError:
        return 0
    reached: dict[str, set[str] | None] = {}
    running: set[str] | None = None
    gone = 0
    with paths.locked(base / ".lock"):
        for folder in folders:
            name = folder.name
            if name.startswith((".unpack-", ".stale-")) or (
                name.startswith(".") and STORES_SUFFIX + "-" in name  # atomic_write's
            ):
                _remove_leftover(folder)
                continue
            if name.endswith(STORES_SUFFIX):
                if not folder.with_name(name.removesuffix(STORES_SUFFIX)).exists():
                    with contextlib.suppress(OSError):
                        folder.unlink()  # its root was set aside (it differed from its image)
                continue
            if name.startswith(".") or "-" not in name:
                continue
            sidecar = folder.with_name(name + STORES_SUFFIX)
            users = _users(sidecar)
            if not users or not folder.is_dir():
                continue  # an older summon's, or not a root: not ours to judge
            layer = "sha256:" + name.partition("-")[0]
            if any(_needs(user, layer, reached) for user in users):
                continue
            if running is None:
                running = _running_paths()
            inside = str(folder) + os.sep
            if any(p == str(folder) or p.startswith(inside) for p in running):
                continue
            _discard(folder)
            with contextlib.suppress(OSError):
                sidecar.unlink()
            gone += 1
    return gone


def _needs(user: str, layer: str, reached: dict[str, set[str] | None]) -> bool:
    """Whether the store at user still keeps layer (True when that cannot be told). No
    store there any more (no index.json and oci-layout): it keeps nothing. Opening one is
    read-only (rootfs_artifact.store_keeps): Store() would make a half-deleted store anew."""
    if user not in reached:
        root = Path(user)
        if not all((root / part).is_file() for part in ("oci-layout", "index.json")):
            reached[user] = set()
        else:
            reached[user] = rootfs_artifact.store_keeps(root)
    held = reached[user]
    return held is None or layer in held


def _running_paths() -> set[str]:
    """Where every process this user may look at works, runs from, or is rooted."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            for link in ("cwd", "exe", "root"):
                with contextlib.suppress(OSError):
                    found.add(os.readlink(f"/proc/{pid}/{link}").removesuffix(" (deleted)"))
    return found


def _remove_leftover(path: Path) -> None:
    try:
        if time.time() - path.lstat().st_mtime < LEFTOVER_SECONDS:
            return
    except OSError:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
