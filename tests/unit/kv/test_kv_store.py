"""The KV_RW device as an app uses it: keys, values, commits, transactions, views, history,
revert, branches; the same on the memory and the folder backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import Clock

from summon import devices, kv


@pytest.fixture(params=["memory", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[kv.Store]:
    if request.param == "memory":
        s = kv.open_memory(clock=clock)
    else:
        s = kv.open_folder(str(tmp_path / "s"), clock=clock)
    yield s
    s.close()


def test_a_store_is_a_kv_rw_device() -> None:
    assert issubclass(kv.Store, devices.KV_RW)
    assert not issubclass(kv.Store, devices.KV_RO)  # the runtime tells them apart by type
    assert issubclass(kv.Snapshot, devices.KV_RO)


def test_a_new_store_is_empty_on_branch_main(store: kv.Store) -> None:
    assert store.head is None
    assert store.branch == "main"
    assert store.list() == []
    assert store.history() == []
    assert not store.exists("a")
    with pytest.raises(KeyError):
        store.get("a")


def test_set_get_delete_list_exists_size(store: kv.Store) -> None:
    c1 = store.set("tasks/1", b"milk")
    c2 = store.set("tasks/2", b"eggs")
    store.set("notes", b"")
    assert len(c1) == 40 and c1 != c2
    assert store.head == store.history()[0].id
    assert store.get("tasks/1") == b"milk"
    assert store.size("tasks/2") == 4
    assert store.get("notes") == b"" and store.exists("notes")
    assert store.list() == ["notes", "tasks/1", "tasks/2"]
    assert store.list("tasks/") == ["tasks/1", "tasks/2"]
    assert store.list("ta") == ["tasks/1", "tasks/2"]
    assert store.list("tasks/2") == ["tasks/2"]
    assert store.list("nothing/") == []
    store.delete("tasks/1")
    assert not store.exists("tasks/1")
    assert store.list() == ["notes", "tasks/2"]
    with pytest.raises(KeyError):
        store.delete("tasks/1")
    with pytest.raises(KeyError):
        store.size("tasks/1")


def test_values_are_bytes(store: kv.Store) -> None:
    store.set("a", bytearray(b"xy"))
    store.set("b", memoryview(b"zz"))
    assert store.get("a") == b"xy" and store.get("b") == b"zz"
    with pytest.raises(TypeError, match="encode text first"):
        store.set("c", "text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/./b", "../up", "a/", ".git/config", "x/.GIT", "x/.gitmodules"]
)
def test_invalid_keys_raise_invalid_key(store: kv.Store, key: str) -> None:
    with pytest.raises(devices.InvalidKey):
        store.set(key, b"v")
    with pytest.raises(KeyError):  # InvalidKey is a KeyError: "not found" code answers the same
        store.get(key)


def test_a_key_cannot_be_a_value_and_a_folder(store: kv.Store) -> None:
    store.set("a", b"1")
    with pytest.raises(devices.InvalidKey, match="holds a value"):
        store.set("a/b", b"2")
    store.set("c/d", b"3")
    with pytest.raises(devices.InvalidKey, match="keys below it"):
        store.set("c", b"4")
    with store.transaction() as tx:  # replacing the value by a folder in one commit is fine
        tx.delete("a")
        tx.set("a/b", b"2")
    assert store.list() == ["a/b", "c/d"]


def test_setting_the_same_value_commits_nothing(store: kv.Store) -> None:
    first = store.set("a", b"1")
    assert store.set("a", b"1") == first
    assert len(store.history()) == 1


def test_messages_and_authors(store: kv.Store) -> None:
    store.set("a", b"1")
    store.set("b", b"2", message="second\n\nwith a body", author="Ada <ada@example.org>")
    store.delete("a", author="Bob")
    log = store.history()
    assert [c.message for c in log] == ["delete a", "second\n\nwith a body", "set a"]
    assert [c.author for c in log] == [
        "Bob <>",
        "Ada <ada@example.org>",
        "summon <summon@localhost>",
    ]
    assert log[0].parents == (log[1].id,) and log[2].parents == ()
    assert log[0].time > log[1].time > log[2].time
    for bad in ("", "  ", "a\0b"):
        with pytest.raises(ValueError, match="commit message"):
            store.set("c", b"3", message=bad)
    for who in ("<x@y>", "A <x", "A <x> trailing", "A\nB <x>"):
        with pytest.raises(ValueError, match="author"):
            store.set("c", b"3", author=who)
    assert not store.exists("c")


def test_transaction_commits_atomically_and_reads_its_own_writes(store: kv.Store) -> None:
    store.set("a", b"1")
    with store.transaction("move a to b", author="Ada <ada@example.org>") as tx:
        assert tx.base == store.head
        tx.set("b", tx.get("a"))
        tx.delete("a")
        assert tx.list() == ["b"] and not tx.exists("a") and tx.get("b") == b"1"
        assert store.list() == ["a"]  # nothing visible before commit
    assert store.list() == ["b"]
    assert store.history()[0].message == "move a to b"
    assert len(store.history()) == 2


def test_transaction_aborts_on_exception_and_default_message(store: kv.Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.set("a", b"1")
        raise RuntimeError("app failure")
    assert store.list() == [] and store.head is None
    with store.transaction() as tx:
        tx.set("b", b"2")
        tx.set("a", b"1")
    assert store.history()[0].message == "set a, set b"
    tx2 = store.transaction()
    assert tx2.commit() == store.head  # no change: no commit
    with pytest.raises(ValueError):
        tx2.set("c", b"3")


def test_transaction_is_usable_with_async_with(store: kv.Store) -> None:
    async def app() -> None:
        async with store.transaction("async") as tx:
            tx.set("a", b"1")
            await asyncio.sleep(0)
            tx.set("b", b"2")

    asyncio.run(app())
    assert store.list() == ["a", "b"]


def test_snapshot_of_a_past_commit_never_changes(store: kv.Store) -> None:
    c1 = store.set("a", b"1")
    store.set("a", b"2")
    store.set("b", b"3")
    view = store.at(c1)
    assert isinstance(view, devices.KV_RO)
    assert view.get("a") == b"1" and view.list() == ["a"] and view.size("a") == 1
    assert not view.exists("b")
    assert store.at("main").get("a") == b"2"
    with pytest.raises(devices.UnknownCommit):
        store.at("0" * 40)
    with pytest.raises(KeyError):
        store.at("no-such-branch")


def test_history_of_one_key(store: kv.Store) -> None:
    c1 = store.set("a", b"1")
    store.set("b", b"1")
    c3 = store.set("a", b"2")
    c4 = store.delete("a")
    store.set("b", b"2")
    assert [c.id for c in store.history("a")] == [c4, c3, c1]
    assert [c.id for c in store.history("a", limit=2)] == [c4, c3]
    assert len(store.history(limit=3)) == 3


def test_revert_restores_a_past_state_as_a_new_commit(store: kv.Store) -> None:
    c1 = store.set("a", b"1")
    store.set("a", b"2")
    store.set("b", b"3")
    r = store.revert(c1)
    assert store.list() == ["a"] and store.get("a") == b"1"
    log = store.history()
    assert log[0].id == r and log[0].message == f"revert to {c1}"
    assert len(log) == 4  # the reverted commits stay in history
    assert store.revert(c1) == r  # already there: nothing to commit


def test_branches_create_checkout_delete(store: kv.Store) -> None:
    with pytest.raises(ValueError, match="no commit yet"):
        store.create_branch("x")
    store.set("a", b"1")
    store.create_branch("feature/x")
    assert store.branches() == ["feature/x", "main"]
    store.checkout("feature/x")
    assert store.branch == "feature/x"
    store.set("a", b"2")
    assert store.get("a") == b"2"
    store.checkout("main")
    assert store.get("a") == b"1"
    for bad in ("feature/x", "feature", "bad name", "x..y", ".hidden", "x.lock", "-x", "HEAD"):
        with pytest.raises(ValueError):
            store.create_branch(bad)
    with pytest.raises(devices.UnknownCommit):
        store.checkout("nope")
    with pytest.raises(ValueError, match="current branch"):
        store.delete_branch("main")
    store.delete_branch("feature/x")
    assert store.branches() == ["main"]


def test_merge_fast_forward_and_merge_commit(store: kv.Store) -> None:
    store.set("a", b"1")
    store.create_branch("topic")
    store.checkout("topic")
    t1 = store.set("b", b"2")
    store.checkout("main")
    assert store.merge("topic") == t1  # a fast-forward: main had not moved
    assert store.history()[0].id == t1
    store.checkout("topic")
    store.set("c", b"3")
    store.checkout("main")
    store.set("d", b"4")
    m = store.merge("topic", message="bring topic in")
    merge = store.history()[0]
    assert merge.id == m and len(merge.parents) == 2 and merge.message == "bring topic in"
    assert store.list() == ["a", "b", "c", "d"]
    assert store.merge("topic") == m  # nothing new


def test_closed_store_refuses_calls(store: kv.Store) -> None:
    store.set("a", b"1")
    store.close()
    store.close()  # safe to repeat
    with pytest.raises(kv.StoreClosed):
        store.get("a")
    with pytest.raises(ValueError):
        store.set("a", b"2")


def test_on_durable_is_called_for_every_commit_and_flush(clock: Clock) -> None:
    calls: list[int] = []
    store = kv.open_memory(clock=clock, on_durable=lambda: calls.append(1), batch_records=3)
    for i in range(3):
        store.set(f"k{i}", b"v")
    assert len(calls) == 4  # three commits, one flush (the third commit filled the batch)
    store.close()


def test_reopening_a_folder_store_gives_the_same_state(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "s")
    with kv.open_folder(path, clock=clock) as s:
        s.set("a", b"1")
        s.create_branch("b")
        head = s.head
    with kv.open_folder(path, clock=clock) as s:
        assert s.head == head and s.get("a") == b"1" and s.branches() == ["b", "main"]


def test_a_folder_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("hello")
    with pytest.raises(kv.UnsupportedRepository, match="neither empty nor a Git repository"):
        kv.open_folder(str(tmp_path / "x"))
    (tmp_path / "wt" / ".git").mkdir(parents=True)
    with pytest.raises(kv.UnsupportedRepository, match="work tree"):
        kv.open_folder(str(tmp_path / "wt"))


def _git_view_by_timer(tmp_path: Path, clock: Clock, on_worker: bool) -> None:
    path = tmp_path / "s"
    store = kv.open_folder(str(path), clock=clock, batch_seconds=0.05)
    ref = path / "refs" / "heads" / "main"

    async def app() -> str:
        loop = asyncio.get_running_loop()
        if on_worker:
            store.attach_loop(loop)  # as the runtime does when it starts serving
            head = await loop.run_in_executor(None, store.set, "a", b"1")
        else:
            head = store.set("a", b"1")
        assert not ref.exists()  # in the journal only
        for _ in range(100):
            await asyncio.sleep(0.02)
            if ref.exists():
                break
        return head

    head = asyncio.run(app())
    store._repo.wait()  # the timer started a background flush: let it finish
    assert ref.read_text().strip() == head
    store.close()


def test_a_quiet_async_app_gets_its_git_view_by_timer(tmp_path: Path, clock: Clock) -> None:
    """Under asyncio, a commit arms a timer: the batch reaches Git's files after
    batch_seconds even when no other commit or close comes."""
    _git_view_by_timer(tmp_path, clock, on_worker=False)


def test_a_quiet_wsgi_app_gets_its_git_view_by_timer(tmp_path: Path, clock: Clock) -> None:
    """A WSGI app commits on the server's worker threads, where no loop runs: the timer goes
    on the loop the runtime serves it on (attach_loop), and the Git view catches up although
    no other commit or close comes."""
    _git_view_by_timer(tmp_path, clock, on_worker=True)


def test_threads_may_share_a_store(tmp_path: Path, clock: Clock) -> None:
    import threading

    store = kv.open_folder(str(tmp_path / "s"), clock=clock, batch_records=30)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                store.set(f"t{n}/{i % 5}", b"%d" % i)
                store.get(f"t{n}/{i % 5}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.history()) == 160
    assert store.get("t3/4") == b"39"
    store.close()
