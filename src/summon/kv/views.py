"""Views of a store: a past commit (read-only, a KV_RO) and a transaction's (read-write).

Both read through the store's object database at a fixed tree, so a view of a commit
never changes, and a transaction sees its base plus its own changes whatever is committed
meanwhile.
"""

from __future__ import annotations

from summon.devices import KV_RO, Transaction
from summon.kv.errors import StoreClosed
from summon.kv.objects import MAX_OBJECT
from summon.kv.tree import key_path

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from summon.devices import Policy

    class Store(Protocol):
        """What views need of a summon.kv.store.Store (named here: store imports views)."""

        def _read(self, root: bytes | None, key: str) -> bytes: ...
        def _exists(self, root: bytes | None, key: str) -> bool: ...
        def _keys(self, root: bytes | None, prefix: str) -> list[str]: ...
        def _commit_transaction(self, tx: StoreTransaction) -> bytes | None: ...

    _Keys = list[str]


def as_value(value: object) -> bytes:
    """`value` as bytes: bytes, bytearray and memoryview are values; text must be encoded.
    At most MAX_OBJECT (1 GiB) bytes: what the store reads back (objects.inflate_exact)."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(
            f"values are bytes, not {type(value).__name__}: encode text first (text.encode())"
        )
    if len(data) > MAX_OBJECT:
        raise ValueError(
            f"a value is at most {MAX_OBJECT} bytes (1 GiB), not {len(data)}: the store could "
            "not read it back; split it over several keys"
        )
    return data


class Snapshot(KV_RO):
    """The store as it was at one commit: KV_RO's methods, and the commit's id."""

    def __init__(self, store: Store, commit: str, root: bytes) -> None:
        self._store = store
        self._root = root
        self.commit = commit

    def get(self, key: str) -> bytes:
        return self._store._read(self._root, key)

    def size(self, key: str) -> int:
        return len(self._store._read(self._root, key))

    def exists(self, key: str) -> bool:
        return self._store._exists(self._root, key)

    def list(self, prefix: str = "") -> _Keys:
        return self._store._keys(self._root, prefix)

    def __repr__(self) -> str:
        return f"<Snapshot of {self.commit[:12]}>"


class StoreTransaction(Transaction):
    """A transaction of a Store (see summon.devices.Transaction)."""

    def __init__(
        self,
        store: Store,
        ref: str,
        base: bytes | None,
        root: bytes | None,
        message: str | None,
        author: str | None,
        policy: Policy,
    ) -> None:
        self._store = store
        self.ref = ref
        self.base_id = base
        self.root = root
        self.message = message
        self.author = author
        self.policy = policy
        self.changes: dict[str, bytes | None] = {}
        self._done = False

    @property
    def base(self) -> str | None:
        return None if self.base_id is None else self.base_id.hex()

    def _open(self) -> None:
        if self._done:
            raise StoreClosed("the transaction has been committed or aborted")

    def get(self, key: str) -> bytes:
        self._open()
        if key in self.changes:
            value = self.changes[key]
            if value is None:
                raise KeyError(key)
            return value
        if self.root is None:
            key_path(key)
            raise KeyError(key)
        return self._store._read(self.root, key)

    def exists(self, key: str) -> bool:
        self._open()
        if key in self.changes:
            return self.changes[key] is not None
        if self.root is None:
            key_path(key)
            return False
        return self._store._exists(self.root, key)

    def list(self, prefix: str = "") -> _Keys:
        self._open()
        keys = set(self._store._keys(self.root, prefix))
        for key, value in self.changes.items():
            if key.startswith(prefix):
                if value is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)

    def set(self, key: str, value: bytes) -> None:
        self._open()
        key_path(key)
        self.changes[key] = as_value(value)

    def delete(self, key: str) -> None:
        if not self.exists(key):
            raise KeyError(key)
        self.changes[key] = None

    def commit(self) -> str | None:
        self._open()
        oid = self._store._commit_transaction(self)
        self._done = True
        return None if oid is None else oid.hex()

    def abort(self) -> None:
        self._done = True
        self.changes = {}

    def __repr__(self) -> str:
        state = "done" if self._done else f"{len(self.changes)} changes"
        return f"<Transaction on {self.ref} from {(self.base or 'nothing')[:12]}, {state}>"
