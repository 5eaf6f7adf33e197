"""A store's repository on its backend: making or checking it, replaying the journal, batches.

The folder is a bare Git repository (HEAD, config, objects/, refs/, packed-refs) plus
summon-kv/ (the two journal files and the lock file), which Git ignores. Every change is
first a journal record, durable when acknowledged; a flush turns the records since the last
flush into Git objects and refs (objects first, then refs, each durable) and only then
clears their journal file. A power cut at any point leaves either the records, whose replay
rebuilds the same objects and refs (replay is idempotent: records set refs to absolute
values), or a cleared file once everything it held is in Git's files.

start_flush() does that in a background thread: the active journal file is handed over
with the objects and ref changes its records made, and commits go on into the other file
meanwhile (the two files are replayed oldest first). The thread touches only what it was
handed, plus the pack list and loose set, whose single appends are atomic.
"""

from __future__ import annotations

import _thread

from summon.kv import gc
from summon.kv import journal as jr
from summon.kv.errors import CorruptStore, UnsupportedRepository
from summon.kv.journal import Journal
from summon.kv.objects import BLOB, COMMIT, ZERO_ID, parse_commit, tree_line
from summon.kv.odb import ObjectStore
from summon.kv.packwrite import MIN_DELTA_SIZE
from summon.kv.refs import HEADS, Refs, check_config
from summon.kv.tree import apply, value_id

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.kv.backend import Backend
    from summon.kv.journal import JournalFile
    from summon.kv.refs import Snapshot as RefsSnapshot

    Batch = tuple[dict[bytes, tuple[bytes, bytes]], dict[bytes, bytes]]

CONFIG = b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
DESCRIPTION = b"A summon KV_RW store: its history is this repository's log.\n"
# What may sit in a folder that becomes a new store: our own lock, and ext4's lost+found.
FRESH = {"summon-kv", "lost+found"}


