"""Small read-only tmpfs mounts of files made per instance (its secrets, its /etc files).

A file bound into a sandbox from the host's disk shows its host path in the instance's
/proc/self/mountinfo; one on a tmpfs of its own shows only "/" and its name, and lives in RAM
only. mount_files() mounts a size-capped tmpfs (nosuid, nodev, noexec), writes each file
whole (temporary name, rename), then remounts it read-only; unmount() undoes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from summon.errors import UserError

if TYPE_CHECKING:
    import ctypes

SLACK = 64 * 1024  # room for the inodes and the temporary names
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MNT_DETACH = 2


@functools.cache
def _libc() -> ctypes.CDLL:
    """libc, loaded at the first mount: ctypes costs ~3 ms to import, and every `summon run`
    imports this module where most mount nothing."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def write_files(folder: Path, contents: dict[str, bytes], mode: int = 0o444) -> None:
    """Write each file whole into folder (temporary name, rename), with mode."""
    for name, data in contents.items():
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, folder / name)


def mount_files(
    folder: Path, contents: dict[str, bytes], *, what: str, limit: int | None = None
) -> None:
    """A tmpfs at folder holding contents (name -> bytes, mode 0444), then made read-only.

    what names the files in errors ("the secrets"); limit caps the tmpfs's size."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    size = sum(len(v) for v in contents.values()) + SLACK
    if limit is not None:
        size = min(size, limit)
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    options = f"size={size},mode=0755".encode()
    if _libc().mount(b"tmpfs", os.fsencode(folder), b"tmpfs", flags, options) != 0:
        err = _errno()
        raise UserError(f"cannot mount a tmpfs for {what} at {folder}: {os.strerror(err)}")
    try:
        write_files(folder, contents)
        remount = flags | _MS_REMOUNT | _MS_RDONLY
        if _libc().mount(b"tmpfs", os.fsencode(folder), b"tmpfs", remount, options) != 0:
            err = _errno()
            raise UserError(f"cannot make the tmpfs of {what} read-only: {os.strerror(err)}")
    except BaseException:
        unmount(folder)
        raise


def unmount(folder: Path) -> None:
    """Undo mount_files (never raises; the folder goes too)."""
    with contextlib.suppress(OSError):
        _libc().umount2(os.fsencode(folder), _MNT_DETACH)
        folder.rmdir()
