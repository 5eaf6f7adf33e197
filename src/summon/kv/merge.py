"""Three-way merges of keys, and the conflict policies that decide the keys changed two ways.

A merge has three states: the base (where the two sides parted), the current state (what the
branch holds now) and the incoming changes (a transaction's, or a branch's since the base).
For each key the incoming side changed:

    incoming == base      -> nothing to do (a key written back as it was is not changed)
    current == base       -> take the incoming value (only the incoming side changed it)
    current == incoming   -> nothing to do (both made the same change)
    otherwise             -> a conflict, given to the policy:
        "fail"          collect it; raise Conflict naming every such key, commit nothing
        "last-writer"   take the incoming value (the side being committed or merged in)
        "json"          merge_json: JSON objects merged field by field, recursively
        a function      (key, base, current, incoming) -> value or None (delete); values are
                        bytes, or None where the key has none; it may raise Conflict

Keys only the current side changed are already in the current state. Values are compared by
their Git ids, so equal bytes are equal whatever wrote them.
"""

from __future__ import annotations

from summon.kv.errors import Conflict
from summon.kv.objects import BLOB
from summon.kv.tree import key_path, value_id

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.devices import MergeFunction, Policy
    from summon.kv.odb import ObjectStore

POLICIES = ("fail", "last-writer", "json")


def check_policy(policy: Policy) -> None:
    """ValueError unless `policy` is one of POLICIES or a function."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(
                f"merge policy {policy!r} is not one of {', '.join(POLICIES)} or a function "
                "(key, base, current, incoming) -> value"
            )
    elif not callable(policy):
        raise ValueError(f"merge policy {policy!r} is not a name or a function")


def three_way(
    odb: ObjectStore,
    base: bytes | None,
    current: bytes,
    incoming: dict[str, bytes | None],
    policy: Policy,
) -> dict[str, bytes | None]:
    """The changes (key -> blob id or None) to make to the tree `current` so that it holds
    `incoming` (key -> blob id or None), the changes made since the tree `base`, merged."""
    out: dict[str, bytes | None] = {}
    conflicts: list[str] = []
    details: list[str] = []
    function: MergeFunction | None = None
    if policy == "json":
        function = merge_json
    elif not isinstance(policy, str):
        function = policy
    for key, theirs in incoming.items():
        parts = key_path(key)
        was = value_id(odb, base, parts) if base is not None else None
        now = value_id(odb, current, parts)
        if theirs == was:
            continue  # written back as it was: the incoming side did not change it
        if now == was:
            if theirs != now:
                out[key] = theirs
        elif now == theirs:
            continue
        elif policy == "last-writer":
            out[key] = theirs
        elif function is None:
            conflicts.append(key)
        else:
            try:
                merged = function(key, _value(odb, was), _value(odb, now), _value(odb, theirs))
            except Conflict as e:
                conflicts.extend(e.keys or [key])
                details.append(str(e))
                continue
            if merged is not None and not isinstance(merged, bytes):
                raise TypeError(
                    f"the merge function returned {type(merged).__name__} for key {key!r}; "
                    "it must return bytes or None"
                )
            new = None if merged is None else odb.add(BLOB, merged)
            if new != now:
                out[key] = new
    if conflicts:
        detail = "; ".join(details) if details else f"policy {policy!r}"
        raise Conflict(conflicts, detail)
    return out


def _value(odb: ObjectStore, oid: bytes | None) -> bytes | None:
    return None if oid is None else odb.value(oid)


_ABSENT = object()


def merge_json(
    key: str, base: bytes | None, current: bytes | None, incoming: bytes | None
) -> bytes | None:
    """Merge three versions of a JSON value: objects field by field, recursively; any other
    value (string, number, list...) whole, taken from the side that changed it.

    Raises Conflict when a value is not JSON, or when both sides changed the same field (or a
    list, a number...) to different values. An absent key counts as absent, so a key created
    on both sides with objects merges their fields. The result is compact JSON text (UTF-8).
    """
    import json  # ~2 ms, paid only by apps that merge JSON

    def load(value: bytes | None) -> object:
        if value is None:
            return _ABSENT
        try:
            return json.loads(value)
        except ValueError:
            raise Conflict([key], "a value is not JSON, so policy 'json' cannot merge it") from None

    def same(a: object, b: object) -> bool:
        if a is _ABSENT or b is _ABSENT:
            return a is b
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    def merge(was: object, now: object, theirs: object, where: str) -> object:
        if same(now, theirs):
            return now
        if same(now, was):
            return theirs
        if same(theirs, was):
            return now
        if isinstance(now, dict) and isinstance(theirs, dict):
            old = was if isinstance(was, dict) else {}
            out = {}
            for field in [*now, *(f for f in theirs if f not in now)]:
                value = merge(
                    old.get(field, _ABSENT),
                    now.get(field, _ABSENT),
                    theirs.get(field, _ABSENT),
                    f"{where}.{field}",
                )
                if value is not _ABSENT:
                    out[field] = value
            return out
        raise Conflict([key], f"{where} changed two ways in JSON")

    result = merge(load(base), load(current), load(incoming), "$")
    if result is _ABSENT:
        return None
    return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
