"""One writer per store (the lock), and a full volume (a small tmpfs): typed errors, and a
store that stays readable and consistent."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import Clock, fsck

from summon import kv
from summon.kv import backend as kv_backend


def test_a_second_opener_gets_store_locked_naming_the_holder(folder: Path) -> None:
    first = kv.open_folder(str(folder))
    with pytest.raises(kv.StoreLocked, match=f"process {os.getpid()} on "):
        kv.open_folder(str(folder))
    first.close()
    kv.open_folder(str(folder)).close()  # free again once closed


def test_the_lock_is_held_by_another_process_until_it_dies(folder: Path) -> None:
    code = (
        "import sys; from summon import kv; s = kv.open_folder(sys.argv[1]); "
        "print('ready', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
            with pytest.raises(kv.StoreLocked, match=f"process {holder.pid} "):
                kv.open_folder(str(folder))
        finally:
            holder.kill()
    kv.open_folder(str(folder)).close()  # the kernel released the lock with the process


def test_the_memory_store_has_one_writer_too() -> None:
    backend = kv.MemoryBackend()
    store = kv.open_memory(backend)
    with pytest.raises(kv.StoreLocked):
        kv.open_memory(backend)
    store.close()
    kv.open_memory(backend).close()


def test_without_flock_the_lock_degrades_to_a_warning(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(RuntimeWarning, match="no exclusive lock"):
        store = kv.open_folder(str(folder))
    store.set("a", b"1")
    store.close()

    def broken(fd: int, op: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="I/O error"):
        kv.open_folder(str(folder))  # only "not supported" degrades; real failures do not
    assert kv_backend.UNSUPPORTED  # the errnos that degrade are named in one place


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, as a full volume is hard to get otherwise (needs root)."""
    mount = tmp_path / "volume"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_volume_fails_commits_with_store_full_and_stays_readable(
    small_volume: Path,
) -> None:
    path = str(small_volume / "store")
    store = kv.open_folder(path, clock=Clock(), batch_records=20)
    acked: dict[str, bytes] = {}
    with pytest.raises(kv.StoreFull) as caught:
        for i in range(10_000):
            value = os.urandom(1500)  # incompressible: the volume really fills
            store.set(f"k/{i:05d}", value)
            acked[f"k/{i:05d}"] = value
    assert caught.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert "is full" in str(caught.value)
    assert isinstance(caught.value, OSError)
    packs = list(Path(path, "objects", "pack").glob("*.pack"))
    assert len(packs) >= 2  # batches were flushed to Git's files until the volume filled
    assert len(packs) == len(list(Path(path, "objects", "pack").glob("*.idx")))
    head = store.head
    for _ in range(3):  # still full, still consistent: nothing half-made is visible
        with pytest.raises(kv.StoreFull):
            store.set("another", os.urandom(4000))
    assert store.head == head
    assert {k: store.get(k) for k in store.list()} == acked
    with pytest.raises(kv.StoreFull):
        with store.transaction("many") as tx:
            for i in range(50):
                tx.set(f"t/{i}", os.urandom(1000))
    assert store.head == head
    store.close()  # the last batch may not fit: the journal keeps it
    reopened = kv.open_folder(path, clock=Clock())
    assert {k: reopened.get(k) for k in reopened.list()} == acked
    assert reopened.head == head
    reopened.close()
    fsck(path)  # the Git view may lag, but it is whole


def test_a_full_volume_bounds_the_commits_waiting_in_memory(
    small_volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a flush failed for want of room, commits went on into the journal's small
    records while the Git objects they made (a tree of every key in the folder, each time)
    piled up in memory without end. Past twice a batch, a commit is refused with StoreFull;
    once there is room again, the backlog is written and commits go on."""
    from summon.kv import backlog

    monkeypatch.setattr(backlog, "RETRY_SECONDS", 0.0)
    path = str(small_volume / "store")
    filler = small_volume / "filler"
    filler.write_bytes(bytes(96 << 10))  # room to free afterwards
    batch = 64 << 10
    store = kv.open_folder(path, clock=Clock(), batch_bytes=batch, background=False)
    acked: dict[str, bytes] = {}
    with pytest.raises(kv.StoreFull) as caught:
        for i in range(20_000):
            store.set(f"tasks/{i:05d}", b"%d" % i)  # one folder: its tree grows each time
            acked[f"tasks/{i:05d}"] = b"%d" % i
            assert store._repo.odb.pending_bytes < 3 * batch  # the backlog stays bounded
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith(f"[Errno 28] {path} is full: ")
    assert "wait in memory for room to be written; no more are taken until there is room" in (
        str(caught.value)
    )
    assert {k: store.get(k) for k in store.list()} == acked  # all it acknowledged, readable
    filler.unlink()
    store.set("after", b"room again")  # the backlog went to Git's files first
    acked["after"] = b"room again"
    store.close()
    reopened = kv.open_folder(path, clock=Clock())
    assert {k: reopened.get(k) for k in reopened.list()} == acked
    reopened.close()
    fsck(path)
