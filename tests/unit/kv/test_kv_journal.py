"""The journal and power cuts: every acknowledged commit survives a cut at any byte of the
journal and at any step of a recorded write log; nothing torn is ever replayed."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from kv_helpers import Clock, fsck

from summon import kv
from summon.kv import journal as jr
from summon.kv.memory import MemoryBackend

State = tuple[str, dict[str, str | None], dict[str, bytes]]


def state(store: kv.Store) -> State:
    """What an app can observe: the branch, every branch's head, the keys and values."""
    heads = {}
    for name in store.branches():
        heads[name] = store.at(name).commit
    return store.branch, heads, {k: store.get(k) for k in store.list()}


def _workload(clock: Clock) -> list[Callable[[kv.Store], object]]:
    """Changes of every kind the journal records, one record each: sets, deletes,
    transactions, branches, checkouts, merges, reverts."""

    def tx(s: kv.Store) -> object:
        with s.transaction("tx", author="Ada <ada@example.org>") as t:
            t.set("b/1", b"one" * 30)
            t.set("b/2", b"two")
            t.delete("a")
        return None

    return [
        lambda s: s.set("a", b"first"),
        lambda s: s.set("a", b"second " * 20),
        tx,
        lambda s: s.create_branch("side"),
        lambda s: s.checkout("side"),
        lambda s: s.set("side/x", b"x"),
        lambda s: s.checkout("main"),
        lambda s: s.set("b/2", b"two, changed"),
        lambda s: s.merge("side"),
        lambda s: s.revert(s.history()[-1].id),
        lambda s: s.delete("a"),
        lambda s: s.set("c", os.urandom(200)),
    ]


def test_scan_stops_at_a_torn_or_foreign_record() -> None:
    backend = MemoryBackend()
    j = jr.Journal(backend, reserve=0)
    j.open()
    for payload in (b"H" + b"\0\0\0\4main", b"x" * 10, b"y" * 300):
        j.append(payload)
    data = backend.read(j.active.path)
    _, generation, records, end = jr.scan(data)
    assert records == [b"H\0\0\0\4main", b"x" * 10, b"y" * 300] and end == len(data)
    assert generation == 0
    assert jr.scan(data[:-1])[2] == records[:2]  # the last record cut short
    flipped = bytearray(data)
    flipped[-5] ^= 1
    assert jr.scan(bytes(flipped))[2] == records[:2]  # a bit flipped in the last record
    other_salt = data[: len(jr.HEADER)] + bytes(8) + data[len(jr.HEADER) + 8 :]
    assert jr.scan(other_salt)[2] == []  # records of an earlier use of the file
    zeros = data + bytes(100)
    assert jr.scan(zeros)[2] == records  # reserved space after the records
    big_length = data + struct.pack(">II", 1 << 30, 0)
    assert jr.scan(big_length)[2] == records
    with pytest.raises(kv.CorruptStore, match="does not start with"):
        jr.scan(b"junk" * 10)


def test_records_carry_a_crc_over_salt_length_and_payload() -> None:
    backend = MemoryBackend()
    j = jr.Journal(backend, reserve=0)
    j.open()
    j.append(b"payload")
    data = backend.read(j.active.path)
    length, crc = struct.unpack(">II", data[jr.START : jr.START + 8])
    assert length == 7
    assert crc == zlib.crc32(b"payload", zlib.crc32(j.active.salt + struct.pack(">I", 7)))


@pytest.mark.parametrize("tail", ["cut", "zeros", "garbage"])
def test_a_power_cut_at_every_byte_of_the_journal(clock: Clock, tail: str) -> None:
    """Commit a workload without flushing, then cut the journal at each byte: reopening
    gives exactly the state after the last record wholly before the cut."""
    backend = MemoryBackend()
    store = kv.open_memory(backend, clock=clock, batch_records=10_000, batch_seconds=1e9)
    states = [state(store)]
    ends = [jr.START]
    for change in _workload(clock):
        change(store)
        states.append(state(store))
        ends.append(store._repo.journal.active.end)
    path = store._repo.journal.active.path
    durable = backend.power_cut()
    journal = durable.read(path)[: ends[-1] + 64]  # and a little of the reserved zeros
    assert len(set(ends)) == len(ends)  # one record per change
    # Every byte of the last three records, and around the ends of the others.
    cuts = set(range(ends[-4], ends[-1] + 1))
    cuts |= {end + d for end in ends for d in (-1, 0, 1)} & set(range(jr.START, ends[-1] + 1))
    checked = 0
    for cut in sorted(cuts):
        rest = len(journal) - cut
        filler = {"cut": b"", "zeros": bytes(rest), "garbage": os.urandom(rest)}[tail]
        files = dict(durable.durable)
        files[path] = journal[:cut] + filler
        reopened = kv.open_memory(MemoryBackend(files), clock=Clock())
        # The records whose bytes are all there (a zero filler may complete a record that
        # ends in a zero byte: then it is whole, byte for byte).
        whole = max(i for i, end in enumerate(ends) if files[path][:end] == journal[:end])
        assert state(reopened) == states[whole], f"cut at byte {cut}"
        reopened.close()
        checked += 1
    assert checked > 300


