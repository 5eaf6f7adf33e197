"""The console log: bounded by rotation, read back in order, tailed, followed through rotations."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from summon.instances.console import ConsoleLog, follow, read_all, tail


def test_rotation_bounds_the_log(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path, max_bytes=100)
    lines = [f"line {i:03}\n".encode() for i in range(100)]  # 9 bytes each
    for line in lines:
        log.write(line)
    log.close()
    assert (tmp_path / "console.log").stat().st_size <= 100
    assert (tmp_path / "console.log.1").stat().st_size <= 100
    data = read_all(tmp_path)
    assert data.endswith(b"".join(lines[-11:]))  # the newest lines, in order
    assert b"".join(lines).endswith(data)  # and nothing but a suffix of what was written


def test_tail() -> None:
    data = b"a\nb\nc\nd"
    assert tail(data, None) == data
    assert tail(data, 2) == b"c\nd"
    assert tail(data, 10) == data
    assert tail(data, 0) == b""


def test_pump_copies_a_pipe_until_eof(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path)
    r, w = os.pipe()
    thread = log.pump(r)
    os.write(w, b"hello\n")
    os.write(w, b"world\n")
    os.close(w)
    thread.join(5)
    assert not thread.is_alive()
    assert read_all(tmp_path) == b"hello\nworld\n"


def test_follow_reads_across_a_rotation_until_done(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path, max_bytes=64)
    log.write(b"before\n")
    finished = threading.Event()
    got: list[bytes] = []

    def reader() -> None:
        for chunk in follow(tmp_path, len(b"before\n"), finished.is_set, poll=0.01):
            got.append(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    expected = b"".join(f"chunk {i:02} of the console\n".encode() for i in range(20))
    for i in range(20):
        log.write(f"chunk {i:02} of the console\n".encode())  # 26 bytes: rotates every 2
        time.sleep(0.02)
    finished.set()
    thread.join(5)
    assert not thread.is_alive()
    assert b"".join(got) == expected


def test_a_full_disk_drops_output_but_never_the_app(tmp_path: Path) -> None:
    """The app's console is a pipe the monitor drains: when the log's disk is full the output
    is dropped (and the log says how much once there is room again), but the pipe is still
    drained, so the app's writes never fail and never block."""
    log = ConsoleLog(tmp_path)
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    room = os.dup(log._fd)
    os.dup2(full, log._fd)
    r, w = os.pipe()
    thread = log.pump(r)
    lost = b"x" * 65536
    for _ in range(8):  # 512 KB: far more than a pipe holds, so the pump must keep reading
        os.write(w, lost)
    time.sleep(0.2)
    os.dup2(room, log._fd)  # space again
    os.write(w, b"after\n")
    os.close(w)
    thread.join(5)
    assert not thread.is_alive()
    log.close()
    data = read_all(tmp_path)
    assert b"x" not in data
    assert data.endswith(b"after\n")
    assert b"524288 bytes of console output dropped (No space left on device)" in data
    os.close(full)
    os.close(room)
