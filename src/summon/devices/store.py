"""The writable store device: KV_RW, its transactions and commits, and its errors.

Imported by apps that use it (through summon.devices) and by summon.kv, its implementation.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import TypeAlias

    from summon.devices.core import KV_RO

    _Keys = list[str]
    # The callable a merge policy may be: (key, base, current, incoming) -> merged value, each
    # value None where the key has none; returning None deletes the key.
    MergeFunction: TypeAlias = Callable[
        [str, bytes | None, bytes | None, bytes | None], bytes | None
    ]
    # "fail", "last-writer", "json", or a MergeFunction.
    Policy: TypeAlias = str | MergeFunction
    _Commits: TypeAlias = "list[Commit]"


class Conflict(Exception):
    """Two changes met on the same keys and the merge policy could not (or would not) merge them.

    Raised by a transaction's commit or by KV_RW.merge under policy "fail", and by a merge
    function (such as the "json" policy's) that meets values it cannot combine. Nothing was
    committed. `keys` names the conflicting keys, sorted.
    """

    def __init__(self, keys: _Keys, detail: str = "") -> None:
        self.keys = sorted(keys)
        shown = ", ".join(repr(k) for k in self.keys[:10])
        more = f" and {len(self.keys) - 10} more" if len(self.keys) > 10 else ""
        message = f"conflicting changes to {shown}{more}"
        super().__init__(f"{message}: {detail}" if detail else message)


class StoreFull(OSError):
    """The store's volume is full (ENOSPC) or its quota is spent (EDQUOT).

    The commit that met it was not made, and everything committed before stays readable:
    free space (delete keys, or grow the volume) and try again. `errno` is the errno seen.
    """


class UnknownCommit(KeyError):
    """A commit id or branch name the store does not hold (a KeyError, like a missing key)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Commit:
    """One commit of a KV_RW store's history, value by value:

    - id: the commit's Git id, 40 hexadecimal digits (what `git log` prints);
    - message: the commit message, without the newline Git stores after it;
    - author: "Name <email>" as given to the commit (the email may be empty: "Name <>");
    - time: when it was made, whole seconds since 1970-01-01 UTC;
    - parents: the ids of the commits it follows: none for the first commit, two for a merge.
    """

    __slots__ = ("author", "id", "message", "parents", "time")

    def __init__(
        self, id: str, message: str, author: str, time: int, parents: tuple[str, ...]
    ) -> None:
        self.id = id
        self.message = message
        self.author = author
        self.time = time
        self.parents = parents

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Commit):
            return NotImplemented
        return (self.id, self.message, self.author, self.time, self.parents) == (
            other.id,
            other.message,
            other.author,
            other.time,
            other.parents,
        )

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Commit({self.id[:12]}, {self.message!r}, {self.author!r}, {self.time})"


