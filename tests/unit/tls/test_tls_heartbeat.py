"""No heartbeat on either backend (docs/tls.md), whatever the client offers.

tlslite-ng's TLS 1.3 server turned heartbeat on for any client offering the extension
(`use_heartbeat_extension = False` is honoured only in TLS 1.2), so the python backend
answered a TLS 1.3 heartbeat_request with a heartbeat_response while OpenSSL refused the
record. A record type RFC 8446 does not define for TLS 1.3 ends the connection with an
unexpected_message alert (section 5), on both backends. The peer is tlslite-ng's client,
which offers the extension by default and can send a heartbeat_request by hand.
"""

from __future__ import annotations

import socket

import pytest
from tls_pair import BACKENDS, echo_against
from tls_pki import PKI

from summon.tls import errors as e
from summon.tls.tlslite_ng import HandshakeSettings, TLSConnection, TLSRemoteAlert

VERSIONS = {"1.2": (3, 3), "1.3": (3, 4)}


def heartbeat(port: int, version: tuple[int, int]) -> dict[str, object]:
    """Handshake, send a well-formed heartbeat_request, then a ping; what came back."""
    from tlslite.constants import HeartbeatMessageType
    from tlslite.messages import Heartbeat

    answers: list[bytes] = []
    result: dict[str, object] = {"answers": answers}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        conn = TLSConnection(sock)
        settings = HandshakeSettings()
        settings.minVersion = settings.maxVersion = version
        conn.handshakeClientCert(settings=settings, serverName="localhost")
        # Take a heartbeat_response if one comes, whatever the server's hello said.
        conn.heartbeat_supported = True
        conn.heartbeat_response_callback = lambda m: answers.append(bytes(m.payload))
        request = Heartbeat().create(
            HeartbeatMessageType.heartbeat_request, bytearray(b"summon?" * 20), 16
        )
        try:
            for _ in conn._sendMsg(request):
                pass
            conn.write(b"ping")
            result["reply"] = bytes(conn.read(max=4, min=4))
        except TLSRemoteAlert as alert:
            result["alert"] = alert.description
        except Exception as exc:  # the server hung up (TLS 1.2: the record layer refused it)
            result["closed"] = repr(exc)
    return result


def run(backend: str, pki: PKI, version: tuple[int, int]) -> tuple[dict[str, object], list[object]]:
    return echo_against(backend, str(pki.folder), lambda port: heartbeat(port, version))


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_heartbeat_request_is_refused_not_answered(pki: PKI, backend: str, version: str) -> None:
    got, seen = run(backend, pki, VERSIONS[version])
    assert got["answers"] == [], got  # the python backend's TLS 1.3 server echoed it
    assert "reply" not in got, got
    assert len(seen) == 1 and isinstance(seen[0], e.ProtocolViolation), seen
    if version == "1.3":  # TLS 1.2: the record layer refuses type 24 before any key is known
        from tlslite.constants import AlertDescription

        assert got.get("alert") == AlertDescription.unexpected_message, got
