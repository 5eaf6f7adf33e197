"""Walking history: the log of a branch or of one key, and the merge base of two commits.

The log is ordered as `git log` orders it: newest committer date first, ties in the order
the commits were reached. A key's log follows Git's default history simplification (what
`git log -- KEY` shows): a commit is listed when the key's value differs from every
parent's; where it equals a parent's, only that parent's line is followed.

The merge base is Git's "paint down to common": walk both sides newest first, marking what
each reaches, until only commits already known to be common remain. With several best
common ancestors (criss-cross merges) the newest is used; Git's recursive strategy would
merge them first.
"""

from __future__ import annotations

import heapq

from summon.kv.objects import VALUE_MODES
from summon.kv.tree import lookup

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.kv.objects import CommitObject
    from summon.kv.odb import ObjectStore


def log(
    odb: ObjectStore,
    start: bytes | None,
    parts: tuple[bytes, ...] | None = None,
    limit: int | None = None,
) -> list[tuple[bytes, CommitObject]]:
    """(id, commit) of the commits reachable from `start`, newest first; only those that
    changed the key at `parts` if given; at most `limit`."""
    out: list[tuple[bytes, CommitObject]] = []
    if start is None or (limit is not None and limit <= 0):
        return out
    counter = 0
    heap = [(-odb.commit(start).time, counter, start)]
    seen = {start}
    while heap:
        _, _, oid = heapq.heappop(heap)
        commit = odb.commit(oid)
        follow = commit.parents
        show = True
        if parts is not None:
            mine = _entry(odb, commit.tree, parts)
            show = bool(follow) or mine is not None
            for parent in commit.parents:
                if _entry(odb, odb.commit(parent).tree, parts) == mine:
                    follow = [parent]  # the key came from there: follow it alone
                    show = False
                    break
        if show:
            out.append((oid, commit))
            if limit is not None and len(out) >= limit:
                break
        for parent in follow:
            if parent not in seen:
                seen.add(parent)
                counter += 1
                heapq.heappush(heap, (-odb.commit(parent).time, counter, parent))
    return out


def _entry(odb: ObjectStore, tree: bytes, parts: tuple[bytes, ...]) -> tuple[bytes, bytes] | None:
    """(mode, id) of the key's value: a change of mode alone (git chmod) is a change to Git."""
    found = lookup(odb, tree, parts)
    return found if found is not None and found[0] in VALUE_MODES else None


STALE = 4


def merge_base(odb: ObjectStore, a: bytes, b: bytes) -> bytes | None:
    """The best common ancestor of commits `a` and `b` (either may be it), or None."""
    if a == b:
        return a
    flags = {a: 1, b: 2}
    counter = 1
    heap = [(-odb.commit(a).time, 0, a), (-odb.commit(b).time, 1, b)]
    found: list[bytes] = []
    # The heap stays as wide as the history is (a few entries): scanning it is cheap.
    while any(not flags[o] & STALE for _, _, o in heap):
        _, _, oid = heapq.heappop(heap)
        paint = flags[oid]
        if paint & 3 == 3 and not paint & STALE:
            found.append(oid)
            paint |= STALE
            flags[oid] = paint
        for parent in odb.commit(oid).parents:
            old = flags.get(parent, 0)
            if old & paint == paint:
                continue
            flags[parent] = old | paint
            counter += 1
            heapq.heappush(heap, (-odb.commit(parent).time, counter, parent))
    # A found commit may be an ancestor of another found one (painted stale later): drop it.
    best = [o for o in found if not any(o != p and merge_base_is(odb, o, p) for p in found)]
    best.sort(key=lambda o: -odb.commit(o).time)
    return best[0] if best else None


def merge_base_is(odb: ObjectStore, ancestor: bytes, of: bytes) -> bool:
    """Whether `ancestor` is reachable from `of`."""
    todo = [of]
    seen = {of}
    while todo:
        oid = todo.pop()
        if oid == ancestor:
            return True
        for parent in odb.commit(oid).parents:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return False
