"""Keys as paths in Git trees: checking keys, looking them up, changing and comparing trees.

A key "tasks/42" is the file "42" in the folder "tasks" of a commit's tree; its value is the
file's blob. Keys follow KV_RO's rules (summon.runtime.posix_devices.check_key), and a few of
Git's own: no component may be ".git" (in any case, or the spellings HFS+ and NTFS read as
".git"), ".gitmodules" or ".gitattributes", which `git fsck` checks as Git's own files. Names
are UTF-8; names that are not (in repositories made elsewhere) read with surrogate escapes.

A key cannot hold a value and keys below it at once ("a" and "a/b"): Git cannot store a
file and a folder of the same name.
"""

from __future__ import annotations

from summon.devices import InvalidKey
from summon.kv.objects import (
    MODE_FILE,
    MODE_TREE,
    TREE,
    VALUE_MODES,
    raw_entry,
    sort_entries,
)
from summon.runtime.posix_devices import check_key

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.kv.objects import Entries, RawEntries
    from summon.kv.odb import ObjectStore

    # Changes to one tree, by path: (path components, new blob id or None to delete).
    PathChanges = list[tuple[tuple[bytes, ...], bytes | None]]
    # The trees along one key's path, root first: (id or None if new, entries, raw).
    Walk = list[tuple[bytes | None, Entries, RawEntries]]

# Code points HFS+ ignores in names, so ".g\u200cit" is ".git" there (and to git fsck).
_HFS_IGNORED = {0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070)}
_HFS_IGNORED.add(0xFEFF)
_GIT_NAMES = (".git", "git~1", ".gitmodules", ".gitattributes")
NAME_MAX = 255  # bytes in a file name (Linux, ext4, APFS, NTFS's 255 UTF-16 units or more)
PATH_MAX = 4095  # bytes in a path, without the final NUL (Linux)


def _git_name(part: str) -> bool:
    folded = "".join(c for c in part if ord(c) not in _HFS_IGNORED).lower()
    folded = folded.split(":", 1)[0].rstrip(". ")  # NTFS drops trailing dots and spaces
    return folded in _GIT_NAMES


_PATHS: dict[str, tuple[bytes, ...]] = {}  # checked keys: a read checks its key every time
_PATHS_MAX = 1 << 16


def key_path(key: str) -> tuple[bytes, ...]:
    """The path components of `key`, or InvalidKey saying why it is not a key."""
    if type(key) is str:
        parts = _PATHS.get(key)
        if parts is not None:
            return parts
    parts = _check(key)
    if len(_PATHS) >= _PATHS_MAX:
        _PATHS.clear()
    _PATHS[key] = parts
    return parts


def _check(key: str) -> tuple[bytes, ...]:
    check_key(key)
    try:
        parts = tuple(p.encode("utf-8", "surrogateescape") for p in key.split("/"))
    except UnicodeEncodeError:
        raise InvalidKey(f"invalid key {key!r}: keys are UTF-8 text") from None
    # A name no file system holds made `git clone` of the store's export fail its checkout.
    longest = max(parts, key=len)
    if len(longest) > NAME_MAX or sum(map(len, parts)) + len(parts) - 1 > PATH_MAX:
        raise InvalidKey(
            f"invalid key {key[:40]!r}... ({len(key)} characters): a key's parts are at most "
            f"{NAME_MAX} bytes and the key at most {PATH_MAX} (UTF-8), as file names and paths "
            "are, or a git clone of the store cannot check it out"
        )
    for part in key.split("/"):
        if _git_name(part):
            raise InvalidKey(
                f"invalid key {key!r}: {part!r} is one of Git's own names (.git, .gitmodules, "
                ".gitattributes), which a store's keys cannot use"
            )
    return parts


def path_key(parts: tuple[bytes, ...] | list[bytes]) -> str:
    return "/".join(p.decode("utf-8", "surrogateescape") for p in parts)


def lookup(odb: ObjectStore, root: bytes, parts: tuple[bytes, ...]) -> tuple[bytes, bytes] | None:
    """(mode, id) of the entry at `parts` under the tree `root`, or None."""
    oid = root
    mode = MODE_TREE
    for part in parts:
        if mode != MODE_TREE:
            return None
        entry = odb.tree(oid).get(part)
        if entry is None:
            return None
        mode, oid = entry
    return mode, oid


