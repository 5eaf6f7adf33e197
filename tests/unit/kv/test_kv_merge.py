"""Merges: concurrent transactions and branches, under each conflict policy (hypothesis
properties), the JSON merge function, and the merge base against git's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kv_helpers import Clock, fsck, git

from summon import kv

KEYS = [f"k{i}" for i in range(8)] + ["d/a", "d/b"]
VALUES = st.binary(min_size=0, max_size=6)
# A change: key -> new value, or None to delete it.
CHANGES = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), VALUES), max_size=6)
STATES = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)
SETTINGS = settings(max_examples=150, deadline=None)


def _store(initial: dict[str, bytes]) -> kv.Store:
    store = kv.open_memory(clock=Clock())
    if initial:
        with store.transaction("initial") as tx:
            for key, value in initial.items():
                tx.set(key, value)
    return store


def _apply(state: dict[str, bytes], changes: dict[str, bytes | None]) -> dict[str, bytes]:
    out = dict(state)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _stage(tx: kv.Transaction, changes: dict[str, bytes | None]) -> None:
    for key, value in changes.items():
        if value is None:
            if tx.exists(key):
                tx.delete(key)
        else:
            tx.set(key, value)


def _effective(
    state: dict[str, bytes], changes: dict[str, bytes | None]
) -> dict[str, bytes | None]:
    """The changes that change something (a delete of a missing key is no change)."""
    return {k: v for k, v in changes.items() if state.get(k) != v}


def _contents(store: kv.Store) -> dict[str, bytes]:
    return {k: store.get(k) for k in store.list()}


@SETTINGS
@given(initial=STATES, first=CHANGES, second=CHANGES)
def test_concurrent_transactions_on_disjoint_keys_always_merge(
    initial: dict[str, bytes], first: dict[str, bytes | None], second: dict[str, bytes | None]
) -> None:
    second = {k: v for k, v in second.items() if k not in first}
    store = _store(initial)
    a = store.transaction("a")
    b = store.transaction("b")  # both begin from the same base
    _stage(a, first)
    _stage(b, second)
    a.commit()
    b.commit()  # policy "fail": disjoint keys never conflict
    assert _contents(store) == _apply(_apply(initial, first), second)
    store.close()


@SETTINGS
@given(
    initial=STATES,
    first=CHANGES,
    second=CHANGES,
    policy=st.sampled_from(["fail", "last-writer", "function"]),
)
def test_conflicting_transactions_follow_the_policy(
    initial: dict[str, bytes],
    first: dict[str, bytes | None],
    second: dict[str, bytes | None],
    policy: str,
) -> None:
    store = _store(initial)
    after_first = _apply(initial, first)
    a = store.transaction("a")
    b = store.transaction("b")
    _stage(a, first)
    _stage(b, second)
    a.commit()
    real_first = _effective(initial, first)
    real_second = _effective(initial, second)
    # A conflict: both changed a key, to different outcomes.
    conflicts = sorted(
        k for k in real_first.keys() & real_second.keys() if real_first[k] != real_second[k]
    )
    seen: list[tuple[str, bytes | None, bytes | None, bytes | None]] = []

    def pick_longer(
        key: str, base: bytes | None, current: bytes | None, incoming: bytes | None
    ) -> bytes | None:
        seen.append((key, base, current, incoming))
        return max(current or b"", incoming or b"") + b"!"

    b.policy = pick_longer if policy == "function" else policy
    if conflicts and policy == "fail":
        with pytest.raises(kv.Conflict) as caught:
            b.commit()
        assert caught.value.keys == conflicts
        assert _contents(store) == after_first  # nothing of b committed
        b.abort()
    else:
        b.commit()
        expected = _apply(after_first, {k: v for k, v in real_second.items()})
        if policy == "function":
            for key in conflicts:
                expected[key] = max(after_first.get(key, b""), real_second[key] or b"") + b"!"
            assert sorted(k for k, *_ in seen) == conflicts
            for key, base, current, incoming in seen:
                assert base == initial.get(key)
                assert current == after_first.get(key)
                assert incoming == real_second[key]
        assert _contents(store) == expected
    store.close()


@SETTINGS
@given(initial=STATES, ours=CHANGES, theirs=CHANGES)
def test_branch_merges_follow_the_same_rules(
    initial: dict[str, bytes], ours: dict[str, bytes | None], theirs: dict[str, bytes | None]
) -> None:
    store = _store(initial or {"seed": b"s"})
    start = _contents(store)
    store.create_branch("other")
    store.checkout("other")
    with store.transaction("theirs") as tx:
        _stage(tx, theirs)
    store.checkout("main")
    with store.transaction("ours") as tx:
        _stage(tx, ours)
    real_ours, real_theirs = _effective(start, ours), _effective(start, theirs)
    clash = {k for k in real_ours.keys() & real_theirs.keys() if real_ours[k] != real_theirs[k]}
    before = store.head
    if clash:
        with pytest.raises(kv.Conflict) as caught:
            store.merge("other")
        assert set(caught.value.keys) == clash and store.head == before
        store.merge("other", policy="last-writer")
        assert _contents(store) == _apply(_apply(start, real_ours), real_theirs)
    else:
        store.merge("other")
        assert _contents(store) == _apply(_apply(start, real_ours), real_theirs)
    store.close()


def test_merge_json_merges_fields_and_names_conflicts() -> None:
    base = json.dumps({"title": "milk", "done": False, "tags": ["a"]}).encode()
    ours = json.dumps({"title": "milk", "done": True, "tags": ["a"]}).encode()
    theirs = json.dumps({"title": "oat milk", "done": False, "tags": ["a"], "n": 1}).encode()
    merged = kv.merge_json("t", base, ours, theirs)
    assert merged is not None
    assert json.loads(merged) == {"title": "oat milk", "done": True, "tags": ["a"], "n": 1}
    both = json.dumps({"title": "bread", "done": False, "tags": ["a"]}).encode()
    with pytest.raises(kv.Conflict, match=r"\$\.title changed two ways") as caught:
        kv.merge_json("t", base, both, theirs)
    assert caught.value.keys == ["t"]
    with pytest.raises(kv.Conflict, match="not JSON"):
        kv.merge_json("t", base, b"{nope", theirs)
    assert kv.merge_json("t", None, b'{"a": 1}', b'{"b": 2}') == b'{"a":1,"b":2}'
    assert kv.merge_json("t", base, None, base) is None  # deleted on one side only
    with pytest.raises(kv.Conflict):
        kv.merge_json("t", base, None, ours)  # deleted on one side, changed on the other
    assert kv.merge_json("t", b"1", b"true", b"1") == b"true"  # true is not 1 in JSON


def test_the_json_policy_in_a_transaction(memory_store: kv.Store) -> None:
    memory_store.set("task", b'{"title": "milk", "done": false}')
    tx = memory_store.transaction("rename", policy="json")
    tx.set("task", b'{"title": "oat milk", "done": false}')
    memory_store.set("task", b'{"title": "milk", "done": true}')
    tx.commit()
    assert json.loads(memory_store.get("task")) == {"title": "oat milk", "done": True}
    with pytest.raises(ValueError, match="merge policy"):
        memory_store.transaction(policy="newest")


def test_merge_base_agrees_with_git(folder_store: kv.Store, folder: Path) -> None:
    s = folder_store
    s.set("a", b"0")
    s.create_branch("x")
    s.checkout("x")
    s.set("x", b"1")
    s.checkout("main")
    s.set("m", b"1")
    s.merge("x")
    s.checkout("x")
    s.set("x", b"2")
    s.checkout("main")
    s.set("m", b"2")
    s.merge("x")
    s.flush()
    fsck(folder)
    from summon.kv.history import merge_base

    main, x = s.at("main").commit, s.at("x").commit
    odb = s._repo.odb
    base = merge_base(odb, bytes.fromhex(main), bytes.fromhex(x))
    assert base is not None and base.hex() == git(folder, "merge-base", "main", "x").strip()
    assert [c.id for c in s.history()] == git(folder, "log", "--format=%H").split()
