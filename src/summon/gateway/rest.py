"""The gateway at rest: no worker thread waiting for work, the heap's free pages given back.

Its memory at rest is a goal of its own (benchmarks/bench_perf.py). Every thread that has
run costs a stack and a malloc arena of its own that glibc keeps, and the loop's default
executor (concurrent.futures.ThreadPoolExecutor) keeps each worker it ever started, for
good: IdleWorkers is the loop's default executor instead, whose workers end once idle for a
while.
trim_heap gives glibc's free pages back once every service is down again, when that is
worth loading ctypes for (worth_trimming).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

IDLE = 10.0  # seconds a worker waits for work before it ends
_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class IdleWorkers(ThreadPoolExecutor):
    """Calls run on up to max_workers threads, made when there is more work than idle
    workers to take it (as ThreadPoolExecutor), and ended once idle for `idle` seconds.

    A ThreadPoolExecutor because asyncio's loop takes no other kind as its default executor;
    submit and shutdown are its own, so none of the base class's workers is ever started.
    """

    def __init__(self, max_workers: int | None = None, idle: float = IDLE) -> None:
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        super().__init__(self.max_workers)
        self.idle = idle
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Work] = deque()
        self._workers: set[threading.Thread] = set()
        self._waiting = 0  # workers waiting for work (they take the queue's first items)
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append((future, fn, args, kwargs))
            if len(self._queue) > self._waiting and len(self._workers) < self.max_workers:
                worker = threading.Thread(target=self._work, name="summon-gw-worker", daemon=True)
                self._workers.add(worker)
                worker.start()
            else:
                self._wake.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._waiting += 1
                    woken = self._wake.wait(self.idle)
                    self._waiting -= 1
                    if not woken and not self._queue:
                        break
                if not self._queue:  # idle for long enough, or shut down
                    self._workers.discard(threading.current_thread())
                    return
                work = self._queue.popleft()
            _run(*work)
            del work  # nothing of it kept while idle

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._wake.notify_all()
            workers = list(self._workers)
        if wait:
            for worker in workers:
                worker.join()

    def workers(self) -> int:
        """How many worker threads there are now."""
        with self._lock:
            return len(self._workers)


def _run(
    future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:  # the caller's to handle, as with any executor
        future.set_exception(e)
    else:
        future.set_result(result)


TRIM_WORTH_KIB = 512  # ctypes, once loaded for a trim, costs ~370 KiB of its own


def anonymous_kib() -> int:
    """This process's anonymous resident memory in KiB (0 where /proc cannot say)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def worth_trimming(floor_kib: int) -> bool:
    """Whether trim_heap is worth its ctypes: loaded already (booting loads it), or the
    process holds more than TRIM_WORTH_KIB above floor_kib, what it held before its services
    were set up. Measured at rest: 200 services (start-up, status pages) left ~660 KiB to
    give back, 5 services ~8 KiB, less than ctypes would cost."""
    return "ctypes" in sys.modules or anonymous_kib() - floor_kib > TRIM_WORTH_KIB


def trim_heap() -> None:
    """Give the pages glibc's malloc holds free back to the system (the main heap's and every
    thread's arena's): what start-up, status pages and booting used and freed."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (ImportError, OSError, AttributeError):
        pass  # no ctypes, or not glibc
