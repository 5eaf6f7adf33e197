"""Where a store's files live: the Backend interface and the folder backend (a volume's folder).

A store needs only these operations, on '/'-separated paths relative to its folder:
read a whole file or a range, list a folder, write at an offset, flush a file's data
(fdatasync), truncate, replace a file atomically (temporary name, fsync, rename, fsync the
folder), remove, make a folder, and an exclusive lock. They are kept few and plain because
the same folder backend runs in the browser under Pyodide on an IDBFS mount (Emscripten's
FS), which has no mmap, no fork, and no fcntl module: there the lock is a no-op with a
warning.

Every write that meets a full volume (ENOSPC, EDQUOT) raises StoreFull; other OSErrors pass.
The in-memory double, with power cuts and a capacity, is summon.kv.memory.
"""

from __future__ import annotations

import _thread
import errno
import os

from summon.kv.errors import CorruptStore, StoreFull, StoreLocked

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    _Listing = list[tuple[str, bool]]

FULL = (errno.ENOSPC, errno.EDQUOT)
# Where a platform cannot fsync a folder (Emscripten) or lock a file, these are what it says.
UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR)
LOCK_FILE = "summon-kv/lock"

_datasync = getattr(os, "fdatasync", os.fsync)  # fdatasync is missing on some platforms
_advise = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)


class Backend:
    """The file operations of a store. Paths are relative, '/'-separated, never '..'."""

    def describe(self) -> str:
        """A short name for messages: the folder, or "memory"."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """The whole content of `path`; FileNotFoundError if it is missing."""
        raise NotImplementedError

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes of `path` from `offset` (fewer at the end of the file)."""
        raise NotImplementedError

    def listdir(self, path: str) -> _Listing:
        """(name, is_folder) for each entry of the folder `path`; [] if it is missing."""
        raise NotImplementedError

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        """Write `data` at `offset` of `path` (created if missing). Durable only after sync."""
        raise NotImplementedError

    def sync(self, path: str) -> None:
        """Make what write_at wrote to `path` durable (fdatasync)."""
        raise NotImplementedError

    def start_writeback(self, path: str, offset: int, size: int) -> None:
        """Start writing what write_at wrote at `offset` to the disk, without waiting: the
        sync that follows finds it on its way. Only a hint (nothing to start: nothing done).
        Callers give ranges shorter than a page that do not end the file."""

    def truncate(self, path: str, size: int) -> None:
        """Cut `path` to `size` bytes, durably."""
        raise NotImplementedError

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace `path` by `data` durably and atomically: readers see the old or the new
        content, never a mix, whenever the power goes. Makes missing folders."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """Remove the file `path` if it exists."""
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        """Make the folder `path` and those above it, durably, if missing."""
        raise NotImplementedError

    def lock(self) -> None:
        """Take the store's exclusive lock, or raise StoreLocked naming its holder."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the lock and every open file. Safe to repeat."""
        raise NotImplementedError


def full_error(e: OSError, path: str, where: str) -> StoreFull:
    return StoreFull(e.errno, f"{where} is full ({os.strerror(e.errno or 0)}) writing {path}")


