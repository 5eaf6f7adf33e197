"""A guest's state out of QEMU and back in: QEMU 7.2's migration, through pipes and QMP.

QEMU 7.2 has no `file:` migration and no mapped-ram, so the state travels as a migration
stream. Out (save): the guest is paused, QEMU gets the write end of a pipe over QMP (getfd,
SCM_RIGHTS: no shell, no `exec:cat`), migrates into it, and a thread reads the other end into
the snapshot cache's writer, which hashes as it writes. In (FeedThread, load_argv,
wait_loaded): QEMU starts paused (-S) with `-incoming fd:N`, N a pipe a thread fills with the
snapshot's state, each chunk checked against its digest before it is written
(summon.targets.snapshots.verified), so QEMU never parses a byte that was not verified; the
checking starts before QEMU does and overlaps its loading. Only when every chunk matched and
QEMU has loaded the whole stream does the caller `cont` the guest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import threading
import time
from typing import TYPE_CHECKING

from summon.errors import SummonError
from summon.targets.snapshots import CorruptSnapshot, Snapshot, SnapshotWriter, verified

if TYPE_CHECKING:
    from summon.targets.qemu.qmp import Qmp

FD_NAME = "summon-snapshot"
# Bytes/s: QEMU's default bound (32 MiB/s) would make a 50 MB snapshot take over a second.
MAX_BANDWIDTH = 1 << 40
PIPE_SIZE = 1 << 20  # a whole chunk: the writer hands it over in one go (64 KiB by default)
AHEAD = 64  # chunks verified ahead of QEMU at most (64 MiB)
_F_SETPIPE_SZ = 1031
POLL = 0.002  # seconds between QMP status polls (a poll costs QEMU ~50 us)


class MigrationFailed(SummonError):
    """QEMU could not save or load a guest's state."""


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def save(qmp: Qmp, writer: SnapshotWriter, timeout: float) -> None:
    """Pause the guest and write its state into writer; the guest stays paused after.

    Raises MigrationFailed (QEMU's reason) or what writer raised (a full disk); the caller
    commits or aborts the writer and resumes the guest.
    """
    r, w = _pipe()
    try:
        qmp.command("getfd", {"fdname": FD_NAME}, fds=(w,))
    finally:
        os.close(w)  # QEMU holds its own copy now
    failure: list[BaseException] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(r, PIPE_SIZE)
            except OSError as e:
                failure.append(e)
                return
            if not data:
                return
            if failure:
                continue  # the writer failed (a full disk): let QEMU finish, not stall
            try:
                writer.write(data)
            except BaseException as e:  # reported by save(), on its own thread
                failure.append(e)

    reader = threading.Thread(target=drain, name="snapshot-writer", daemon=True)
    reader.start()
    status: dict[str, object] = {}
    try:
        qmp.command("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        # Paused first: one pass over memory, no dirty-page rounds, and the state is that of
        # the guest waiting at its snapshot point.
        qmp.command("stop")
        qmp.command("migrate", {"uri": f"fd:{FD_NAME}"})
        deadline = time.monotonic() + timeout
        while True:
            status = qmp.command("query-migrate")
            if status.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(SummonError):
                    qmp.command("migrate_cancel")
                raise MigrationFailed(f"saving the guest took over {timeout:g}s")
            time.sleep(POLL)
    finally:
        reader.join(timeout)
        os.close(r)
    if failure:
        raise failure[0]
    if status.get("status") != "completed":
        why = status.get("error-desc") or status.get("status")
        raise MigrationFailed(f"QEMU could not save the guest: {why}")


def load_argv(fd: int) -> list[str]:
    """QEMU's arguments to start paused, loading a guest's state from the inherited fd."""
    return ["-S", "-incoming", f"fd:{fd}"]


class FeedThread:
    """Writes a snapshot's verified state into a pipe QEMU reads (its -incoming fd).

    Two threads: one reads and verifies chunks ahead, from before QEMU starts (prefetch()),
    the other writes verified chunks into the pipe as QEMU drains it (start()). So most of
    the hashing happens while QEMU starts up, and QEMU never waits for more than a chunk.
    """

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.read_fd, self._write_fd = _pipe()
        self.error: BaseException | None = None
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(AHEAD)
        self._stop = threading.Event()
        self._cancelled = False
        self._verifier = threading.Thread(target=self._verify, name="snapshot-verify", daemon=True)
        self._writer = threading.Thread(target=self._write, name="snapshot-feed", daemon=True)

    def prefetch(self) -> None:
        """Start verifying chunks ahead (before QEMU is started)."""
        self._verifier.start()

    def start(self) -> None:
        """Start writing into the pipe (QEMU has its end by now)."""
        os.close(self.read_fd)  # a reader gone means EPIPE here, not a hang
        if not self._verifier.is_alive() and self._verifier.ident is None:
            self._verifier.start()
        self._writer.start()

    def _verify(self) -> None:
        try:
            for data in verified(self.snap):
                if self._stop.is_set():
                    return
                self._chunks.put(data)
            self._chunks.put(None)
        except BaseException as e:  # handed to the writer, reported by join()
            self._chunks.put(e)

    def _write(self) -> None:
        try:
            while True:
                item = self._chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    self.error = item
                    return
                view = memoryview(item)
                while view:
                    view = view[os.write(self._write_fd, view) :]
        except BaseException as e:  # reported by join(), on the caller's thread
            self.error = e
        finally:
            self._stop.set()
            os.close(self._write_fd)  # QEMU sees the end; a stream cut short fails its load
            with contextlib.suppress(queue.Empty):
                while True:  # unblock a verifier waiting for room
                    self._chunks.get_nowait()

    def cancel(self) -> None:
        """Stop both threads (QEMU did not start, or the restore was given up). Idempotent."""
        self._stop.set()
        if self._writer.ident is None and not self._cancelled:  # nobody else closes the pipe
            self._cancelled = True
            for fd in (self.read_fd, self._write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a verifier waiting for room
                self._chunks.get_nowait()

    def join(self, timeout: float) -> None:
        """Wait for the whole state to be written; raise CorruptSnapshot or the write's error."""
        if self._cancelled:
            raise MigrationFailed("the snapshot's feed was cancelled before QEMU read it")
        self._writer.join(timeout)
        if self._writer.is_alive():
            raise MigrationFailed(f"QEMU did not read the snapshot's state within {timeout:g}s")
        if isinstance(self.error, CorruptSnapshot):
            raise self.error
        if self.error is not None:
            raise MigrationFailed(f"QEMU stopped reading the snapshot's state: {self.error}")


def wait_loaded(qmp: Qmp, deadline: float) -> None:
    """Wait until QEMU has loaded the incoming state and holds the guest paused."""
    while True:
        status = str(qmp.command("query-status").get("status"))
        if status == "paused":
            return
        if status != "inmigrate":
            raise MigrationFailed(f"QEMU did not load the snapshot (its state: {status})")
        if time.monotonic() > deadline:
            raise MigrationFailed("QEMU did not finish loading the snapshot in time")
        time.sleep(POLL)
