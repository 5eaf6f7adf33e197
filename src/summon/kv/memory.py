"""The in-memory backend: a store's files in a dict, with power cuts and a capacity for tests.

It keeps two states of every file: what the process sees, and what would survive a power
cut (what was synced, replaced atomically, truncated or removed). power_cut() returns a new
backend holding only the latter, as a machine would find its disk after losing power; a
test may then cut a file shorter still, to play a write torn at any byte. With `capacity`
set, a write that would make the files larger than that many bytes raises StoreFull, as a
full volume does; `log` records every mutating call, for replaying a write log.
"""

from __future__ import annotations

import errno

from summon.kv.backend import Backend
from summon.kv.errors import StoreFull, StoreLocked

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    _Listing = list[tuple[str, bool]]


class MemoryBackend(Backend):
    """A store's files in memory. `files` seeds both the visible and the durable state."""

    def __init__(self, files: dict[str, bytes] | None = None, capacity: int | None = None) -> None:
        self.files: dict[str, bytearray] = {p: bytearray(d) for p, d in (files or {}).items()}
        self.durable: dict[str, bytes] = dict(files or {})
        self.capacity = capacity
        self.log: list[tuple[str, str, int, bytes]] = []  # (operation, path, offset/size, data)
        self.folders: set[str] = set()  # folders made empty (others exist by their files)
        self.locked = False
        self.closed = False

    def describe(self) -> str:
        return "memory"

    def power_cut(self) -> MemoryBackend:
        """A new backend with what would be on the disk if the power went now."""
        cut = MemoryBackend(dict(self.durable), self.capacity)
        cut.folders = set(self.folders)
        return cut

    def _room(self, path: str, grows_to: int) -> None:
        if self.capacity is None:
            return
        used = sum(len(d) for p, d in self.files.items() if p != path)
        if used + grows_to > self.capacity:
            raise StoreFull(errno.ENOSPC, f"memory is full (capacity {self.capacity} bytes)")

    def read(self, path: str) -> bytes:
        try:
            return bytes(self.files[path])
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from None

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        try:
            return bytes(self.files[path][offset : offset + size])
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from None

    def listdir(self, path: str) -> _Listing:
        prefix = path.rstrip("/") + "/" if path else ""
        found: dict[str, bool] = {}
        for p in [*self.files, *(f + "/" for f in self.folders)]:
            if p.startswith(prefix):
                name, slash, _ = p[len(prefix) :].partition("/")
                if name:
                    found[name] = found.get(name, False) or bool(slash)
        return sorted(found.items())

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        f = self.files.get(path, bytearray())
        self._room(path, max(len(f), offset + len(data)))
        self.log.append(("write", path, offset, bytes(data)))
        if len(f) < offset:
            f.extend(bytes(offset - len(f)))
        f[offset : offset + len(data)] = data
        self.files[path] = f

    def sync(self, path: str) -> None:
        self.log.append(("sync", path, 0, b""))
        if path in self.files:
            self.durable[path] = bytes(self.files[path])

    def truncate(self, path: str, size: int) -> None:
        self.log.append(("truncate", path, size, b""))
        f = self.files.setdefault(path, bytearray())
        del f[size:]
        self.durable[path] = bytes(f)

    def write_atomic(self, path: str, data: bytes) -> None:
        self._room(path, len(data))
        self.log.append(("replace", path, 0, bytes(data)))
        self.files[path] = bytearray(data)
        self.durable[path] = bytes(data)

    def remove(self, path: str) -> None:
        self.log.append(("remove", path, 0, b""))
        self.files.pop(path, None)
        self.durable.pop(path, None)

    def makedirs(self, path: str) -> None:
        self.folders.add(path)

    def lock(self) -> None:
        if self.locked:
            raise StoreLocked("the memory store is open already; one writer per store")
        self.locked = True

    def close(self) -> None:
        self.locked = False
        self.closed = True
