"""A guest's state out of QEMU and back in: QEMU 7.2's migration, through pipes and QMP.

QEMU 7.2 has no `file:` migration and no mapped-ram, so the state travels as a migration
stream. Out (save): the guest is paused, QEMU gets the write end of a pipe over QMP (getfd,
SCM_RIGHTS: no shell, no `exec:cat`), migrates into it, and a thread reads the other end into
the snapshot cache's writer, which hashes as it writes. In (FeedThread, load_argv,
wait_loaded): QEMU starts paused (-S) with `-incoming fd:N`, N a pipe a thread fills with the
snapshot's state, each chunk checked against its digest before it is written
(summon.targets.snapshots.feed), so QEMU never parses a byte that was not verified, and the
check overlaps QEMU's loading. Only when every chunk matched and QEMU has loaded the whole
stream does the caller `cont` the guest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import TYPE_CHECKING

from summon.errors import SummonError
from summon.targets.snapshots import CorruptSnapshot, Snapshot, SnapshotWriter, feed

if TYPE_CHECKING:
    from summon.targets.qemu.qmp import Qmp

FD_NAME = "summon-snapshot"
# Bytes/s: QEMU's default bound (32 MiB/s) would make a 50 MB snapshot take over a second.
MAX_BANDWIDTH = 1 << 40
PIPE_SIZE = 1 << 20  # fewer wake-ups between the feeder and QEMU than the 64 KiB default
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
        try:
            while data := os.read(r, PIPE_SIZE):
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
    """Writes a snapshot's verified state into a pipe QEMU reads (its -incoming fd)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.read_fd, self._write_fd = _pipe()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="snapshot-feed", daemon=True)

    def start(self) -> None:
        os.close(self.read_fd)  # QEMU has it by now; a reader gone means EPIPE here, not a hang
        self._thread.start()

    def _run(self) -> None:
        def write(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view) :]

        try:
            feed(self.snap, write)
        except BaseException as e:  # reported by join(), on the caller's thread
            self.error = e
        finally:
            os.close(self._write_fd)

    def join(self, timeout: float) -> None:
        """Wait for the whole state to be written; raise CorruptSnapshot or the write's error."""
        self._thread.join(timeout)
        if self._thread.is_alive():
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