def _apply(backend: MemoryBackend, op: tuple[str, str, int, bytes]) -> None:
    kind, path, number, data = op
    if kind == "write":
        backend.write_at(path, number, data)
    elif kind == "sync":
        backend.sync(path)
    elif kind == "truncate":
        backend.truncate(path, number)
    elif kind == "replace":
        backend.write_atomic(path, data)
    else:
        backend.remove(path)


def test_a_power_cut_at_every_step_of_the_write_log(clock: Clock, tmp_path: Path) -> None:
    """Record every file operation of a workload with flushes and a gc; cut the power after
    each one: the store reopens to the state of the last acknowledged change (or a later
    one whose record was already durable), and git fsck finds the repository clean."""
    backend = MemoryBackend()
    store = kv.open_memory(backend, clock=clock, batch_records=3, batch_seconds=1e9)
    acked: list[tuple[int, State]] = [(len(backend.log), state(store))]
    for change in _workload(clock):
        change(store)
        acked.append((len(backend.log), state(store)))
    store.gc()
    acked.append((len(backend.log), state(store)))
    store.close()
    log = backend.log
    assert len(log) > 60 and {op for op, *_ in log} == {"write", "sync", "replace", "remove"}
    replay = MemoryBackend()
    for step in range(len(log) + 1):
        if step:
            _apply(replay, log[step - 1])
        cut = replay.power_cut()
        reopened = kv.open_memory(cut, clock=Clock())
        got = state(reopened)
        done = [acked[0][1]] + [s for at, s in acked if at <= step]  # [0]: the empty store
        later = [s for at, s in acked if at > step]
        # The last acknowledged state, or the next one if its record was durable already.
        assert got == done[-1] or (later and got == later[0]), f"after step {step}"
        reopened.close()
        if step % 7 == 0 or step == len(log):
            folder = tmp_path / f"at-{step}"
            for path, data in cut.durable.items():
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_bytes(data)
            for name in ("objects/pack", "refs/heads", "refs/tags"):
                (folder / name).mkdir(parents=True, exist_ok=True)
            fsck(folder)


def test_a_torn_tail_is_overwritten_by_the_next_commit(clock: Clock) -> None:
    backend = MemoryBackend()
    store = kv.open_memory(backend, clock=clock, batch_records=10_000, batch_seconds=1e9)
    store.set("a", b"1")
    store.set("b", b"2")
    durable = backend.power_cut()
    path = store._repo.journal.active.path
    journal = durable.read(path)
    end = store._repo.journal.active.end
    files = dict(durable.durable)
    files[path] = journal[: end - 3]  # the second record torn
    torn = MemoryBackend(files)
    # Reopen without letting the open flush reset the journal: replay must skip the tail.
    reopened = kv.open_memory(torn, clock=Clock(), batch_records=10_000)
    assert reopened.list() == ["a"]
    reopened.set("c", b"3")
    reopened.close()
    again = kv.open_memory(torn.power_cut(), clock=Clock())
    assert again.list() == ["a", "c"]


@pytest.mark.parametrize("cycles", [0, 1])
def test_both_journal_files_replay_oldest_first_after_a_cut_mid_flush(
    clock: Clock, cycles: int
) -> None:
    """A power cut while a background flush writes a batch: its records are in the older
    journal file, later commits in the newer; reopening replays both, in order (whichever
    file is older), and a torn tail of the newer file is dropped."""
    backend = MemoryBackend()
    store = kv.open_memory(backend, clock=clock, batch_records=10_000, batch_seconds=1e9)
    for _ in range(cycles):  # a whole flush cycle first: the files swap roles
        store._repo.journal.rotate()
        store._repo.flush()
    store.set("a", b"1")
    store.set("b", b"2")
    repo = store._repo
    # What start_flush hands to its thread, without the thread ever running.
    repo.odb.take_pending()
    repo.refs.snapshot()
    old = repo.journal.rotate()
    assert repo.journal.active is not old
    assert repo.journal.active.generation == old.generation + 1
    assert old is repo.journal.files[cycles]  # the older file is journal.0, then journal.1
    store.set("a", b"3")
    states = [state(store)]
    store.delete("b")
    states.append(state(store))
    new = repo.journal.active
    durable = backend.power_cut()
    reopened = kv.open_memory(durable, clock=Clock())
    assert state(reopened) == states[1]
    assert reopened.get("a") == b"3" and [c.message for c in reopened.history()] == [
        "delete b",
        "set a",
        "set b",
        "set a",
    ]
    reopened.close()
    files = dict(backend.power_cut().durable)
    files[new.path] = files[new.path][: new.end - 1]  # the last record torn
    torn = kv.open_memory(MemoryBackend(files), clock=Clock())
    assert state(torn) == states[0]
    torn.close()


