"""A store's repository on its backend: making or checking it, replaying the journal, batches.

The folder is a bare Git repository (HEAD, config, objects/, refs/, packed-refs) plus
summon-kv/ (the journal and the lock file), which Git ignores. Every change is first a
journal record, durable when acknowledged; flush() turns the records since the last flush
into Git objects and refs (objects first, then refs, each durable) and only then resets the
journal. A power cut at any point leaves either the old journal, whose replay rebuilds the
same objects and refs (replay is idempotent: records set refs to absolute values), or the
new empty one after everything it held is in Git's files.
"""

from __future__ import annotations

from summon.kv import journal as jr
from summon.kv.errors import CorruptStore, UnsupportedRepository
from summon.kv.journal import Journal
from summon.kv.objects import BLOB, COMMIT, ZERO_ID, parse_commit
from summon.kv.odb import ObjectStore
from summon.kv.refs import HEADS, Refs, check_config
from summon.kv.tree import apply, value_id

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.kv.backend import Backend

CONFIG = b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
DESCRIPTION = b"A summon KV_RW store: its history is this repository's log.\n"
# What may sit in a folder that becomes a new store: our own lock, and ext4's lost+found.
FRESH = {"summon-kv", "lost+found"}


class Repository:
    """The Git repository and journal of one store (opened by open())."""

    def __init__(self, backend: Backend, reserve: int = jr.RESERVE) -> None:
        self.backend = backend
        self.odb = ObjectStore(backend)
        self.refs = Refs(backend)
        self.journal = Journal(backend, reserve)

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
        kind, ref, body, changes, as_is = jr.decode(payload)
        if kind == jr.REF:
            self.refs.set(ref, None if body == ZERO_ID else body)
            return
        if kind == jr.HEAD:
            self.refs.set_head(ref)
            return
        commit = parse_commit(body)
        if as_is:
            if not self.odb.has(commit.tree):
                raise CorruptStore(f"commit names tree {commit.tree.hex()}, which is missing")
        else:
            base = self.odb.commit(commit.parents[0]).tree if commit.parents else None
            ids = {key: None if v is None else self.odb.add(BLOB, v) for key, v in changes}
            tree = self.build(base, ids)
            if tree != commit.tree:
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
            else:
                old = value_id(self.odb, base, tuple(key.split(b"/"))) if base else None
                out[key] = self.odb.add(BLOB, value, old)
        return out

    def record_commit(
        self, ref: str, body: bytes, changes: dict[bytes, bytes | None], tree_as_is: bool
    ) -> bytes:
        """Journal the commit `body` (its objects already in pending; `changes` maps keys to
        blob ids); point `ref` at it. Returns its id once durable."""
        values = [(k, None if v is None else self.odb.read(v)[1]) for k, v in changes.items()]
        oid = self.odb.add(COMMIT, body)
        self.journal.append(jr.encode_commit(ref, body, values, tree_as_is))
        self.refs.set(ref, oid)
        return oid

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
        return bool(self.journal.records or self.odb.pending or self.refs.dirty)

    def flush(self) -> None:
        """Write what the journal holds as Git objects and refs, durably; then reset it."""
        if not self.unflushed:
            return
        self.odb.write_pending()
        self.refs.write()
        self.journal.reset()

    def head_ref(self) -> str:
        """The branch ref HEAD names; ValueError if HEAD is detached."""
        head = self.refs.head
        if not head.startswith(HEADS):
            raise ValueError(
                f"HEAD is {head} (detached, or not a branch): checkout a branch to make commits"
            )
        return head