def value_id(odb: ObjectStore, root: bytes, parts: tuple[bytes, ...]) -> bytes | None:
    """The blob id of the key at `parts`, or None if no value is there."""
    found = lookup(odb, root, parts)
    if found is None or found[0] not in VALUE_MODES:
        return None
    return found[1]


def apply(odb: ObjectStore, root: bytes | None, changes: PathChanges) -> bytes:
    """The id of the tree `root` (None: empty) with `changes` made; new trees go to pending.

    Deleting what is not there does nothing. Raises InvalidKey where a value would sit on a
    folder or below a value.
    """
    if len(changes) == 1:
        parts, value = changes[0]
        path = walk_one(odb, root, parts, value)
        return (root or _empty(odb)) if path is None else build_one(odb, parts, value, path)
    grouped: dict[bytes, PathChanges] = {}
    for parts, oid in changes:
        grouped.setdefault(parts[0], []).append((parts[1:], oid))
    new = _apply(odb, root, grouped, ())
    return _empty(odb) if new is None else new


def _empty(odb: ObjectStore) -> bytes:
    """The empty tree, in pending: a commit whose every key is deleted still names a tree."""
    new = odb.add(TREE, b"")
    odb.remember_tree(new, {}, {})
    return new


def walk_one(
    odb: ObjectStore, root: bytes | None, parts: tuple[bytes, ...], value: bytes | None
) -> Walk | None:
    """The trees along the path of one change (a set() or delete(), the common commit), for
    build_one; None if the change leaves the tree as it is. Raises InvalidKey where the value
    would sit on a folder or below a value. Everything that can fail is found here: what
    build_one does cannot fail, so a commit's record may be written in between."""
    path: Walk = []
    oid = root
    last = len(parts) - 1
    for depth, name in enumerate(parts):
        entries, raw = odb.tree_raw(oid) if oid is not None else ({}, {})
        path.append((oid, entries, raw))
        entry = entries.get(name)
        if depth == last:
            if entry is not None and entry[0] == MODE_TREE:
                if value is None:
                    return None  # a folder is not a key: nothing to delete
                raise _shape(parts, "has keys below it, so it cannot hold a value")
            if entry == (MODE_FILE, value) or (entry is None and value is None):
                return None
            if value is None and entry is not None and entry[0] not in VALUE_MODES:
                return None  # a link or submodule is not a key either
        elif entry is None:
            oid = None
        elif entry[0] == MODE_TREE:
            oid = entry[1]
        elif value is None:
            return None  # deleting below a value: there is nothing to delete
        else:
            raise _shape(parts[: depth + 1], "holds a value, so no key can be below it")
    return path


def build_one(odb: ObjectStore, parts: tuple[bytes, ...], value: bytes | None, path: Walk) -> bytes:
    """The new root tree for the change walk_one checked, its trees rebuilt from the bottom
    up into pending (the old versions leave the tree cache, the new ones join it)."""
    new: bytes | None = value
    mode = MODE_FILE
    for depth in range(len(parts) - 1, -1, -1):
        name = parts[depth]
        oid, entries, raw = path[depth]
        if new is None:  # a deletion: the name is there (walk_one saw it)
            if len(entries) == 1:
                continue  # the folder empties: drop it from its parent too
            entries = dict(entries)
            raw = dict(raw)
            del entries[name]
            del raw[name]
        else:
            known = name in entries
            entries = dict(entries)
            raw = dict(raw)
            entries[name] = (mode, new)
            raw[name] = raw_entry(name, mode, new)
            if not known:  # a new name: put it in its place
                entries = sort_entries(entries)
                raw = {n: raw[n] for n in entries}
        new = odb.add(TREE, b"".join(raw.values()), base=oid)
        odb.remember_tree(new, entries, raw)
        if oid is not None:
            odb.forget_tree(oid)
        mode = MODE_TREE
    return _empty(odb) if new is None else new


