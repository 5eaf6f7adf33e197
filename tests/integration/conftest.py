"""Fixtures for the registry tests (test_registry.py, test_registry_failures.py), each made
once per module: a real registry without auth on loopback, and a summon home that ships to it
(test_registry_retry.py has its own). registry_checks.py's asserts are rewritten as a test
module's are, so a failing check shows what it compared.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry_server import Registry, start_registry, stop_registry
from summon_cli import EXAMPLES, Summon

pytest.register_assert_rewrite("registry_checks")
from registry_checks import new_summon  # noqa: E402  (once its rewrite is registered)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    stop_registry(reg)


@pytest.fixture(scope="module")
def shipper(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    """A home holding a built examples/http as http:built, and a key pair."""
    s = new_summon(tmp_path_factory, "shipper")
    s.ok("build", str(EXAMPLES / "http"), "-t", "http:built")
    s.ok("key", "generate", str(s.home / "team"))
    s.ok("key", "generate", str(s.home / "stranger"))
    return s
