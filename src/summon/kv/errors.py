"""The errors of summon.kv: those an app meets come from summon.devices, the rest are here.

An app handles Conflict, StoreFull, UnknownCommit and InvalidKey (summon.devices, so that it is
written against the interface); whoever opens a store (the runtime, the CLI) handles the
others, each a KVError whose message names the folder or file and what is wrong with it.
"""

from __future__ import annotations

from summon.devices import Conflict, InvalidKey, StoreFull, UnknownCommit

__all__ = [
    "BundleError",
    "Conflict",
    "CorruptStore",
    "InvalidKey",
    "KVError",
    "StoreClosed",
    "StoreFull",
    "StoreLocked",
    "UnknownCommit",
    "UnsupportedRepository",
]


class KVError(Exception):
    """Something about a store's folder or files, rather than about the app's data."""


class CorruptStore(KVError):
    """A file of the store fails its own checks (bad checksum, missing object, bad format)."""


class UnsupportedRepository(KVError):
    """A Git repository using a feature summon.kv does not read (SHA-256, reftable...)."""


class StoreLocked(KVError):
    """Another writer has the store open; the message names it when it could be found."""


class StoreClosed(ValueError):
    """The store (or transaction) was closed; it is a ValueError, as for a closed file."""


class BundleError(KVError):
    """A file that is not a Git bundle summon.kv can import, or a store it cannot import into."""
