"""A registry that sends the headers of its reply a byte at a time: each byte comes within
httpx's read timeout (which is per read), so `summon pull` and `push` waited for as long as
the registry liked. The headers of every reply now have REPLY_TIME (registry.py) to come
whole, as a reply read whole (a manifest) already had for its body."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from localhttp import LocalHTTP, Quiet

from summon.cli.main import cli
from summon.store import registry as registry_mod
from summon.store.layout import LAYER_GZIP, Descriptor
from summon.store.reference import RegistryError, RemoteRef
from summon.store.registry import Registry

HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 4000


class SlowHeaders(LocalHTTP):
    """Answers /v2/ at once; anything else with a status line and headers that trickle."""

    def __init__(self) -> None:
        class Handler(Quiet):
            def do_GET(self) -> None:
                if self.path == "/v2/":
                    self.reply(b"{}", "application/json")
                    return
                try:  # a byte every 20 ms, for at most a minute: the test never hangs
                    for i in range(min(len(HEADERS), 3000)):
                        self.wfile.write(HEADERS[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:
                    pass
                self.close_connection = True

        super().__init__(Handler)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowHeaders]:
    monkeypatch.setattr(registry_mod, "REPLY_TIME", 1.0)
    server = SlowHeaders()
    yield server
    server.close()


def test_pull_gives_up_on_a_manifest_whose_headers_trickle(
    registry: SlowHeaders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    r = CliRunner().invoke(cli, ["pull", f"127.0.0.1:{registry.port}/team/app:v1"])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (
        f"summon: error: registry 127.0.0.1:{registry.port} had not sent its reply's headers "
        "after 1s while fetching manifest v1 of team/app; refused"
    )


def test_a_blob_whose_headers_trickle_is_given_up_on(
    registry: SlowHeaders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    body = b"layer"
    desc = Descriptor(LAYER_GZIP, "sha256:" + hashlib.sha256(body).hexdigest(), len(body))
    written = io.BytesIO()
    with Registry(RemoteRef.parse(f"127.0.0.1:{registry.port}/team/app:v1")) as reg:
        with pytest.raises(RegistryError) as refused:
            reg.fetch_blob(desc, written, lambda t: None)  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"registry 127.0.0.1:{registry.port} had not sent its reply's headers after 1s while "
        f"downloading blob {desc.digest}; refused"
    )
    assert written.getvalue() == b""
