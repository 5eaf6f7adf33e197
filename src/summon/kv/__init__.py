"""summon.kv: the KV_RW device, a key/value store whose history is a real Git repository.

    from summon import kv

    store = kv.open_folder("/data/todo")         # a bare Git repository (made if empty)
    store.set("tasks/1", b'{"title": "milk"}', message="add milk")
    with store.transaction("tidy up", author="Ada <ada@example.org>") as tx:
        tx.delete("tasks/1")
        tx.set("done/1", b'{"title": "milk"}')
    for commit in store.history("tasks/1"):
        print(commit.id, commit.message)
    store.close()                                 # `git log` in /data/todo shows it all

It is image-side code: the stdlib only (zlib, hashlib), and no typing, json or re at import
time. docs/storage.md describes the design (journal, batches, Git layout, merges, the
durability promise) and what of Git it reads and writes.
"""

from __future__ import annotations

import time

from summon.devices import Commit, Conflict, InvalidKey, StoreFull, Transaction, UnknownCommit
from summon.kv.backend import Backend, FolderBackend
from summon.kv.errors import (
    BundleError,
    CorruptStore,
    KVError,
    StoreClosed,
    StoreLocked,
    UnsupportedRepository,
)
from summon.kv.memory import MemoryBackend
from summon.kv.merge import POLICIES, merge_json
from summon.kv.store import DEFAULT_AUTHOR, Store
from summon.kv.views import Snapshot

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DEFAULT_AUTHOR",
    "POLICIES",
    "Backend",
    "BundleError",
    "Commit",
    "Conflict",
    "CorruptStore",
    "FolderBackend",
    "InvalidKey",
    "KVError",
    "MemoryBackend",
    "Snapshot",
    "Store",
    "StoreClosed",
    "StoreFull",
    "StoreLocked",
    "Transaction",
    "UnknownCommit",
    "UnsupportedRepository",
    "export_bundle",
    "import_bundle",
    "merge_json",
    "open_folder",
    "open_memory",
]


def open_folder(
    path: str,
    *,
    author: str = DEFAULT_AUTHOR,
    batch_records: int = 1000,
    batch_bytes: int = 8 << 20,
    batch_seconds: float = 5.0,
    gc_packs: int = 50,
    on_durable: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
    background: bool = True,
) -> Store:
    """Open the store in the folder `path` (a bare Git repository; an empty or missing
    folder becomes a new store). The options are Store's. Raises StoreLocked if another
    writer has it open, UnsupportedRepository for a repository it cannot read, CorruptStore
    for files failing their checks."""
    import os

    os.makedirs(path, exist_ok=True)
    return Store(
        FolderBackend(path),
        author=author,
        batch_records=batch_records,
        batch_bytes=batch_bytes,
        batch_seconds=batch_seconds,
        gc_packs=gc_packs,
        on_durable=on_durable,
        clock=clock,
        background=background,
    )


def open_memory(backend: MemoryBackend | None = None, **options: Any) -> Store:
    """Open a store held in memory (a new one, or `backend`'s files). For tests, so batches
    are flushed inline unless background=True: file operations come in a set order."""
    options.setdefault("background", False)
    return Store(backend if backend is not None else MemoryBackend(), **options)


def export_bundle(folder: str, path: str) -> None:
    """Write the store in `folder` as a Git bundle (v2) at `path`: `git clone path` gives its
    history back, and import_bundle a store. Opens the store, so it must not be in use."""
    with open_folder(folder) as store:
        store.export_bundle(path)


def import_bundle(path: str, folder: str) -> None:
    """Make the store in `folder` (empty, or a store with no commit) from the bundle `path`."""
    import os

    from summon.kv import bundle

    os.makedirs(folder, exist_ok=True)
    bundle.import_bundle(path, folder)
