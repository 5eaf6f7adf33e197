"""Packing a repository: every object into one pack with deltas, every ref into packed-refs.

Objects are laid out history first: commits oldest first, each followed by the trees and
values new in it, each stored as a delta against the object at the same path in its first
parent when that is smaller (packwrite.encode_delta). This is what makes a store's history
small: one commit changes one path, so each new tree differs from its predecessor by an entry.

gc() then removes the packs and loose files it copied, and Git's caches that would name
them (multi-pack-index, commit-graph); nothing is pruned (unreachable objects are packed
too), and packs with a .keep file are left as they are. It comes in two steps so that a
background flush can do the long one: build() writes the new files, finish() (in the
store's thread) swaps them in and removes the old. The same collection of reachable
objects makes a bundle's pack (bundle.py).
"""

from __future__ import annotations

from summon.kv.history import log
from summon.kv.objects import BLOB, COMMIT, MODE_GITLINK, MODE_TREE, TAG, TREE, parse_tag_target
from summon.kv.odb import loose_path
from summon.kv.pack import Pack, PackIndex
from summon.kv.packwrite import PackWriter
from summon.kv.refs import Refs

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Protocol

    from summon.kv.backend import Backend
    from summon.kv.odb import ObjectStore

    class Repository(Protocol):
        """What packing needs of a summon.kv.repo.Repository (named here: repo imports gc)."""

        backend: Backend
        odb: ObjectStore
        refs: Refs


BODY_CACHE_BYTES = 8 << 20  # recent bodies kept as delta bases while packing


class _Packer:
    """Adds objects to a PackWriter in history order, with delta bases."""

    def __init__(self, odb: ObjectStore, level: int = 6) -> None:
        self.odb = odb
        self.writer = PackWriter(level)
        self._bodies: dict[bytes, bytes] = {}
        self._cached = 0

    def _body(self, oid: bytes) -> bytes:
        body = self._bodies.get(oid)
        return body if body is not None else self.odb.read(oid)[1]

    def _add(self, oid: bytes, kind: bytes, body: bytes, base: bytes | None) -> None:
        base_body = self._body(base) if base is not None and base in self.writer else None
        self.writer.add(oid, kind, body, base, base_body)
        if len(body) < BODY_CACHE_BYTES // 64:
            while self._cached + len(body) > BODY_CACHE_BYTES:
                self._cached -= len(self._bodies.pop(next(iter(self._bodies))))
            self._bodies[oid] = body
            self._cached += len(body)

    def history(self, tips: Iterable[bytes]) -> None:
        """Add every commit reachable from `tips` (commits or tags), and what they hold."""
        commits: dict[bytes, None] = {}
        for tip in tips:
            kind, body = self.odb.read(tip)
            while kind == TAG:
                self._add(tip, TAG, body, None)
                tip = parse_tag_target(body, tip)
                kind, body = self.odb.read(tip)
            if kind == COMMIT:
                for oid, _ in log(self.odb, tip):
                    commits[oid] = None
            elif kind == TREE:
                self._tree(tip, None)
            else:
                self._add(tip, kind, body, None)
        for oid in reversed(list(commits)):  # oldest first, so bases come before deltas
            if oid in self.writer:
                continue
            commit = self.odb.commit(oid)
            self._add(oid, COMMIT, self.odb.read(oid)[1], None)
            parent = self.odb.commit(commit.parents[0]).tree if commit.parents else None
            self._tree(commit.tree, parent)

    def _tree(self, oid: bytes, before: bytes | None) -> None:
        if oid in self.writer:
            return
        self._add(oid, TREE, self.odb.read(oid)[1], before)
        old = self.odb.tree(before) if before is not None else {}
        for name, (mode, sub) in self.odb.tree(oid).items():
            if mode == MODE_GITLINK or sub in self.writer:
                continue  # a submodule's commit lives in another repository
            prev = old.get(name)
            if mode == MODE_TREE:
                self._tree(sub, prev[1] if prev and prev[0] == MODE_TREE else None)
            else:
                base = prev[1] if prev and prev[0] not in (MODE_TREE, MODE_GITLINK) else None
                self._add(sub, BLOB, self._body(sub), base)

    def rest(self, oids: Iterable[bytes]) -> None:
        """Add whatever else is given, whole."""
        for oid in oids:
            if oid not in self.writer:
                kind, body = self.odb.read(oid)
                self._add(oid, kind, body, None)


