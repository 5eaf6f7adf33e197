"""Fixtures for the TLS unit tests: one test PKI per session (see tls_pki.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tls_pki import PKI, build_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(Path(tmp_path_factory.mktemp("pki")))
