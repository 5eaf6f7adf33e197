"""The snapshot cache without a VM: records, verified feeds, HMAC, eviction, the size bound."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from summon.errors import SummonError, UserError
from summon.targets import snapshots
from summon.targets.snapshots import CHUNK, CorruptSnapshot, SnapshotCache, feed, key_of

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host key and config.toml in folders of the test's own."""
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("SUMMON_SNAPSHOTS", raising=False)
    return tmp_path


def save(cache: SnapshotCache, key: str, data: bytes, pieces: int = 7) -> snapshots.Snapshot:
    """A snapshot of data under key, written in uneven pieces as a migration would send it."""
    writer = cache.writer(key, "qemu", {"image": "dice:test", "memory": 64 * MiB})
    step = max(1, len(data) // pieces + 1)
    for at in range(0, len(data), step):
        writer.write(data[at : at + step])
    return writer.commit()


def state(size: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (size // 256)


def fed(snap: snapshots.Snapshot) -> bytes:
    parts: list[bytes] = []
    feed(snap, parts.append)
    return b"".join(parts)


def test_a_saved_snapshot_is_found_and_fed_back_byte_for_byte(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    data = state(2 * CHUNK + 4096)
    snap = save(cache, "k" * 64, data)
    assert snap.size == len(data) and len(snap.chunks) == 3
    assert snap.digest.startswith("blake2b-256:") and snap.target == "qemu"
    found = cache.find("k" * 64)
    assert found is not None and found.digest == snap.digest
    assert fed(found) == data
    assert cache.find("x" * 64) is None
    assert not [p for p in (tmp_path / "snaps").iterdir() if p.name.startswith(".")]


def test_a_flipped_byte_stops_the_feed_before_its_chunk(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    data = state(3 * CHUNK)
    snap = save(cache, "a" * 64, data)
    with snap.state.open("r+b") as f:
        f.seek(CHUNK + 10)
        f.write(b"\x00" if data[CHUNK + 10] else b"\x01")
    handed: list[bytes] = []
    with pytest.raises(CorruptSnapshot, match=r"snapshot aaaaaaaaaaaa: chunk 1 of its state"):
        feed(snap, handed.append)
    assert handed == [data[:CHUNK]]  # the damaged chunk never reached the reader


def test_a_state_longer_or_shorter_than_recorded_is_refused(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "b" * 64, state(CHUNK) + b"x" * 100)
    with snap.state.open("ab") as f:
        f.write(b"tail")
    size = CHUNK + 100
    with pytest.raises(CorruptSnapshot, match=f"holds {size + 4} bytes, its record says {size}"):
        cache.find(snap.key)


def test_a_record_rewritten_to_match_a_new_state_fails_the_hosts_hmac(tmp_path: Path) -> None:
    """Whoever swaps state and record together, digests recomputed, lacks this host's key."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "c" * 64, state(CHUNK))
    forged = state(CHUNK, seed=9)
    snap.state.write_bytes(forged)
    import hashlib

    def blake(data: bytes) -> str:
        return hashlib.blake2b(data, digest_size=32).hexdigest()

    record = json.loads((snap.folder / "snapshot.json").read_text())
    record["chunks"] = [blake(forged)]
    record["digest"] = "blake2b-256:" + blake(bytes.fromhex(record["chunks"][0]))
    (snap.folder / "snapshot.json").write_text(json.dumps(record))
    with pytest.raises(CorruptSnapshot, match="fails this host's HMAC"):
        cache.find(snap.key)
    (snap.folder / "snapshot.json").write_text("{not json")
    with pytest.raises(CorruptSnapshot, match="malformed"):
        cache.find(snap.key)
    # Nested past the parser's recursion bound: before, a RecursionError (internal error).
    (snap.folder / "snapshot.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptSnapshot, match="malformed"):
        cache.find(snap.key)


def test_the_host_key_is_private_and_kept(home: Path, tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    save(cache, "d" * 64, state(1024))
    key = home / "xdg_state_home" / "summon" / "snapshot.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    before = key.read_bytes()
    save(cache, "e" * 64, state(1024))
    assert key.read_bytes() == before


def test_a_records_about_is_under_the_hmac_too(tmp_path: Path) -> None:
    """Its `listening` is acted on (a restored guest's ports are not probed again)."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "f" * 64, state(CHUNK))
    record = json.loads((snap.folder / "snapshot.json").read_text())
    record["about"]["listening"] = "22/tcp"
    (snap.folder / "snapshot.json").write_text(json.dumps(record))
    with pytest.raises(CorruptSnapshot, match="fails this host's HMAC"):
        cache.find(snap.key)


def test_a_host_key_cut_short_is_replaced_not_used(home: Path, tmp_path: Path) -> None:
    key = home / "xdg_state_home" / "summon" / "snapshot.key"
    key.parent.mkdir(parents=True)
    key.write_bytes(b"\x00" * 3)
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "9" * 64, state(1024))
    assert len(key.read_bytes()) == 32 and key.read_bytes() != b"\x00" * 32
    assert cache.find(snap.key) is not None


def test_least_recently_used_go_first_past_the_bound(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=int(2.5 * MiB))
    old = save(cache, "1" * 64, state(MiB))
    used = save(cache, "2" * 64, state(MiB))
    os.utime(old.folder, (1000, 1000))
    os.utime(used.folder, (2000, 2000))
    cache.used(used)  # now: the most recent
    save(cache, "3" * 64, state(MiB))  # 3 MiB > 2.5 MiB: one must go, the least recently used
    assert sorted(k[0] for k, _ in cache.entries()) == ["2", "3"]


def test_a_snapshot_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=MiB)
    small = save(cache, "e" * 64, state(MiB // 2))
    with pytest.raises(SummonError, match="larger than the cache's bound"):
        save(cache, "f" * 64, state(2 * MiB))
    assert [key for key, _ in cache.entries()] == [small.key]  # the others stay


def test_a_lowered_bound_is_enforced_even_when_the_new_snapshot_is_not_kept(
    tmp_path: Path,
) -> None:
    """Before: a snapshot too large for a lowered bound went, and the older ones stayed over
    it (`summon snapshot ls`: 33.6 MB of 21.0 MB) and went on being restored."""
    roomy = SnapshotCache(tmp_path / "snaps", limit=4 * MiB)
    old = save(roomy, "a" * 64, state(MiB + MiB // 2))
    newer = save(roomy, "b" * 64, state(MiB // 2))
    os.utime(old.folder, (1, 1))  # the least recently used
    tight = SnapshotCache(tmp_path / "snaps", limit=MiB)
    with pytest.raises(SummonError, match="larger than the cache's bound"):
        save(tight, "c" * 64, state(2 * MiB))
    assert [key for key, _ in tight.entries()] == [newer.key]


def test_the_first_of_two_writers_of_one_key_wins(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    first = cache.writer("9" * 64, "qemu", {})
    second = cache.writer("9" * 64, "qemu", {})
    first.write(b"one")
    second.write(b"two")
    first.commit()
    snap = second.commit()
    assert fed(snap) == b"one"
    assert second.lost and not first.lost  # the saver says whose snapshot was kept
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == ["9" * 64]


def test_a_dead_writers_folder_is_swept(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    stale = tmp_path / "snaps" / ".tmp-0123456789abcdef-999999999"
    stale.mkdir(parents=True)
    (stale / "state").write_bytes(b"half")
    made = time.time() - 3600  # past SWEEP_GRACE
    os.utime(stale, (made, made))
    save(cache, "7" * 64, state(1024))
    assert not stale.exists()


def test_a_writers_folder_is_swept_by_its_lock_not_by_its_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers run in instances' pid namespaces, where a detached instance's monitor is pid 2.
    Before: a killed writer's folder named pid 2 (kthreadd's number on the host) was never
    swept, 34 MB each; a live writer whose number was free on the host was swept under it and
    its snapshot lost. Now a folder goes when nobody holds its lock, whatever its number."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    cache.root.mkdir(parents=True)
    dead = cache.root / ".tmp-0123456789abcdef-01234567-2"  # killed; pid 2 is alive here
    dead.mkdir()
    (dead / "state").write_bytes(b"half")
    made = time.time() - 3600  # past SWEEP_GRACE
    os.utime(dead, (made, made))
    monkeypatch.setattr(os, "getpid", lambda: 4194304)  # past pid_max: no such process here
    live = cache.writer("5" * 64, "qemu", {})
    monkeypatch.undo()
    os.utime(live.folder, (made, made))  # an old writer, still at work
    live.write(b"state" * 100)
    cache.evict()
    assert not dead.exists() and live.folder.exists()
    assert live.commit().size == 500
    assert [p.name for p in cache.root.iterdir()] == ["5" * 64]


def test_remove_and_a_removed_snapshot(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "8" * 64, state(1024))
    assert cache.remove(snap.key)
    assert not cache.remove(snap.key)
    assert cache.find(snap.key) is None


def test_key_of_is_canonical_and_sensitive() -> None:
    a = key_of({"memory": 64, "env": {"A": "1", "B": "2"}})
    assert a == key_of({"env": {"B": "2", "A": "1"}, "memory": 64})
    assert a != key_of({"memory": 65, "env": {"A": "1", "B": "2"}})
    assert len(a) == 64


def test_the_bound_comes_from_config_toml(home: Path) -> None:
    config = home / "xdg_config_home" / "summon" / "config.toml"
    assert snapshots.cache_limit() == snapshots.DEFAULT_LIMIT
    config.parent.mkdir(parents=True)
    config.write_text('snapshot_cache_size = "256M"\n')
    assert snapshots.cache_limit() == 256 * MiB
    config.write_text("snapshot_cache_size = 0\n")
    assert snapshots.cache_limit() == 0
    config.write_text('snapshot_cache_size = "lots"\n')
    with pytest.raises(UserError, match="snapshot_cache_size: 'lots' is not a size"):
        snapshots.cache_limit()


def test_the_cache_root_follows_summon_snapshots(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert snapshots.cache_root() == home / "xdg_cache_home" / "summon" / "snapshots"
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(home / "elsewhere"))
    assert SnapshotCache().root == home / "elsewhere"
    # Before: a detached run saved into its instance's folder (its cwd), unseen by ls.
    monkeypatch.setenv("SUMMON_SNAPSHOTS", "snaps")
    with pytest.raises(UserError, match="SUMMON_SNAPSHOTS must be an absolute folder"):
        SnapshotCache()


def test_a_snapshot_folder_without_its_record_is_refused_not_unseen(tmp_path: Path) -> None:
    """Before: find() took a folder whose record was deleted for no snapshot, so ls and rm
    never saw it and every later save of its key failed ("larger than the cache's bound")."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "6" * 64, state(1024))
    (snap.folder / "snapshot.json").unlink()
    with pytest.raises(CorruptSnapshot, match="its record is missing"):
        cache.find(snap.key)
    assert [key for key, _ in cache.entries()] == [snap.key]
    assert cache.remove(snap.key)
    assert fed(save(cache, snap.key, state(2048, seed=2))) == state(2048, seed=2)


def test_remove_takes_a_stray_file_or_link_where_a_folder_belongs(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    cache.root.mkdir()
    (cache.root / ("1" * 64)).write_text("not a snapshot")
    kept = tmp_path / "elsewhere"
    kept.mkdir()
    (kept / "precious").write_text("mine")
    (cache.root / ("2" * 64)).symlink_to(kept)
    assert sorted(key for key, _ in cache.entries()) == ["1" * 64, "2" * 64]  # both refused
    assert cache.remove("1" * 64) and cache.remove("2" * 64)
    assert cache.entries() == [] and list(cache.root.iterdir()) == []
    assert (kept / "precious").read_text() == "mine"  # a link's target is not the cache's


def test_names_that_are_not_keys_are_not_the_caches(tmp_path: Path) -> None:
    """SUMMON_SNAPSHOTS pointed at a folder with other things in it: ls does not list them,
    and neither rm nor eviction touches them."""
    cache = SnapshotCache(tmp_path / "snaps", limit=MiB)
    cache.root.mkdir()
    (cache.root / "notes").mkdir()
    (cache.root / "notes" / "todo.txt").write_text("keep me")
    (cache.root / "photo.jpg").write_bytes(b"x" * (2 * MiB))
    (cache.root / ("A" * 64)).mkdir()  # not lowercase hex: not a key either
    (cache.root / ".tmp-build-999999999").mkdir()  # a dead pid's, but not a name summon makes
    save(cache, "d" * 64, state(MiB // 2))
    assert [key for key, _ in cache.entries()] == ["d" * 64]
    assert not cache.remove("notes") and not cache.remove("photo.jpg")
    save(cache, "e" * 64, state(MiB // 2 + 4096))  # over the bound: "d..." goes, no other
    assert sorted(p.name for p in cache.root.iterdir()) == sorted(
        ["notes", "photo.jpg", "A" * 64, ".tmp-build-999999999", "e" * 64]
    )
    assert (cache.root / "notes" / "todo.txt").read_text() == "keep me"


def test_a_snapshot_moved_under_another_key_is_refused(tmp_path: Path) -> None:
    """A whole, intact snapshot renamed to the key of another guest is never that guest."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "4" * 64, state(2048))
    os.rename(snap.folder, cache.root / ("5" * 64))
    with pytest.raises(CorruptSnapshot, match="its record is for another key or format"):
        cache.find("5" * 64)


def refused_without_blocking(call: Callable[[], object]) -> str:
    """call()'s CorruptSnapshot message; a call still blocked after 20 s fails the test."""
    said: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            said.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "blocked on a FIFO put in a snapshot's place"
    assert len(said) == 1 and isinstance(said[0], CorruptSnapshot), said
    return str(said[0])


def test_a_fifo_in_place_of_a_record_or_state_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Before: a FIFO named snapshot.json hung every start of that guest and `snapshot ls`;
    one swapped in for the state after find() hung the restore's verifier for good."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    snap = save(cache, "3" * 64, state(2048))
    record = snap.folder / "snapshot.json"
    kept = record.read_bytes()
    record.unlink()
    os.mkfifo(record)
    why = refused_without_blocking(lambda: cache.find(snap.key))
    assert why == f"snapshot {snap.key[:12]}: its record is not a regular file"
    record.unlink()
    record.write_bytes(kept)
    found = cache.find(snap.key)
    assert found is not None
    found.state.unlink()
    os.mkfifo(found.state)
    why = refused_without_blocking(lambda: fed(found))
    assert why == f"snapshot {snap.key[:12]}: its state is not a regular file"
    why = refused_without_blocking(lambda: cache.find(snap.key))
    assert why == f"snapshot {snap.key[:12]}: its state is not a regular file"