def tips(refs: Refs) -> list[bytes]:
    """The ids every ref and HEAD point at, HEAD's first."""
    out = []
    head = refs.head
    oid = refs.get(head) if head.startswith("refs/") else bytes.fromhex(head)
    if oid is not None:
        out.append(oid)
    out += [oid for _, oid in sorted(refs.values.items())]
    return list(dict.fromkeys(out))


def pack_reachable(repo: Repository, level: int = 6) -> PackWriter:
    """A PackWriter holding every object reachable from the refs and HEAD."""
    packer = _Packer(repo.odb, level)
    packer.history(tips(repo.refs))
    return packer.writer


class Plan:
    """What build() wrote, for finish() to put in place of the old files."""

    __slots__ = ("index", "old_loose", "old_packs", "packed", "peeled", "stem")

    def __init__(
        self,
        stem: str,
        index: PackIndex | None,
        old_packs: list[str],
        old_loose: list[bytes],
        packed: dict[str, bytes],
        peeled: dict[str, bytes],
    ) -> None:
        self.stem = stem
        self.index = index
        self.old_packs = old_packs
        self.old_loose = old_loose
        self.packed = packed
        self.peeled = peeled


def gc(repo: Repository) -> None:
    """Pack the whole repository (it must be flushed) into one pack and packed-refs."""
    finish(repo, build(repo))


def build(repo: Repository) -> Plan:
    """Write the new pack (every object in the folder, history first, with deltas) and
    packed-refs (every ref as the last flush wrote it), durably.

    Safe in a background flush's thread while the store's own thread reads and commits: it
    reads through its own reader (its own caches) and the refs on disk, and removes nothing
    but loose ref files (which only flushes write, and they wait for it). The repository
    must be flushed up to the refs on disk; objects committed since are not packed.
    """
    odb = repo.odb.reader()
    refs = Refs(repo.backend)
    refs.load()
    packer = _Packer(odb)
    packer.history(tips(refs))
    kept = [p for p in odb.packs if _kept(repo, p.path)]
    kept_ids = {oid for p in kept for oid in p.index}
    packer.rest(oid for oid in odb.all_ids() if oid not in kept_ids)
    stem, index = "", None
    if len(packer.writer):
        pack, idx, index = packer.writer.finish()
        stem = odb.write_pack_files(pack, idx)
    refs.pack(odb.peel)
    old = [p.path for p in odb.packs if p not in kept and p.path != stem + ".pack"]
    return Plan(stem, index, old, list(odb.loose), refs.packed, refs.peeled)


def finish(repo: Repository, plan: Plan) -> None:
    """Use the new pack; remove the old packs and loose files, and Git's caches naming them.
    In the store's own thread, with no reader of the old files running."""
    odb = repo.odb
    backend = repo.backend
    new = [Pack(backend, plan.stem + ".pack", plan.index)] if plan.index is not None else []
    odb.packs = new + [
        p for p in odb.packs if p.path not in plan.old_packs and p.path != (plan.stem + ".pack")
    ]
    odb.loose = odb.loose - set(plan.old_loose)
    repo.refs.adopt_packed(plan.packed, plan.peeled)
    # Git's caches name the old packs: they are optional, and git rebuilds them.
    for cache in ("objects/pack/multi-pack-index", "objects/info/commit-graph"):
        backend.remove(cache)
    for name, _ in backend.listdir("objects/info/commit-graphs"):
        backend.remove(f"objects/info/commit-graphs/{name}")
    for path in plan.old_packs:
        old_stem = path[: -len(".pack")]
        for suffix in (".idx", ".pack", ".rev", ".bitmap"):  # the idx first: then Git skips it
            backend.remove(old_stem + suffix)
    for oid in plan.old_loose:
        backend.remove(loose_path(oid))


def _kept(repo: Repository, pack_path: str) -> bool:
    stem = pack_path[: -len(".pack")]
    name = stem.rpartition("/")[2]
    return any(n == name + ".keep" for n, _ in repo.backend.listdir("objects/pack"))