def _apply(
    odb: ObjectStore, oid: bytes | None, grouped: dict[bytes, PathChanges], at: tuple[bytes, ...]
) -> bytes | None:
    old: Entries = odb.tree(oid) if oid is not None else {}
    # Both in Git's order, kept while entries are only replaced or removed; the new tree's
    # bytes are joined from `raw`, so a wide tree costs two dict copies, not a re-encoding.
    entries = dict(old)
    raw = dict(odb.tree_raw(oid)[1]) if oid is not None else {}
    changed = resort = False

    def put(name: bytes, mode: bytes, new: bytes) -> None:
        nonlocal changed, resort
        now = entries.get(name)
        if now == (mode, new):
            return
        resort = resort or now is None or (now[0] == MODE_TREE) != (mode == MODE_TREE)
        entries[name] = (mode, new)
        raw[name] = raw_entry(name, mode, new)
        changed = True

    def drop(name: bytes) -> None:
        nonlocal changed
        if entries.pop(name, None) is not None:
            del raw[name]
            changed = True

    for name, changes in grouped.items():
        here: bytes | bool | None = False  # False: no change to `name` itself
        below: dict[bytes, PathChanges] = {}
        for rest, value in changes:
            if rest:
                below.setdefault(rest[0], []).append((rest[1:], value))
            else:
                here = value
        entry = entries.get(name)
        if below:
            if entry is not None and entry[0] != MODE_TREE and here is False:
                if all(v is None for _, v in changes):
                    continue  # deleting keys below a value: there are none to delete
                raise _shape((*at, name), "holds a value, so no key can be below it")
            sub = entry[1] if entry is not None and entry[0] == MODE_TREE else None
            new_sub = _apply(odb, sub, below, (*at, name))
            if new_sub is None:
                if sub is not None:
                    drop(name)
            else:
                if here is not False and here is not None:
                    raise _shape((*at, name), "is given a value and keys below it")
                put(name, MODE_TREE, new_sub)
                continue
        if here is None:
            if entry is not None and entry[0] in VALUE_MODES:
                drop(name)
        elif here is not False:
            if entry is not None and entry[0] == MODE_TREE and not below:
                raise _shape((*at, name), "has keys below it, so it cannot hold a value")
            assert isinstance(here, bytes)
            put(name, MODE_FILE, here)
    if not changed and oid is not None:
        return oid
    if not entries:
        return None
    if resort:  # a name came in (or went from value to folder): put everything in its place
        entries = sort_entries(entries)
        raw = {name: raw[name] for name in entries}
    new = odb.add(TREE, b"".join(raw.values()), base=oid)
    odb.remember_tree(new, entries, raw)
    if oid is not None:
        odb.forget_tree(oid)
    return new


def _shape(parts: tuple[bytes, ...], why: str) -> InvalidKey:
    key = path_key(parts)
    return InvalidKey(f"invalid key {key!r}: {key!r} {why} (a key is a value or a folder)")


def diff(odb: ObjectStore, a: bytes | None, b: bytes) -> dict[str, bytes | None]:
    """{key: blob id in `b`, or None} for every key whose value differs from the tree `a`
    (None: empty) to `b`."""
    out: dict[str, bytes | None] = {}
    _diff(odb, a, b, (), out)
    return out


def _diff(
    odb: ObjectStore,
    a: bytes | None,
    b: bytes | None,
    at: tuple[bytes, ...],
    out: dict[str, bytes | None],
) -> None:
    if a == b:
        return
    ea: Entries = odb.tree(a) if a is not None else {}
    eb: Entries = odb.tree(b) if b is not None else {}
    for name in ea.keys() | eb.keys():
        x, y = ea.get(name), eb.get(name)
        if x == y:
            continue
        xt = x[1] if x is not None and x[0] == MODE_TREE else None
        yt = y[1] if y is not None and y[0] == MODE_TREE else None
        xv = x[1] if x is not None and x[0] in VALUE_MODES else None
        yv = y[1] if y is not None and y[0] in VALUE_MODES else None
        if xt is not None or yt is not None:
            _diff(odb, xt, yt, (*at, name), out)
        if xv != yv:
            out[path_key((*at, name))] = yv


def keys(odb: ObjectStore, root: bytes, prefix: str) -> list[str]:
    """Every key under `root` starting with the string `prefix`, sorted."""
    head, slash, last = prefix.rpartition("/")
    oid: bytes | None = root
    if slash:
        found = lookup(odb, root, key_path(head))
        oid = found[1] if found is not None and found[0] == MODE_TREE else None
    out: list[str] = []
    if oid is not None:
        base = head + "/" if slash else ""
        _walk(odb, oid, base, last.encode("utf-8", "surrogateescape"), out)
    out.sort()
    return out


def _walk(odb: ObjectStore, oid: bytes, base: str, start: bytes, out: list[str]) -> None:
    for name, (mode, sub) in odb.tree(oid).items():
        if not name.startswith(start):
            continue
        key = base + name.decode("utf-8", "surrogateescape")
        if mode == MODE_TREE:
            _walk(odb, sub, key + "/", b"", out)
        elif mode in VALUE_MODES:
            out.append(key)
