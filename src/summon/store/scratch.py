"""The store's temporaries: one folder per process under .tmp, locked while that process lives.

A build, a pull or a rootfs extraction writes its temporaries (blobs on their way in, a build's
site folder, an erofs image) into the folder of the process doing the work. The process holds
an flock on that folder until it exits, and the kernel drops the lock when it dies however it
dies (kill -9 included). So a cleaner (`summon rmi`, a gc, the next build or pull) removes what
dead processes left and never the work in progress of a live one.

Blobs a process put in the store but has not tagged yet (a build's layer, a pull's blobs before
the tag goes in) are unreachable for a while. The process holds a lease on each, a line in
`<its folder>.lease` written under the store's lock before the blob goes in, and a gc keeps
every blob a live process holds (containerd's leases, in one file per process).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

LEASE = ".lease"

_held: dict[tuple[int, str], Path] = {}
_leased: dict[Path, set[str]] = {}
_mutex = threading.Lock()


def process_dir(tmp_root: Path, store_lock: Callable[[], AbstractContextManager[None]]) -> Path:
    """This process's folder under TMP_ROOT, made (and locked) on first use.

    It is made under STORE_LOCK, the lock clear_stale() runs under, so no cleaner can see it
    between its creation and its lock; what dead processes left goes first.
    """
    key = (os.getpid(), str(tmp_root))
    with _mutex:
        path = _held.get(key)
        if path is not None and path.is_dir():
            return path
        with store_lock():
            tmp_root.mkdir(exist_ok=True)
            clear_stale(tmp_root)
            path = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"p{os.getpid()}-"))
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = path
        atexit.register(_release, path, fd, os.getpid())
        return path


def own_dir(tmp_root: Path) -> Path | None:
    """This process's folder under TMP_ROOT, if it has made one."""
    with _mutex:
        return _held.get((os.getpid(), str(tmp_root)))


def lease(folder: Path, digest: str) -> None:
    """Hold DIGEST for this process (FOLDER is its own): a gc elsewhere keeps the blob.

    Call it under the store's lock, before the blob goes in or is found there.
    """
    with _mutex:
        held = _leased.setdefault(folder, set())
        if digest in held:
            return
        with open(f"{folder}{LEASE}", "a", encoding="ascii") as f:
            f.write(digest + "\n")
        held.add(digest)


def leased(tmp_root: Path, own: Path | None) -> set[str]:
    """The digests live processes other than this one (own: its folder) hold.

    Call it under the store's lock, after listing the blobs it may remove.
    """
    out: set[str] = set()
    for path in tmp_root.glob(f"*{LEASE}"):
        folder = path.with_name(path.name.removesuffix(LEASE))
        if folder == own or not folder.is_dir() or not _in_use(folder):
            continue
        with contextlib.suppress(FileNotFoundError):
            out.update(line for line in path.read_text(encoding="ascii").split() if line)
    return out


def clear_stale(tmp_root: Path) -> None:
    """Remove what no live process holds under TMP_ROOT: the folders (and leases) of dead
    processes, and loose files (earlier versions wrote temporaries straight into it)."""
    try:
        entries = list(tmp_root.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        if path.name.endswith(LEASE) and path.is_file():
            if not _in_use(path.with_name(path.name.removesuffix(LEASE))):
                path.unlink(missing_ok=True)
        elif path.is_dir() and not path.is_symlink():
            if _in_use(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
            Path(f"{path}{LEASE}").unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # gone already
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # (closing drops the lock we may have taken)
    return False


def _release(path: Path, fd: int, pid: int) -> None:
    """At exit: remove this process's folder (a forked child leaves its parent's alone)."""
    if os.getpid() != pid:
        return
    shutil.rmtree(path, ignore_errors=True)
    Path(f"{path}{LEASE}").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        os.close(fd)
