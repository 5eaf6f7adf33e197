"""Store: the KV_RW device, a key/value store whose history is a Git repository.

Reads go through the current branch's tree (parsed trees and values cached). Each change is
one commit: its objects are made in memory, one journal record makes it durable (one
fdatasync), and the Git files follow in batches (repo.py). Transactions are optimistic: they
read a fixed base and merge three ways at commit (merge.py), so they hold no lock.

The store may be used from several threads (a WSGI app's): one lock serialises calls. Under
asyncio, a commit schedules a flush after `batch_seconds` on the running loop, so the Git
view catches up even when the app goes quiet; a commit on another thread schedules it on the
loop the runtime serves the app on (attach_loop); without a loop, the next commit or close
does.
"""

from __future__ import annotations

import sys
import time
from _thread import RLock

from summon.devices import KV_RW, Commit, InvalidKey
from summon.kv import gc as _gc
from summon.kv import history
from summon.kv.backlog import Backlog
from summon.kv.errors import StoreClosed, UnknownCommit
from summon.kv.journal import RESERVE
from summon.kv.merge import check_policy, three_way
from summon.kv.objects import (
    BLOB,
    COMMIT,
    EMPTY_TREE,
    VALUE_MODES,
    CommitObject,
    check_author,
    commit_tail,
    make_ident,
    object_id,
    parse_hex,
    parse_ident,
    serialize_commit,
    tree_line,
)
from summon.kv.refs import HEADS, check_branch
from summon.kv.repo import Repository
from summon.kv.tree import build_one, diff, key_path, keys, value_id, walk_one
from summon.kv.views import Snapshot, StoreTransaction, as_value

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import AbstractEventLoop
    from collections.abc import Callable

    from summon.devices import Policy
    from summon.kv.backend import Backend

    _Keys = list[str]
    _Commits = list[Commit]
    _Ids = list[bytes]  # `list` is a method name inside Store

DEFAULT_AUTHOR = "summon <summon@localhost>"


