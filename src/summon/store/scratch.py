"""The store's temporaries: one folder per process under .tmp, locked while that process lives.

A build, a pull or a rootfs extraction writes its temporaries (blobs on their way in, a build's
site folder, an erofs image) into the folder of the process doing the work. The process holds
an flock on that folder until it exits, and the kernel drops the lock when it dies however it
dies (kill -9 included). So a cleaner (`summon rmi`, a gc, the next build or pull) removes what
dead processes left and never the work in progress of a live one.
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

_held: dict[tuple[int, str], Path] = {}
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


def clear_stale(tmp_root: Path) -> None:
    """Remove what no live process holds under TMP_ROOT: the folders of dead processes, and
    loose files (earlier versions wrote temporaries straight into it)."""
    try:
        entries = list(tmp_root.iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            if _in_use(path):
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # gone already: nothing to do
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
    with contextlib.suppress(OSError):
        os.close(fd)
