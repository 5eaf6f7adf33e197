"""The gateway at rest: workers that end when idle, the heap trimmed once it is at rest again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path

import pytest
from test_gateway_service import FakeLauncher, fetch, free_port, run, web_doc

from summon.gateway import rest
from summon.gateway.config import parse
from summon.gateway.rest import IdleWorkers
from summon.gateway.server import Gateway
from summon.gateway.service import State


def wait_until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_calls_run_on_workers_that_end_when_idle() -> None:
    pool = IdleWorkers(max_workers=3, idle=0.2)
    try:
        assert pool.submit(pow, 2, 10).result(5) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(5)
        # More work than idle workers: up to max_workers run at once, the rest waits its turn.
        gate = threading.Event()
        futures = [pool.submit(gate.wait, 5) for _ in range(5)]
        wait_until(lambda: pool.workers() == 3)
        gate.set()
        assert [f.result(5) for f in futures] == [True] * 5
        assert pool.workers() == 3
        wait_until(lambda: pool.workers() == 0)  # idle 0.2 s: every worker ended
        assert pool.submit(str, 7).result(5) == "7"  # and a new one is made for new work
        assert pool.workers() == 1
    finally:
        pool.shutdown()
    assert pool.workers() == 0
    with pytest.raises(RuntimeError):
        pool.submit(str, 1)


def test_shutdown_runs_what_was_queued_or_cancels_it() -> None:
    pool = IdleWorkers(max_workers=1, idle=5)
    gate = threading.Event()
    first = pool.submit(gate.wait, 5)
    queued = pool.submit(str, 2)
    threading.Timer(0.1, gate.set).start()
    pool.shutdown(wait=True)  # the worker does not wait 5 s for more: it ends at once
    assert first.result(0) is True and queued.result(0) == "2"
    pool = IdleWorkers(max_workers=1, idle=5)
    gate = threading.Event()
    first = pool.submit(gate.wait, 5)
    queued = pool.submit(str, 2)
    wait_until(lambda: first.running())
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    with pytest.raises(CancelledError):
        queued.result(5)
    assert first.result(5) is True


def test_the_loops_blocking_calls_leave_no_thread_behind() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(IdleWorkers(idle=0.1))
        before = threading.active_count()
        assert await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.05) for _ in range(4)))
        assert threading.active_count() > before
        await asyncio.sleep(0.5)
        assert threading.active_count() == before

    run(main())


def test_the_heap_is_trimmed_once_at_rest_after_start_a_boot_and_a_status_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(rest, "trim_heap", lambda: trims.append(1))
    others = threading.active_count() - 1  # threads of the test run's own, if any

    async def until(count: int) -> None:
        for _ in range(300):
            if len(trims) >= count:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # and no more than once for it
        assert len(trims) == count

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(IdleWorkers(idle=0.1))
        monkeypatch.setattr(threading, "active_count", lambda: real_count() - others)
        launcher = FakeLauncher(delay=0.05)
        port = free_port("127.0.0.1")
        gw = Gateway(parse(web_doc(port, "0.3s"), tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            await until(1)  # what start-up (every module's bytecode read) freed
            await fetch(port, gw.services["web"].address)
            await until(2)  # what the boot freed, once it is down again
            assert gw.services["web"].state == State.DOWN
            host, status_port = gw.config.status
            reader, writer = await asyncio.open_connection(host, status_port)
            writer.write(b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
            await until(3)  # what rendering the page freed
        finally:
            await gw.close()

    real_count = threading.active_count
    run(main())


def test_trim_heap_gives_freed_pages_back() -> None:
    """Holes between live objects, which free() leaves to the process, go back to the
    system (glibc: malloc_trim)."""

    def anon_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

    blocks = [bytes([i % 251]) * 100_000 for i in range(400)]  # below the mmap threshold
    before = anon_kib()
    del blocks[::2]  # every other one: holes between live blocks, none at the heap's top
    freed = anon_kib()
    rest.trim_heap()
    after = anon_kib()
    assert before - freed < 10_000  # free() alone gave back next to nothing
    assert freed - after > 15_000  # ~20 MB freed: most of it is given back
    assert len(blocks) == 200


def test_ctypes_is_loaded_for_a_trim_only_when_there_may_be_enough_to_give_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    now = rest.anonymous_kib()
    assert now > 1000  # this process's own, read from /proc
    monkeypatch.delitem(sys.modules, "ctypes", raising=False)
    assert not rest.worth_trimming(now)  # nothing grown since: ctypes would cost more
    assert rest.worth_trimming(now - 10 * rest.TRIM_WORTH_KIB)
    monkeypatch.setitem(sys.modules, "ctypes", object())
    assert rest.worth_trimming(now)  # loaded already (a boot did): trimming costs nothing more