class FolderBackend(Backend):
    """The files of a store in a folder of the host (a volume's mount point)."""

    def __init__(self, root: str) -> None:
        self._root = os.path.abspath(root)
        self._fds: dict[str, tuple[int, bool]] = {}  # path -> (fd, opened for writing)
        self._fds_lock = _thread.allocate_lock()
        self._lock_fd = -1

    @property
    def root(self) -> str:
        return self._root

    def describe(self) -> str:
        return self._root

    def _path(self, path: str) -> str:
        # The store's files are the app's: a name from them (a ref in a journal record, a
        # bundle) that leads out of the folder would have the host write or remove files.
        if path.startswith("/") or ".." in path.split("/"):
            raise CorruptStore(f"{self._root}: the path {path[:100]!r} leads out of the store")
        return os.path.join(self._root, path)

    def _fd(self, path: str, create: bool) -> int:
        """A cached descriptor of `path`: read-only unless `create` (then read-write)."""
        cached = self._fds.get(path)
        if cached is not None and (cached[1] or not create):
            return cached[0]
        if create:
            self._makedirs(os.path.dirname(path))
        with self._fds_lock:  # a background flush opens files too
            cached = self._fds.get(path)
            if cached is not None and (cached[1] or not create):
                return cached[0]
            self._forget(path)
            if create:
                fd = os.open(self._path(path), os.O_RDWR | os.O_CREAT, 0o644)
            else:
                fd = os.open(self._path(path), os.O_RDONLY)
            self._fds[path] = (fd, create)
            return fd

    def _forget(self, path: str) -> None:
        """Close the cached descriptor of `path`. Only the thread that writes or removes a
        path closes it, and no other thread reads that path meanwhile (see repo.py)."""
        cached = self._fds.pop(path, None)
        if cached is not None:
            os.close(cached[0])

    def read(self, path: str) -> bytes:
        with open(self._path(path), "rb") as f:
            return f.read()

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        fd = self._fd(path, create=False)
        chunks = []
        while size > 0:
            chunk = _pread(fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def listdir(self, path: str) -> _Listing:
        try:
            with os.scandir(self._path(path)) as it:
                return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        try:
            fd = self._fd(path, create=True)
            view = memoryview(data)
            while view:
                n = _pwrite(fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as e:
            if e.errno in FULL:
                raise full_error(e, path, self._root) from None
            raise

    def sync(self, path: str) -> None:
        try:
            _datasync(self._fd(path, create=True))
        except OSError as e:
            if e.errno in FULL:
                raise full_error(e, path, self._root) from None
            raise

    def start_writeback(self, path: str, offset: int, size: int) -> None:
        """POSIX_FADV_DONTNEED starts the range's writeback on Linux (WB_SYNC_NONE) and then
        drops the clean pages lying wholly inside it: a range shorter than a page that does
        not end the file holds none, so nothing is dropped. A commit's record goes to the
        disk this way while its Git objects are made, and the fdatasync after waits less."""
        if _advise is None or size >= 4096:
            return
        try:
            _advise(self._fd(path, create=False), offset, size, _DONTNEED)
        except OSError:
            pass  # a hint: refused (a seccomp profile without it) or unsupported, no matter

    def truncate(self, path: str, size: int) -> None:
        fd = self._fd(path, create=True)
        os.ftruncate(fd, size)
        os.fsync(fd)

    def write_atomic(self, path: str, data: bytes) -> None:
        self._forget(path)
        final = self._path(path)
        temp = final + ".lock"  # Git's own temporary suffix: git skips such names as refs
        self._makedirs(os.path.dirname(path))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
        except OSError as e:
            try:
                os.unlink(temp)
            except OSError:
                pass
            if e.errno in FULL:
                raise full_error(e, path, self._root) from None
            raise
        _sync_folder(os.path.dirname(final))

    def remove(self, path: str) -> None:
        self._forget(path)
        try:
            os.unlink(self._path(path))
        except FileNotFoundError:
            pass

    def makedirs(self, path: str) -> None:
        self._makedirs(path)

    def _makedirs(self, folder: str) -> None:
        if not folder or os.path.isdir(self._path(folder)):
            return
        self._makedirs(os.path.dirname(folder))
        try:
            os.mkdir(self._path(folder), 0o755)
        except FileExistsError:
            return
        except OSError as e:
            if e.errno in FULL:
                raise full_error(e, folder, self._root) from None
            raise
        _sync_folder(os.path.dirname(self._path(folder)))

    def lock(self) -> None:
        self._makedirs(os.path.dirname(LOCK_FILE))
        fd = os.open(self._path(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl  # missing under Emscripten (Pyodide)
        except ImportError:
            _no_lock(self._root, "this platform has no fcntl")
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                by = f" by {holder}" if holder else ""
                raise StoreLocked(
                    f"the store {self._root} is open{by}; one writer per store: stop it first"
                ) from None
            if e.errno not in UNSUPPORTED:
                os.close(fd)
                raise
            _no_lock(self._root, f"flock says {os.strerror(e.errno or 0)}")
        self._lock_fd = fd
        # Who holds it, for the message a second opener gets. Not synced: it is advice.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        except OSError:
            pass

    def close(self) -> None:
        for path in list(self._fds):
            self._forget(path)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = -1


def _no_lock(root: str, why: str) -> None:
    import warnings

    warnings.warn(
        f"{root}: no exclusive lock ({why}); make sure one process at a time opens the store",
        RuntimeWarning,
        stacklevel=4,
    )


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def _sync_folder(folder: str) -> None:
    """fsync a folder, so a rename or a new file in it survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        if e.errno in UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
    finally:
        os.close(fd)