class Repository:
    """The Git repository and journal of one store (opened by open())."""

    def __init__(self, backend: Backend, reserve: int = jr.RESERVE, threads: bool = True) -> None:
        self.backend = backend
        self.odb = ObjectStore(backend)
        self.refs = Refs(backend)
        self.journal = Journal(backend, reserve)
        self.threads = threads  # flush batches in a background thread
        self._done = _thread.allocate_lock()  # held while a background flush runs
        self._running = False
        self._failed: tuple[BaseException, Batch, RefsSnapshot] | None = None
        self._plan: gc.Plan | None = None  # a background gc's new files, to put in place
        self._gc_failed: BaseException | None = None
        self.on_flushed: Callable[[], None] | None = None  # after each flush, in its thread

    def open(self) -> int:
        """Make a new repository or check the one there; load it; replay the journal.
        Returns how many journal records were replayed."""
        names = {name for name, _ in self.backend.listdir("")}
        where = self.backend.describe()
        if "HEAD" not in names:
            if ".git" in names:
                raise UnsupportedRepository(
                    f"{where} is a Git work tree; a store is a bare repository: open {where}/.git"
                )
            if names - FRESH and not self._interrupted_init(names):
                shown = ", ".join(sorted(names - FRESH)[:5])
                raise UnsupportedRepository(
                    f"{where} is neither empty nor a Git repository (it holds {shown})"
                )
            self._init()
        self._check()
        self._sweep("")
        self._sweep("objects/pack")
        self.odb.load()
        self.refs.load()
        records = self.journal.open()
        for n, payload in enumerate(records):
            try:
                self.replay(payload)
            except (CorruptStore, KeyError) as e:  # KeyError: UnknownCommit, a missing parent
                raise CorruptStore(f"{where}: journal record {n + 1}: {e}") from None
        return len(records)

    def _init(self) -> None:
        for folder in ("objects/pack", "objects/info", "refs/heads", "refs/tags"):
            self.backend.makedirs(folder)
        self.backend.write_atomic("config", CONFIG)
        self.backend.write_atomic("description", DESCRIPTION)
        self.backend.write_atomic("HEAD", b"ref: refs/heads/main\n")

    def _interrupted_init(self, names: set[str]) -> bool:
        """Whether the folder holds only what _init writes before HEAD (a power cut there)."""
        if not names <= FRESH | {"config", "description", "objects", "refs"}:
            return False
        todo = ["objects", "refs"]
        while todo:
            folder = todo.pop()
            for name, is_dir in self.backend.listdir(folder):
                if not is_dir:
                    return False
                todo.append(f"{folder}/{name}")
        return True

    def _check(self) -> None:
        where = self.backend.describe()
        try:
            check_config(self.backend.read("config"), where)
        except FileNotFoundError:
            pass
        for path, what in (
            ("shallow", "a shallow clone (its oldest commits are missing)"),
            ("objects/info/alternates", "a repository borrowing objects (alternates)"),
        ):
            try:
                self.backend.read(path)
            except FileNotFoundError:
                continue
            raise UnsupportedRepository(f"{where} is {what}, which summon.kv does not read")

    def _sweep(self, folder: str) -> None:
        """Remove temporary files a crash left (ours and Git's end in .lock), recursively
        below refs/ (only we write while the store is open)."""
        for name, is_dir in self.backend.listdir(folder):
            path = f"{folder}/{name}" if folder else name
            if is_dir and (path == "refs" or path.startswith("refs/")):
                self._sweep(path)
            elif not is_dir and name.endswith(".lock"):
                self.backend.remove(path)
        if not folder:
            self._sweep("refs")

    # --- records ----------------------------------------------------------------------------

    def replay(self, payload: bytes) -> None:
        """Redo what one journal record did, checking it comes out the same."""
        kind, ref, body, changes, flags = jr.decode(payload)
        if kind == jr.REF:
            self.refs.set(ref, None if body == ZERO_ID else body)
            return
        if kind == jr.HEAD:
            self.refs.set_head(ref)
            return
        if flags & jr.TREE_AFTER:  # its tree is what the changes make, whatever that is
            commit = parse_commit(tree_line(ZERO_ID) + body)
        else:
            commit = parse_commit(body)
        if flags & jr.TREE_AS_IS:
            if not self.odb.has(commit.tree):
                raise CorruptStore(f"commit names tree {commit.tree.hex()}, which is missing")
        else:
            base = self.odb.commit(commit.parents[0]).tree if commit.parents else None
            ids = {key: None if v is None else self.odb.add(BLOB, v) for key, v in changes}
            tree = self.build(base, ids)
            if flags & jr.TREE_AFTER:
                body = tree_line(tree) + body
            elif tree != commit.tree:
                raise CorruptStore("its changes do not make the tree its commit names")
        self.refs.set(ref, self.odb.add(COMMIT, body))

    def build(self, base: bytes | None, changes: dict[bytes, bytes | None]) -> bytes:
        """The tree `base` (None: empty) with `changes` (key -> blob id or None) made."""
        return apply(self.odb, base, [(tuple(k.split(b"/")), v) for k, v in changes.items()])

    def add_values(self, base: bytes | None, values: dict[bytes, bytes | None]) -> dict[
        bytes, bytes | None
    ]:
        """Blob ids for `values` (key -> bytes or None), added to pending; each with the
        key's value in `base` as its delta base."""
        out: dict[bytes, bytes | None] = {}
        for key, value in values.items():
            if value is None:
                out[key] = None
            elif len(value) < MIN_DELTA_SIZE or base is None:
                out[key] = self.add_value(value, None)
            else:
                out[key] = self.add_value(value, value_id(self.odb, base, tuple(key.split(b"/"))))
        return out

    def add_value(self, value: bytes, old: bytes | None) -> bytes:
        """The blob id of `value`, added to pending; `old` (the key's previous blob, if any)
        its delta base unless the value is too small to be a delta."""
        return self.odb.add(BLOB, value, old if len(value) >= MIN_DELTA_SIZE else None)

    def record_commit(
        self, ref: str, body: bytes, changes: dict[bytes, bytes | None], tree_as_is: bool
    ) -> bytes:
        """Journal the commit `body` (its objects already in pending; `changes` maps keys to
        blob ids); point `ref` at it. Returns its id once durable."""
        values = [(k, None if v is None else self.odb.read(v)[1]) for k, v in changes.items()]
        oid = self.odb.add(COMMIT, body)
        flags = jr.TREE_AS_IS if tree_as_is else 0
        self.journal.append(jr.encode_commit(ref, body, values, flags))
        self.refs.set(ref, oid)
        return oid

    def write_commit(self, ref: str, tail: bytes, key: bytes, value: bytes | None) -> int:
        """Write, not yet durable, the record of a one-key commit on `ref` whose tree is
        made after (`tail`: its body without the tree line); return where it ends, for
        commit_written. Until then it does not count, and the next record goes over it."""
        return self.journal.write(jr.encode_commit(ref, tail, [(key, value)], jr.TREE_AFTER))

    def commit_written(self, ref: str, oid: bytes, end: int) -> None:
        """Make the record write_commit wrote durable, and point `ref` at its commit."""
        self.journal.made_durable(end)
        self.refs.set(ref, oid)

    def record_ref(self, ref: str, oid: bytes | None) -> None:
        self.journal.append(jr.encode_ref(ref, oid))
        self.refs.set(ref, oid)

    def record_head(self, ref: str) -> None:
        self.journal.append(jr.encode_head(ref))
        self.refs.set_head(ref)

    def pending_mark(self) -> int:
        return len(self.odb.pending)

    def rollback(self, mark: int) -> None:
        """Forget the objects added to pending since `mark` (a commit that failed)."""
        self.odb.drop_pending(list(self.odb.pending)[mark:])

    # --- batches ----------------------------------------------------------------------------

    @property
    def unflushed(self) -> bool:
        return bool(
            self.journal.records
            or self.journal.standby.records
            or self.odb.pending
            or self.odb.flushing is not None
            or self.refs.dirty
        )

    def flush(self, shrink: bool = False) -> None:
        """Write everything the journal holds as Git objects and refs, durably; then clear
        both journal files (`shrink`: to their bare headers). Waits for a background flush,
        and redoes its batch if it failed."""
        self.wait()
        if self.unflushed:
            self.odb.write_pending()
            self.refs.write()
            self.journal.clear(shrink)
            if self.on_flushed is not None:
                self.on_flushed()
        elif shrink:
            self.journal.clear(shrink)

    def start_flush(self, gc_due: bool = False) -> BaseException | None:
        """Flush in a background thread: the active journal file's records are handed over
        and commits go on in the other file; then, if `gc_due`, pack the repository (gc's
        long step). Flushes inline where there is no thread (the browser) or the last
        background flush failed. Returns the last background flush's error, if any."""
        error = self.wait()
        if not self.unflushed:
            return error
        if self.journal.standby.records or not self.threads:
            self.flush()
            if gc_due:
                gc.gc(self)
            return error
        batch = self.odb.take_pending()
        refs = self.refs.snapshot()
        old = self.journal.rotate()
        self._done.acquire()
        self._running = True
        try:
            _thread.start_new_thread(self._materialize, (batch, refs, old, gc_due))
        except RuntimeError:  # no threads here after all: do it now
            self.threads = False
            self._materialize(batch, refs, old, gc_due)
        return error

    def _materialize(
        self, batch: Batch, refs: RefsSnapshot, old: JournalFile, gc_due: bool
    ) -> None:
        """Write one batch's objects, then its refs, then clear its journal file; then the
        new files of a gc, if due (wait() puts them in place)."""
        try:
            try:
                self.odb.write_batch(*batch)
                self.refs.write_snapshot(refs)
                old.clear(old.generation)
                self.odb.flushing = None
                if self.on_flushed is not None:
                    self.on_flushed()
            except BaseException as e:  # given back to the main thread by wait()
                self._failed = (e, batch, refs)
                return
            if gc_due:
                try:
                    self._plan = gc.build(self)
                except BaseException as e:  # the old files stay: nothing is lost
                    self._gc_failed = e
        finally:
            self._done.release()

    def wait(self) -> BaseException | None:
        """Wait for a background flush; put a gc's files in place; if the flush failed,
        take its batch back (the next flush writes it). Returns the error, if any."""
        if self._running:
            self._done.acquire()
            self._done.release()
            self._running = False
        if self._plan is not None:
            plan, self._plan = self._plan, None
            gc.finish(self, plan)
        if self._gc_failed is not None:
            error, self._gc_failed = self._gc_failed, None
            return error
        if self._failed is None:
            return None
        error, batch, refs = self._failed
        self._failed = None
        self.odb.give_back(batch)
        self.refs.give_back(refs)
        return error

    def head_ref(self) -> str:
        """The branch ref HEAD names; ValueError if HEAD is detached."""
        head = self.refs.head
        if not head.startswith(HEADS):
            raise ValueError(
                f"HEAD is {head} (detached, or not a branch): checkout a branch to make commits"
            )
        return head
