"""A peer that sends empty application_data records without end is cut off, as OpenSSL does.

Each empty record costs the receiver a decryption and gives its app nothing, so a reader
waiting for data waits while the peer makes it work. OpenSSL ends the connection after 32 in
a row (MAX_EMPTY_RECORDS); tlslite-ng took them all. The session now counts them for both
backends (session.MAX_EMPTY_RECORDS) and ends the connection with an unexpected_message alert.
The peer here is a raw loopback socket driven by tlslite-ng's client, which can send records
of any length.
"""

from __future__ import annotations

import socket

import pytest
from tls_pair import BACKENDS, echo_against
from tls_pki import PKI

from summon.tls import errors as e
from summon.tls.session import MAX_EMPTY_RECORDS
from summon.tls.tlslite_ng import AlertDescription, HandshakeSettings, TLSConnection, TLSRemoteAlert


def flood(port: int, empty: int, then: bytes, version: tuple[int, int]) -> dict[str, object]:
    """Handshake, send `empty` empty application_data records, then `then`; what came back."""
    from tlslite.messages import ApplicationData  # after summon.tls.tlslite_ng set tlslite up

    result: dict[str, object] = {"sent": 0}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        conn = TLSConnection(sock)
        settings = HandshakeSettings()
        settings.minVersion = settings.maxVersion = version
        conn.handshakeClientCert(settings=settings, serverName="localhost")
        try:
            for _ in range(empty):
                for _ in conn._sendMsg(ApplicationData().create(bytearray())):
                    pass
                result["sent"] = int(str(result["sent"])) + 1
            conn.write(then)
            result["reply"] = bytes(conn.read(max=len(then), min=len(then)))
        except TLSRemoteAlert as alert:
            result["alert"] = alert.description
        except OSError as exc:  # the server closed before all was sent
            result["closed"] = str(exc)
    return result


def run(
    backend: str, pki: PKI, empty: int, version: tuple[int, int]
) -> tuple[dict[str, object], list[object]]:
    return echo_against(backend, str(pki.folder), lambda port: flood(port, empty, b"ping", version))


VERSIONS = {"1.2": (3, 3), "1.3": (3, 4)}


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_few_empty_records_are_read_past(pki: PKI, backend: str, version: str) -> None:
    """The control: empty records are legal (TLS 1.0's CBC split sends them), a few go by."""
    got, seen = run(backend, pki, MAX_EMPTY_RECORDS, VERSIONS[version])
    assert got.get("reply") == b"ping", got
    assert seen == [b"ping"], seen


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flood_of_empty_records_ends_the_connection(pki: PKI, backend: str, version: str) -> None:
    got, seen = run(backend, pki, 10_000, VERSIONS[version])
    # Not how many went out before the close: 10,000 small records may all fit in loopback's
    # socket buffers first. Without the bound the ping after them was answered.
    assert "reply" not in got, got
    assert len(seen) == 1 and isinstance(seen[0], e.ProtocolViolation), seen
    if backend == "python":  # OpenSSL's own error comes first with its backend
        assert "empty records in a row" in str(seen[0]), seen
    if "alert" in got:
        assert got["alert"] == AlertDescription.unexpected_message, got
