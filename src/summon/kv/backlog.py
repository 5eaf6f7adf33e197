"""The bound on a store's backlog: the Git objects its commits made, held in memory until a
flush writes them to Git's files.

A flush starts once a batch's objects reach batch_bytes, so the backlog stays near that. On
a full volume the flush fails, and every commit after it kept adding to the backlog (the
journal's small records still found room): a commit in a folder of N keys adds a tree of N
entries, so memory grew far faster than the volume filled, until the app was killed for it.
Past twice the batch, with the last flush failed for want of room, a commit is refused
with StoreFull instead, the app's to handle like any full volume; the flush is tried again
(at most once a second) first, so a commit goes through as soon as there is room.
"""

from __future__ import annotations

import errno
import time

from summon.devices import StoreFull

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

RETRY_SECONDS = 1.0  # a full volume's flush is tried again this often, at most


class Backlog:
    """The check a store makes before each commit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes of objects waiting for Git's files
        self._tried = 0.0  # monotonic time of the last flush tried by check()

    def check(
        self,
        waiting: int,
        error: BaseException | None,
        flush: Callable[[], BaseException | None],
        where: str,
    ) -> None:
        """StoreFull if `waiting` bytes are past the limit and the last flush (`error`)
        failed for want of room, unless `flush()` (tried again) now succeeds."""
        if waiting < self.limit or not isinstance(error, StoreFull):
            return
        now = time.monotonic()
        if now - self._tried >= RETRY_SECONDS:
            self._tried = now
            error = flush()
            if error is None:
                return
        seen = error.errno if isinstance(error, OSError) and error.errno else errno.ENOSPC
        raise StoreFull(
            seen,
            f"{where} is full: {waiting >> 20} MB of commits wait in memory for room to be "
            "written; no more are taken until there is room (free some, or grow the volume)",
        )