def test_a_one_key_commit_is_journaled_before_its_tree_is_made(clock: Clock) -> None:
    """set() writes its record without the tree line (TREE_AFTER) and makes its trees while
    the disk writes it; a transaction of several keys writes the whole body. Both replay to
    the commits the store acknowledged."""
    backend = MemoryBackend()
    store = kv.open_memory(backend, clock=clock, batch_records=10_000, batch_seconds=1e9)
    one = store.set("a/b", b"value " * 20)
    with store.transaction("two keys") as tx:
        tx.set("a/c", b"c")
        tx.set("d", b"d")
    two = store.head
    records = store._repo.journal.active.load()
    kinds = [jr.decode(payload) for payload in records]
    assert [flags for *_, flags in kinds] == [jr.TREE_AFTER, 0]
    assert kinds[0][2].startswith(b"author ") and kinds[1][2].startswith(b"tree ")
    reopened = kv.open_memory(backend.power_cut(), clock=Clock())
    assert [c.id for c in reopened.history()] == [two, one]
    assert reopened.get("a/b") == b"value " * 20


def test_unknown_record_flags_are_corruption_not_a_guess() -> None:
    body = b"author a <a> 1 +0000\ncommitter a <a> 1 +0000\n\nm\n"
    for flags in (jr.TREE_AS_IS | jr.TREE_AFTER, 4, 0x80):
        payload = jr.encode_commit("refs/heads/main", body, [], flags)
        with pytest.raises(kv.CorruptStore, match="unknown flags"):
            jr.decode(payload)


class _SyncFails(MemoryBackend):
    """A disk whose next fdatasync reports it full, after the record was written."""

    fail = False

    def sync(self, path: str) -> None:
        if self.fail and path.startswith("summon-kv/journal"):
            self.fail = False
            raise kv.StoreFull("no space left on the test's disk")
        super().sync(path)


def test_a_record_whose_sync_fails_is_not_a_commit(clock: Clock) -> None:
    """The record of a set() is written before its objects are made; if its fdatasync then
    fails, the commit fails with StoreFull, the store is as before, and the next commit
    writes over the record that did not count."""
    backend = _SyncFails()
    store = kv.open_memory(backend, clock=clock, batch_records=10_000, batch_seconds=1e9)
    first = store.set("a", b"1")
    backend.fail = True
    with pytest.raises(kv.StoreFull):
        store.set("b", b"2")
    assert store.list() == ["a"] and store.head == first
    with pytest.raises(KeyError):
        store.get("b")
    third = store.set("c", b"3")
    assert [c.id for c in store.history()] == [third, first]
    reopened = kv.open_memory(backend.power_cut(), clock=Clock())
    assert reopened.list() == ["a", "c"] and reopened.head == third
    reopened.close()


def test_records_start_for_the_disk_without_dropping_cached_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit's record is handed to the disk early (POSIX_FADV_DONTNEED starts writeback),
    over a range that holds no whole page and does not end the file, so that the kernel
    drops no page the next record writes into; a record of a page or more is not hinted."""
    from summon.kv import backend as kv_backend

    hints: list[tuple[int, int, int]] = []
    real = kv_backend._advise
    assert real is not None

    def advise(fd: int, offset: int, size: int, advice: int) -> None:
        hints.append((offset, size, os.fstat(fd).st_size))
        real(fd, offset, size, advice)

    monkeypatch.setattr(kv_backend, "_advise", advise)
    store = kv.open_folder(str(tmp_path / "s"), batch_records=10_000, batch_seconds=1e9)
    for n in range(50):
        store.set(f"k/{n}", b"v" * n)
    store.set("big", os.urandom(8192))
    assert len(hints) == 50
    assert all(size < 4096 and offset + size < file_size for offset, size, file_size in hints)
    store.close()
    assert kv.open_folder(str(tmp_path / "s")).get("k/49") == b"v" * 49


def test_batch_bytes_bounds_the_objects_held_in_memory_too(clock: Clock) -> None:
    """A commit in a folder of N keys makes a new tree of N entries: a batch of small
    records holds far more in memory than in its journal. batch_bytes bounds both (the todo
    example, all its tasks in one folder, held 29 MB after 1,200 tasks and was OOM-killed at
    its 64 MB limit)."""
    bound = 256 << 10
    store = kv.open_memory(clock=clock, batch_records=10**6, batch_bytes=bound, batch_seconds=1e9)
    most = 0
    for i in range(600):
        store.set(f"tasks/{i:08d}", os.urandom(50).hex().encode(), message=f"add {i}")
        held = sum(len(body) for _, body in store._repo.odb.pending.values())
        most = max(most, held)
    assert store._repo.journal.size < bound  # the journal alone would not flush
    assert most < bound + (64 << 10)  # at most one commit's objects past the bound
    assert store.get("tasks/00000599") is not None and len(store.list("tasks/")) == 600
    store.close()
