"""The restore's feed without QEMU: a thread reads the pipe as QEMU's -incoming fd would."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from summon.targets.qemu.migration import FeedThread, MigrationFailed
from summon.targets.snapshots import CHUNK, CorruptSnapshot, Snapshot, SnapshotCache


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def saved(tmp_path: Path, data: bytes) -> Snapshot:
    writer = SnapshotCache(tmp_path / "snaps", limit=1 << 30).writer("f" * 64, "qemu", {})
    writer.write(data)
    return writer.commit()


def read_all(fd: int, into: list[bytes]) -> threading.Thread:
    def run() -> None:
        while data := os.read(fd, 1 << 16):
            into.append(data)
        os.close(fd)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def qemu_end(feeder: FeedThread) -> int:
    """What QEMU inherits: a copy of the pipe's read end (start() closes summon's)."""
    return os.dup(feeder.read_fd)


def test_the_reader_gets_the_state_byte_for_byte(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 1234)
    feeder = FeedThread(saved(tmp_path, data))
    feeder.prefetch()  # verifying before "QEMU" exists
    got: list[bytes] = []
    reader = read_all(qemu_end(feeder), got)
    feeder.start()
    feeder.join(10)
    reader.join(10)
    assert b"".join(got) == data


def test_a_bad_chunk_never_reaches_the_reader(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    snap = saved(tmp_path, data)
    with snap.state.open("r+b") as f:
        f.seek(2 * CHUNK + 7)
        f.write(bytes([data[2 * CHUNK + 7] ^ 0xFF]))
    feeder = FeedThread(snap)
    got: list[bytes] = []
    reader = read_all(qemu_end(feeder), got)
    feeder.start()
    with pytest.raises(CorruptSnapshot, match="chunk 2 of its state does not match"):
        feeder.join(10)
    reader.join(10)
    assert b"".join(got) == data[: 2 * CHUNK]  # the stream ends before the bad chunk


def test_cancel_before_qemu_started_leaves_no_thread_waiting(tmp_path: Path) -> None:
    feeder = FeedThread(saved(tmp_path, os.urandom(2 * CHUNK)))
    feeder.prefetch()
    feeder.cancel()
    feeder._verifier.join(10)
    assert not feeder._verifier.is_alive()
    with pytest.raises(MigrationFailed, match="cancelled before QEMU read it"):
        feeder.join(1)  # at once: nothing was started to wait for
