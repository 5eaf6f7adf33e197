"""Where summon keeps its files on the host, after the XDG base directory spec."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / "summon"


def data_dir() -> Path:
    """Long-lived data: the image store."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_dir() -> Path:
    """The user's settings (config.toml)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def cache_dir() -> Path:
    """Things summon can make again: unpacked root filesystems, pip downloads, kernels."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    """Per-instance state: runtime bundles, logs."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def store_dir() -> Path:
    # Empty is unset, as an XDG variable's: Path("") is the current folder, and
    # `SUMMON_STORE= summon images` made a store wherever the user stood.
    value = os.environ.get("SUMMON_STORE", "")
    return Path(value) if value else data_dir() / "store"


class Folder(NamedTuple):
    """One of summon's folders on the host, and the setting that moves it."""

    what: str  # "its state", as in "summon keeps its state in ..."
    path: Path
    variable: str
    base: Path  # the setting's folder: path, or the XDG folder path is made in


def folders() -> list[Folder]:
    state, cache, config = state_dir(), cache_dir(), config_dir()
    return [
        Folder("its images", store_dir(), "SUMMON_STORE", store_dir()),
        Folder("its state", state, "XDG_STATE_HOME", state.parent),
        Folder("its cache", cache, "XDG_CACHE_HOME", cache.parent),
        Folder("its settings", config, "XDG_CONFIG_HOME", config.parent),
    ]


def folder_of(name: str | os.PathLike[str]) -> Folder | None:
    """The summon folder a file is in, or which it is on the way to (a failed mkdir -p)."""
    p = Path(os.path.abspath(name))
    for folder in folders():
        within = p == folder.base or folder.base in p.parents
        if within and (p == folder.path or folder.path in p.parents or p in folder.path.parents):
            return folder
    return None


# What frees room in each folder, said after "free some space there".
_FREEING = {
    "SUMMON_STORE": ": summon rmi --dangling removes the images no tag names",
    "XDG_CACHE_HOME": ": everything in {path} can go (summon makes it again when needed)",
}
NO_SPACE = frozenset((errno.ENOSPC, errno.EDQUOT))


def no_space_line(folder: Folder, strerror: str) -> str:
    """One line for a full disk under one of summon's folders: which, and what to do. The
    store's as Store.disk_full_said words it (moving SUMMON_STORE would leave its images)."""
    freeing = _FREEING.get(folder.variable, "").format(path=folder.path)
    if folder.variable == "SUMMON_STORE":
        return (
            f"no space left on the disk of the image store {folder.path} ({strerror}); free "
            f"some space there{freeing}"
        )
    whose = "summon's " + folder.what.removeprefix("its ")  # summon's cache
    return (
        f"no space left on the disk of {whose} {folder.path} ({strerror}); free some "
        f"space there{freeing}, or set {folder.variable} to a folder on a disk with room"
    )


@contextlib.contextmanager
def no_space_said(folder: Path) -> Iterator[None]:
    """A full disk under folder (one of summon's, or within one) as no_space_line's UserError:
    a write's failure names no file ("No space left on device", and no more)."""
    from summon.errors import UserError

    try:
        yield
    except OSError as e:
        known = folder_of(folder)
        if e.errno not in NO_SPACE or known is None:
            raise
        raise UserError(no_space_line(known, e.strerror or os.strerror(e.errno or 0))) from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path (made if missing) for the block: one of summon's
    processes at a time in what it guards (a cache's folder, a kernel build)."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