class Transaction:
    """Changes to several keys of a KV_RW store, committed together or not at all.

    A transaction reads the store as it was when the transaction began (its `base` commit)
    plus its own changes; nothing is visible to others until commit. It holds no lock: other
    transactions, in other tasks, may commit meanwhile; commit() then merges three ways (the
    base, the store's current state, this transaction's changes) under the transaction's
    policy. So a transaction may stay open across `await`s.

    Usable as `with` or `async with`: leaving the block normally commits, leaving it by an
    exception aborts. Keys follow KV_RO's rules (InvalidKey otherwise).
    """

    @property
    def base(self) -> str | None:
        """The id of the commit the transaction reads from; None on a store with no commit."""
        raise NotImplementedError

    message: str | None
    """The commit message; None makes one up from the keys changed ("set a, delete b")."""

    author: str | None
    """The author, "Name <email>"; None takes the store's default author."""

    policy: Policy
    """The conflict policy commit() merges with (see KV_RW.transaction); may be changed
    before committing again after a Conflict."""

    def get(self, key: str) -> bytes:
        """Return the value of `key` as this transaction sees it; KeyError if there is none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Return whether `key` has a value as this transaction sees it."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> _Keys:
        """Return every key starting with `prefix` as this transaction sees it, sorted."""
        raise NotImplementedError

    def set(self, key: str, value: bytes) -> None:
        """Give `key` the value `value` (bytes) when the transaction commits."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove `key` when the transaction commits; KeyError if it has no value now."""
        raise NotImplementedError

    def commit(self) -> str | None:
        """Commit the changes as one commit on the store's current branch; return its id.

        Durable when it returns (see KV_RW). With no change, commits nothing and returns the
        current head. Raises Conflict (nothing committed) when the store changed the same keys
        since `base` and the policy says so; StoreFull when the volume is full: after either
        the transaction stays open, to be changed (or given another policy) and committed
        again, or aborted. A transaction commits at most once; once committed or aborted,
        every method raises ValueError. Commits go to the branch current at begin.
        """
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the changes. Safe to repeat, and after commit (then it does nothing)."""
        raise NotImplementedError

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class KV_RW:
    """A writable key/value store whose history is a Git repository.

    Keys are '/'-separated paths as for KV_RO ("tasks/42"); values are bytes. Every change is
    a commit, with a message and an author, on the store's current branch: the Git repository
    in the store's folder shows it to `git log` and `git show`, a key as a file at its path.

    Durability: a method that commits returns once the commit is durable on the volume (it
    survives a power cut from then on); it raises StoreFull, with nothing committed, when the
    volume is full. Methods are synchronous: called from async code they hold the event loop
    for one disk flush (about a millisecond on an SSD); transactions hold no lock between
    awaits.

    Errors: InvalidKey (a KeyError) for a malformed key; KeyError for a missing one;
    UnknownCommit (a KeyError) for a commit id or branch the store does not have; ValueError
    for a malformed message, author or branch name.
    """

    def get(self, key: str) -> bytes:
        """Return the current value of `key`; raise KeyError if there is none."""
        raise NotImplementedError

    def size(self, key: str) -> int:
        """Return the length in bytes of the value of `key`; raise KeyError if there is none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Return whether `key` has a value."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> _Keys:
        """Return every key that starts with `prefix` (a plain string prefix), sorted."""
        raise NotImplementedError

    def set(
        self, key: str, value: bytes, *, message: str | None = None, author: str | None = None
    ) -> str:
        """Commit `value` (bytes) as the value of `key`; return the new commit's id.

        `message` defaults to "set KEY", `author` ("Name <email>") to the store's author.
        If `key` has that value already, nothing is committed (no empty commits) and the
        current head is returned. A key cannot hold a value and other keys below it ("a"
        and "a/b"): InvalidKey.
        """
        raise NotImplementedError

    def delete(self, key: str, *, message: str | None = None, author: str | None = None) -> str:
        """Commit the removal of `key`; return the new commit's id. KeyError if it is missing.

        `message` defaults to "delete KEY".
        """
        raise NotImplementedError

    def transaction(
        self, message: str | None = None, *, author: str | None = None, policy: Policy = "fail"
    ) -> Transaction:
        """Begin a transaction on the current branch (see Transaction); commit it with `with`.

        `policy` decides what commit() does with keys that the transaction and a commit made
        since its base both changed, to different values:
        - "fail": raise Conflict naming them; nothing is committed;
        - "last-writer": the transaction's values win;
        - "json": merge JSON objects field by field (three ways, recursively); values that
          are not JSON objects, or a field changed two ways, raise Conflict;
        - a function (key, base, current, incoming) -> value or None (delete), given the
          values at the base, in the store now, and in the transaction (None: no value).
        """
        raise NotImplementedError

    @property
    def head(self) -> str | None:
        """The id of the current branch's latest commit; None before the first commit."""
        raise NotImplementedError

    @property
    def branch(self) -> str:
        """The name of the current branch ("main" in a new store)."""
        raise NotImplementedError

    def at(self, commit: str) -> KV_RO:
        """Return a read-only view of the store as it was at `commit` (an id or a branch)."""
        raise NotImplementedError

    def history(self, key: str | None = None, *, limit: int | None = None) -> _Commits:
        """Return the commits of the current branch, newest first, as `git log` lists them.

        With `key`, only the commits that changed that key (as `git log -- KEY`). `limit`
        returns at most that many.
        """
        raise NotImplementedError

    def revert(self, commit: str, *, message: str | None = None, author: str | None = None) -> str:
        """Commit the store's whole state as it was at `commit`; return the new commit's id.

        History is kept: the commits since `commit` stay in the log. `message` defaults to
        "revert to ID".
        """
        raise NotImplementedError

    def branches(self) -> _Keys:
        """Return the names of every branch, sorted."""
        raise NotImplementedError

    def create_branch(self, name: str, at: str | None = None) -> None:
        """Make a branch `name` pointing at `at` (an id or branch; default: the head).

        Does not switch to it (see checkout). ValueError if the name is taken or is not a
        valid Git branch name.
        """
        raise NotImplementedError

    def checkout(self, name: str) -> None:
        """Make `name` the current branch: reads and commits go there from now on."""
        raise NotImplementedError

    def delete_branch(self, name: str) -> None:
        """Remove the branch `name` (not the current one). Its commits stay in the store."""
        raise NotImplementedError

    def merge(
        self,
        branch: str,
        *,
        policy: Policy = "fail",
        message: str | None = None,
        author: str | None = None,
    ) -> str:
        """Merge `branch` into the current branch; return the resulting head.

        A fast-forward when the current branch has not moved since they parted; nothing when
        `branch` holds nothing new; otherwise a merge commit with two parents, keys changed
        on both sides to different values resolved by `policy` (as for transaction(), the
        incoming side being `branch`).
        """
        raise NotImplementedError

    def flush(self) -> None:
        """Bring the Git view up to date now (it otherwise lags by at most one batch)."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush, then release the store. Further calls raise ValueError. Safe to repeat."""
        raise NotImplementedError

    def __enter__(self) -> KV_RW:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
