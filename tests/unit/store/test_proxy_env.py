"""A registry on this machine is reached straight, whatever proxy the environment names.

With HTTPS_PROXY (or HTTP_PROXY, ALL_PROXY) set, as on many company machines, summon sent
its requests to 127.0.0.1:5000 through that proxy, which cannot reach this machine's
registry: `summon push/pull/login` failed with 'cannot reach registry 127.0.0.1:5000' while
podman and skopeo (Go's clients never proxy loopback) worked.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from localhttp import LocalHTTP, Quiet

from summon.store.reference import RemoteRef
from summon.store.registry import Registry


def dead_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlainRegistry(LocalHTTP):
    """Answers GET /v2/ with 200 over plain HTTP, as docker-registry does."""

    def __init__(self) -> None:
        class Handler(Quiet):
            def do_GET(self) -> None:
                self.reply(b"{}", status=200 if self.path == "/v2/" else 404)

        super().__init__(Handler)


@pytest.fixture
def registry() -> Iterator[PlainRegistry]:
    server = PlainRegistry()
    yield server
    server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_registry_is_not_sent_through_the_environments_proxy(
    registry: PlainRegistry, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    proxy = f"http://127.0.0.1:{dead_port()}"  # a proxy that is not there
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Registry(RemoteRef.parse(f"{host}:{registry.port}/team/app:v1")) as reg:
        reg.ping()  # raised 'cannot reach registry ...: Connection refused' (the proxy)
        assert reg.scheme == "http"
