"""The gateway at rest: workers that end when idle, the heap trimmed once every service is down."""

from __future__ import annotations

import asyncio
import sys
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


def test_the_heap_is_trimmed_once_at_rest_after_a_boot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(rest, "trim_heap", lambda: trims.append(1))
    others = threading.active_count() - 1  # threads of the test run's own, if any

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(IdleWorkers(idle=0.1))
        monkeypatch.setattr(threading, "active_count", lambda: real_count() - others)
        launcher = FakeLauncher(delay=0.05)
        port = free_port("127.0.0.1")
        gw = Gateway(parse(web_doc(port, "0.3s"), tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            await asyncio.sleep(0.5)
            assert trims == []  # nothing booted yet: nothing to give back
            await fetch(port, gw.services["web"].address)
            for _ in range(300):
                if trims:
                    break
                await asyncio.sleep(0.01)
            assert gw.services["web"].state == State.DOWN and trims == [1]
            await asyncio.sleep(0.5)
            assert trims == [1]  # once, until the next boot
        finally:
            await gw.close()

    real_count = threading.active_count
    run(main())


def test_trim_heap_imports_nothing_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ctypes", raising=False)
    rest.trim_heap()
    assert "ctypes" not in sys.modules