class Store(KV_RW):
    """A KV_RW over a backend (see open_folder and open_memory in summon.kv).

    Options, value by value:
    - author: the author of commits that name none, "Name <email>";
    - batch_records, batch_bytes, batch_seconds: flush the journal into Git's files once it
      holds that many records, or that many bytes (or the objects they made, held in memory
      until then, do), or its oldest record is that old;
    - gc_packs: pack everything into one pack (gc()) once a flush leaves that many packs
      (0: never automatically); in the background flush's thread where there is one;
    - on_durable: called after every durable change: a commit, before the call returns;
      a flush, at its end, in the background flush's thread if it has one (the browser,
      which syncs IndexedDB there, has no threads: its flushes are inline);
    - clock: seconds since 1970 for commit times (time.time);
    - reserve: bytes the journal reserves ahead (0: append without reserving);
    - background: flush batches in a background thread, so commits go on meanwhile (where
      threads exist; tests turn it off to make file operations happen in a set order).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        author: str = DEFAULT_AUTHOR,
        batch_records: int = 1000,
        batch_bytes: int = 8 << 20,
        batch_seconds: float = 5.0,
        gc_packs: int = 50,
        on_durable: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        reserve: int | None = None,
        background: bool = True,
    ) -> None:
        self._author = check_author(author)
        self._batch = (batch_records, batch_bytes, batch_seconds)
        self._backlog = Backlog(2 * batch_bytes)
        self._gc_packs = gc_packs
        self._on_durable = on_durable
        self._clock = clock
        self._lock = RLock()
        self._closed = False
        self._first_unflushed = 0.0  # monotonic time of the oldest unflushed record
        self._timer = False
        self._loop: AbstractEventLoop | None = None  # attach_loop
        self.flush_error: BaseException | None = None  # the last failed background flush
        self._background = background
        self._repo = Repository(backend, RESERVE if reserve is None else reserve, background)
        self._repo.on_flushed = on_durable
        backend.lock()
        try:
            if self._repo.open():
                self._first_unflushed = time.monotonic()
                self._flush_quietly()  # complete the Git view at open, if the disk allows
        except BaseException:
            backend.close()
            raise

    # --- reading ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _head_id(self) -> bytes | None:
        refs = self._repo.refs
        if refs.head.startswith("refs/"):
            return refs.get(refs.head)
        return parse_hex(refs.head, "HEAD")

    def _tree_of(self, oid: bytes | None) -> bytes | None:
        return None if oid is None else self._repo.odb.commit(oid).tree

    def _root(self) -> bytes | None:
        self._check_open()
        return self._tree_of(self._head_id())

    def _read(self, root: bytes | None, key: str) -> bytes:
        parts = key_path(key)
        with self._lock:
            oid = value_id(self._repo.odb, root, parts) if root is not None else None
            if oid is None:
                raise KeyError(key)
            return self._repo.odb.value(oid)

    def _exists(self, root: bytes | None, key: str) -> bool:
        parts = key_path(key)
        with self._lock:
            return root is not None and value_id(self._repo.odb, root, parts) is not None

    def _keys(self, root: bytes | None, prefix: str) -> _Keys:
        if not isinstance(prefix, str) or prefix.startswith("/") or "\0" in prefix:
            raise InvalidKey(f"invalid prefix {prefix!r}: prefixes start keys such as 'css/'")
        with self._lock:
            return [] if root is None else keys(self._repo.odb, root, prefix)

    def get(self, key: str) -> bytes:
        parts = key_path(key)
        with self._lock:  # the head cannot move between finding it and reading from it
            root = self._root()
            odb = self._repo.odb
            oid = value_id(odb, root, parts) if root is not None else None
            if oid is None:
                raise KeyError(key)
            return odb.value(oid)

    def size(self, key: str) -> int:
        return len(self._read(self._root(), key))

    def exists(self, key: str) -> bool:
        return self._exists(self._root(), key)

    def list(self, prefix: str = "") -> _Keys:
        return self._keys(self._root(), prefix)

    @property
    def head(self) -> str | None:
        self._check_open()
        oid = self._head_id()
        return None if oid is None else oid.hex()

    @property
    def branch(self) -> str:
        head = self._repo.refs.head
        return head[len(HEADS) :] if head.startswith(HEADS) else head

    def _resolve(self, name: str) -> bytes:
        """The commit id `name` (40 hex digits, a branch, or HEAD) stands for."""
        if not isinstance(name, str):
            raise UnknownCommit(f"{name!r} is not a commit id or a branch name")
        if name == "HEAD":
            oid = self._head_id()
        elif len(name) == 40 and all(c in "0123456789abcdef" for c in name):
            oid = bytes.fromhex(name)
            self._repo.odb.commit(oid)  # UnknownCommit if there is none
        else:
            oid = self._repo.refs.get(HEADS + name)
        if oid is None:
            raise UnknownCommit(f"no commit or branch {name!r} in the store")
        return oid

    def at(self, commit: str) -> Snapshot:
        self._check_open()
        with self._lock:
            oid = self._resolve(commit)
            return Snapshot(self, oid.hex(), self._repo.odb.commit(oid).tree)

    def history(self, key: str | None = None, *, limit: int | None = None) -> _Commits:
        self._check_open()
        parts = None if key is None else key_path(key)
        with self._lock:
            found = history.log(self._repo.odb, self._head_id(), parts, limit)
        return [_commit_info(oid, c) for oid, c in found]

    def branches(self) -> _Keys:
        self._check_open()
        return self._repo.refs.branches()

    # --- committing ---------------------------------------------------------------------

    def _message(self, message: str | None, default: str) -> bytes:
        text = default if message is None else message
        if not isinstance(text, str) or "\0" in text or not text.strip():
            raise ValueError(f"commit message {text!r} is not non-empty text without NUL")
        return text.rstrip("\n").encode("utf-8", "surrogateescape") + b"\n"

    def _make_commit(
        self,
        ref: str,
        parents: _Ids,
        changes: dict[bytes, bytes | None],
        message: bytes,
        author: str | None,
        tree: bytes | None = None,
    ) -> bytes | None:
        """Commit `changes` (key -> blob id or None, in pending) on top of parents[0], or
        the existing `tree` as it is; None if that changes nothing (no empty commits)."""
        self._room()
        who = self._author if author is None else check_author(author)
        old = self._tree_of(parents[0]) if parents else None
        new = tree if tree is not None else self._repo.build(old, changes)
        if new == (old or EMPTY_TREE) and len(parents) < 2:
            return None
        ident = make_ident(who, int(self._clock()))
        body = serialize_commit(new, parents, ident, ident, message)
        oid = self._repo.record_commit(ref, body, changes, tree is not None)
        # The next commit starts from this one: keep it parsed.
        self._repo.odb.remember_commit(oid, CommitObject(new, parents, ident, ident, message))
        self._durable()
        return oid

    def _commit_values(
        self, values: dict[str, bytes | None], message: bytes, author: str | None
    ) -> bytes | None:
        with self._lock:
            self._check_open()
            ref = self._repo.head_ref()
            head = self._repo.refs.get(ref)
            mark = self._repo.pending_mark()
            try:
                if len(values) == 1:
                    oid = self._commit_one(ref, head, *next(iter(values.items())), message, author)
                else:
                    encoded = {k.encode("utf-8", "surrogateescape"): v for k, v in values.items()}
                    ids = self._repo.add_values(self._tree_of(head), encoded)
                    oid = self._make_commit(ref, [head] if head else [], ids, message, author)
            except BaseException:
                self._repo.rollback(mark)
                raise
            return head if oid is None else oid

    def _commit_one(
        self,
        ref: str,
        head: bytes | None,
        key: str,
        value: bytes | None,
        message: bytes,
        author: str | None,
    ) -> bytes | None:
        """Commit one key's change on `ref` (at `head`); None if it changes nothing. Its
        record goes to the disk first, its Git objects are made meanwhile (see journal.py):
        everything that could refuse the change is checked before the record is written."""
        self._room()
        odb = self._repo.odb
        parts = key_path(key)
        blob = None if value is None else object_id(BLOB, value)
        path = walk_one(odb, self._tree_of(head), parts, blob)
        if path is None:
            return None
        who = self._author if author is None else check_author(author)
        ident = make_ident(who, int(self._clock()))
        parents = [head] if head else []
        tail = commit_tail(parents, ident, ident, message)
        end = self._repo.write_commit(ref, tail, b"/".join(parts), value)
        # While the disk writes the record:
        if value is not None:
            old = path[-1][1].get(parts[-1])  # the key's previous value: its delta base
            self._repo.add_value(value, old[1] if old and old[0] in VALUE_MODES else None)
        tree = build_one(odb, parts, blob, path)
        oid = odb.add(COMMIT, tree_line(tree) + tail)
        self._repo.commit_written(ref, oid, end)
        odb.remember_commit(oid, CommitObject(tree, parents, ident, ident, message))
        self._durable()
        return oid

    def set(
        self, key: str, value: bytes, *, message: str | None = None, author: str | None = None
    ) -> str:
        key_path(key)
        msg = self._message(message, f"set {key}")
        oid = self._commit_values({key: as_value(value)}, msg, author)
        assert oid is not None  # a set always leaves a commit (the head, if nothing changed)
        return oid.hex()

    def delete(self, key: str, *, message: str | None = None, author: str | None = None) -> str:
        if not self.exists(key):
            raise KeyError(key)
        oid = self._commit_values({key: None}, self._message(message, f"delete {key}"), author)
        assert oid is not None
        return oid.hex()

    def transaction(
        self, message: str | None = None, *, author: str | None = None, policy: Policy = "fail"
    ) -> StoreTransaction:
        check_policy(policy)
        if message is not None:
            self._message(message, "")
        if author is not None:
            check_author(author)
        with self._lock:
            self._check_open()
            ref = self._repo.head_ref()
            head = self._repo.refs.get(ref)
            return StoreTransaction(self, ref, head, self._tree_of(head), message, author, policy)

    def _commit_transaction(self, tx: StoreTransaction) -> bytes | None:
        """Commit a transaction's changes, merged with what its branch got since its base."""
        names = [("delete " if v is None else "set ") + k for k, v in sorted(tx.changes.items())]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        message = self._message(tx.message, shown or "no change")
        check_policy(tx.policy)
        with self._lock:
            self._check_open()
            head = self._repo.refs.get(tx.ref)
            if not tx.changes:
                return head
            mark = self._repo.pending_mark()
            try:
                if len(tx.changes) == 1 and head == tx.base_id:  # nothing to merge
                    key, value = next(iter(tx.changes.items()))
                    oid = self._commit_one(tx.ref, head, key, value, message, tx.author)
                    return head if oid is None else oid
                encoded = {k.encode("utf-8", "surrogateescape"): v for k, v in tx.changes.items()}
                ids = self._repo.add_values(self._tree_of(head), encoded)
                if head != tx.base_id and head is not None:
                    incoming = {k.decode("utf-8", "surrogateescape"): v for k, v in ids.items()}
                    merged = three_way(
                        self._repo.odb,
                        tx.root,
                        self._repo.odb.commit(head).tree,
                        incoming,
                        tx.policy,
                    )
                    ids = {k.encode("utf-8", "surrogateescape"): v for k, v in merged.items()}
                parents = [head] if head else []
                oid = self._make_commit(tx.ref, parents, ids, message, tx.author)
            except BaseException:
                self._repo.rollback(mark)
                raise
            return head if oid is None else oid

    def revert(self, commit: str, *, message: str | None = None, author: str | None = None) -> str:
        with self._lock:
            self._check_open()
            target = self._resolve(commit)
            msg = self._message(message, f"revert to {target.hex()}")
            ref = self._repo.head_ref()
            head = self._repo.refs.get(ref)
            tree = self._repo.odb.commit(target).tree
            oid = self._make_commit(ref, [head] if head else [], {}, msg, author, tree)
            return (oid or head or target).hex()

    # --- branches -----------------------------------------------------------------------

    def create_branch(self, name: str, at: str | None = None) -> None:
        check_branch(name)
        with self._lock:
            self._check_open()
            ref = HEADS + name
            for other in self._repo.refs.branches():
                if other == name or other.startswith(name + "/") or name.startswith(other + "/"):
                    raise ValueError(f"branch {name!r} clashes with the branch {other!r}")
            target = self._head_id() if at is None else self._resolve(at)
            if target is None:
                raise ValueError(f"cannot make branch {name!r}: the store has no commit yet")
            self._repo.record_ref(ref, target)
            self._durable()

    def checkout(self, name: str) -> None:
        check_branch(name)
        with self._lock:
            self._check_open()
            ref = HEADS + name
            if self._repo.refs.get(ref) is None:
                raise UnknownCommit(f"no branch {name!r} in the store (see create_branch)")
            if self._repo.refs.head != ref:
                self._repo.record_head(ref)
                self._durable()

    def delete_branch(self, name: str) -> None:
        check_branch(name)
        with self._lock:
            self._check_open()
            ref = HEADS + name
            if self._repo.refs.get(ref) is None:
                raise UnknownCommit(f"no branch {name!r} in the store")
            if self._repo.refs.head == ref:
                raise ValueError(f"branch {name!r} is the current branch; checkout another first")
            self._repo.record_ref(ref, None)
            self._durable()

    def merge(
        self,
        branch: str,
        *,
        policy: Policy = "fail",
        message: str | None = None,
        author: str | None = None,
    ) -> str:
        check_policy(policy)
        with self._lock:
            self._check_open()
            ref = self._repo.head_ref()
            theirs = self._resolve(branch)
            ours = self._repo.refs.get(ref)
            odb = self._repo.odb
            base = None if ours is None else history.merge_base(odb, ours, theirs)
            if ours is not None and base == theirs:
                return ours.hex()  # nothing new there
            if ours is None or base == ours:
                self._repo.record_ref(ref, theirs)  # a fast-forward
                self._durable()
                return theirs.hex()
            msg = self._message(message, f"merge {branch} into {self.branch}")
            mark = self._repo.pending_mark()
            try:
                base_tree = None if base is None else odb.commit(base).tree  # None: unrelated
                ours_tree = odb.commit(ours).tree
                incoming = diff(odb, base_tree, odb.commit(theirs).tree)
                merged = three_way(odb, base_tree, ours_tree, incoming, policy)
                ids = {k.encode("utf-8", "surrogateescape"): v for k, v in merged.items()}
                oid = self._make_commit(ref, [ours, theirs], ids, msg, author)
            except BaseException:
                self._repo.rollback(mark)
                raise
            assert oid is not None  # a merge commit is made even when its tree is unchanged
            return oid.hex()

    # --- batches and the end ------------------------------------------------------------

    def _durable(self) -> None:
        """After each durable change: the hook, then a flush if the batch is full."""
        if self._on_durable is not None:
            self._on_durable()
        journal = self._repo.journal
        if journal.records == 1:
            self._first_unflushed = time.monotonic()
        records, size, seconds = self._batch
        if (
            journal.records >= records
            or journal.size >= size
            # A commit in a folder of N keys adds a tree of N entries, held until the flush:
            # far more than its journal record (1,200 tasks in one folder: 29 MB).
            or self._repo.odb.pending_bytes >= size
            or time.monotonic() - self._first_unflushed >= seconds
        ):
            self._flush_quietly(self._background)
        elif not self._timer:
            self._arm_timer(seconds)

    def attach_loop(self, loop: AbstractEventLoop) -> None:
        """The event loop the app serves on (the runtime's, as it starts): a commit made on
        another thread (a WSGI app's workers) arms its flush timer there, so the Git view
        catches up when the app goes quiet, as an asyncio app's does."""
        self._loop = loop

    def _arm_timer(self, seconds: float) -> None:
        asyncio = sys.modules.get("asyncio")  # only if the app uses it: never imported here
        if asyncio is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop
            if loop is None:
                return
            try:  # from a worker thread: the timer goes on the serving loop
                loop.call_soon_threadsafe(loop.call_later, seconds, self._on_timer)
            except RuntimeError:
                return  # that loop has closed: the next commit or close flushes
            self._timer = True
            return
        self._timer = True
        loop.call_later(seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = False
        if not self._closed and self._repo.unflushed:
            with self._lock:
                self._flush_quietly(self._background)

    def _room(self) -> None:
        def again() -> BaseException | None:
            self._flush_quietly()
            return self.flush_error

        waiting = self._repo.odb.pending_bytes
        self._backlog.check(waiting, self.flush_error, again, self._repo.backend.describe())

    def _flush_quietly(self, background: bool = False) -> None:
        """Flush after a commit or at open, never raising: the commit is durable already,
        and the journal keeps it whatever happens to the flush. A failure (a full disk,
        most often) is kept in flush_error; the next flush writes the batch again."""
        try:
            gc_due = bool(self._gc_packs) and len(self._repo.odb.packs) + 1 >= self._gc_packs
            if background:
                self.flush_error = self._repo.start_flush(gc_due)
            else:
                self._repo.flush()
                self.flush_error = None
                if gc_due:
                    _gc.gc(self._repo)
        except Exception as e:
            self.flush_error = e

    def flush(self) -> None:
        with self._lock:
            self._check_open()
            self._repo.flush()
            self.flush_error = None

    def gc(self) -> None:
        """Flush, then pack every object into one pack (with deltas) and every ref into
        packed-refs, removing the old packs and loose files (git gc, without pruning)."""
        with self._lock:
            self._check_open()
            self._repo.flush()
            _gc.gc(self._repo)
            if self._on_durable is not None:
                self._on_durable()

    def export_bundle(self, path: str) -> None:
        """Write the store's branches and history as a Git bundle (v2) at the host `path`."""
        from summon.kv.bundle import write_bundle

        with self._lock:
            self._check_open()
            self._repo.flush()
            write_bundle(self._repo, path)

    def close(self) -> None:
        """Flush (the journal files shrink back to their headers), then release the store.
        If the volume is full, the Git view stays behind: the journal keeps every commit,
        and the next open completes it."""
        with self._lock:
            if self._closed:
                return
            try:
                self._repo.flush(shrink=True)
            except Exception as e:
                self.flush_error = e
            finally:
                self._closed = True
                self._repo.backend.close()

    def __enter__(self) -> Store:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"on {self.branch}"
        return f"<Store {self._repo.backend.describe()} {state}>"


def _commit_info(oid: bytes, commit: CommitObject) -> Commit:
    author, seconds = parse_ident(commit.author)
    message = commit.message.decode("utf-8", "replace")
    if message.endswith("\n"):
        message = message[:-1]
    return Commit(oid.hex(), message, author, seconds, tuple(p.hex() for p in commit.parents))
