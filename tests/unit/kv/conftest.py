"""Fixtures for summon.kv's tests: stores in memory and in folders, a clock, the real git."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import Clock

from summon import kv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory_store(clock: Clock) -> Iterator[kv.Store]:
    store = kv.open_memory(clock=clock)
    yield store
    store.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def folder_store(folder: Path, clock: Clock) -> Iterator[kv.Store]:
    store = kv.open_folder(str(folder), clock=clock)
    yield store
    store.close()
