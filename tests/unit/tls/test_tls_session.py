"""The sans-IO Session over both backends, in memory: handshakes, data, closing, SNI, ALPN,
client certificates, and every refusal with its reason."""

from __future__ import annotations

import itertools

import pytest
from tls_pair import BACKENDS, Pair, device
from tls_pki import PKI

from summon.tls import errors as e
from summon.tls.events import ApplicationData, CloseNotify, HandshakeComplete, TruncatedClose
from summon.tls.session import Session
from summon.tls.state import CLOSED, FAILED, OPEN

COMBOS = list(itertools.product(BACKENDS, BACKENDS, ("1.2", "1.3")))
IDS = [f"server={s}-client={c}-tls{v}" for s, c, v in COMBOS]


def pair(
    pki: PKI,
    server: str,
    client: str,
    version: str = "1.3",
    *,
    chunk: int | None = None,
    hostname: str = "localhost",
    server_kw: dict | None = None,
    client_kw: dict | None = None,
) -> Pair:
    skw = {"alpn": ["h2", "http/1.1"], "versions": [version], **(server_kw or {})}
    ckw = {"ca": "ca.crt", "alpn": ["http/1.1"], **(client_kw or {})}
    srv = device(str(pki.folder), server).server(**skw)
    cli = device(str(pki.folder), client).client(**ckw)
    return Pair(cli.session(hostname), srv.session(), chunk=chunk)


@pytest.mark.parametrize(("server", "client", "version"), COMBOS, ids=IDS)
def test_handshake_data_and_close_notify(pki: PKI, server: str, client: str, version: str) -> None:
    p = pair(
        pki,
        server,
        client,
        version,
        server_kw={"client_auth": "required", "client_ca": "ca.crt"},
        client_kw={"cert": "client.crt", "key": "client.key"},
    )
    p.handshake()
    assert p.client.state == p.server.state == OPEN
    s_info, c_info = p.server.info, p.client.info
    assert isinstance(s_info, HandshakeComplete) and isinstance(c_info, HandshakeComplete)
    assert s_info.version == c_info.version == f"TLSv{version}"
    assert s_info.alpn == c_info.alpn == "http/1.1"
    assert s_info.server_name == c_info.server_name == "localhost"
    assert s_info.peer_certificate is not None and c_info.peer_certificate is not None
    assert s_info.peer_certificate.subject == "CN=client one"
    assert c_info.peer_certificate.subject == "CN=localhost"
    assert c_info.peer_certificate.issuer == "CN=summon test intermediate"
    assert c_info.peer_certificate.ip_addresses == ("127.0.0.1",)
    p.client.send(b"ping" * 10000)
    p.pump()
    got = b"".join(ev.data for ev in p.server_events if isinstance(ev, ApplicationData))
    assert got == b"ping" * 10000
    p.server.send(b"pong")
    p.pump()
    assert [ev.data for ev in p.client_events if isinstance(ev, ApplicationData)] == [b"pong"]
    p.client.close()
    p.pump()
    assert isinstance(p.server_events[-1], CloseNotify)
    assert isinstance(p.client_events[-1], CloseNotify)
    assert p.client.state == p.server.state == CLOSED


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_one_at_a_time_give_the_same_result(pki: PKI, backend: str) -> None:
    p = pair(pki, backend, backend, chunk=1)
    p.handshake()
    p.client.send(b"hello")
    p.pump()
    assert [type(ev) for ev in p.server_events] == [HandshakeComplete, ApplicationData]
    assert p.server_events[1].data == b"hello"  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sni_picks_the_certificate_and_wildcard_keys_match_one_label(
    pki: PKI, backend: str
) -> None:
    sni = {
        "alt.test": ("server-alt.crt", "server-alt.key"),
        "*.wild.test": ("server-alt.crt", "server-alt.key"),
    }
    for name in ("alt.test", "x.wild.test"):
        p = pair(pki, backend, backend, hostname=name, server_kw={"sni": sni})
        p.handshake()
        assert p.client.info and p.client.info.peer_certificate
        assert p.client.info.peer_certificate.subject == "CN=alt.test"
        assert p.server.info and p.server.info.server_name == name
    p = pair(pki, backend, backend, server_kw={"sni": sni})  # "localhost": the default
    p.handshake()
    assert p.client.info and p.client.info.peer_certificate
    assert p.client.info.peer_certificate.subject == "CN=localhost"


@pytest.mark.parametrize("backend", BACKENDS)
def test_transport_end_after_the_handshake_is_a_truncated_close(pki: PKI, backend: str) -> None:
    p = pair(pki, backend, backend)
    p.handshake()
    assert [type(ev) for ev in p.server.receive_data(b"")] == [TruncatedClose]
    assert p.server.state == CLOSED


@pytest.mark.parametrize("backend", BACKENDS)
def test_transport_end_inside_a_record_is_truncated_record(pki: PKI, backend: str) -> None:
    p = pair(pki, backend, backend)
    p.handshake()
    p.client.send(b"x" * 100)
    record = p.client.data_to_send()
    p.server.receive_data(record[:50])
    with pytest.raises(e.ProtocolViolation) as err:
        p.server.receive_data(b"")
    assert err.value.reason == e.TRUNCATED_RECORD
    assert p.server.state == FAILED


def _inject(session: Session, content_type: int, message: bytes) -> None:
    """Make a python-backend session send a handshake message no polite peer sends now,
    encrypted under the keys in use (tlslite-ng's record layer does the sealing)."""
    from tlslite.messages import Message

    conn = session._engine._conn  # type: ignore[union-attr]
    for _ in conn._sendMsg(Message(content_type, bytearray(message))):
        pass


CLIENT_HELLO = bytes([1, 0, 0, 4, 3, 3, 0, 0])  # a renegotiation's first message (cut short)
HELLO_REQUEST = bytes([0, 0, 0, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tls12_renegotiation_gets_a_warning_no_renegotiation_and_the_connection_goes_on(
    pki: PKI, backend: str
) -> None:
    """RFC 5246 7.2.2 / RFC 5746 4.2: refused with a warning no_renegotiation alert, which
    leaves the client to decide; before, the server closed without a word."""
    p = pair(pki, backend, "python", "1.2")
    p.handshake()
    _inject(p.client, 22, CLIENT_HELLO)
    assert p.server.receive_data(p.client.data_to_send()) == []
    assert p.server.state == OPEN
    alert = p.server.data_to_send()
    assert alert[0] == 21  # an alert record (encrypted): one, and nothing else
    p.client.send(b"still there?")  # the client goes on, not having read the alert yet
    [data] = p.server.receive_data(p.client.data_to_send())
    assert isinstance(data, ApplicationData) and data.data == b"still there?"
    with pytest.raises(e.TLSError, match="warning alert no_renegotiation"):
        p.client.receive_data(alert)  # tlslite-ng ends the connection on any warning


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hello_request_to_a_tls12_client_gets_a_warning_no_renegotiation(
    pki: PKI, backend: str
) -> None:
    p = pair(pki, "python", backend, "1.2")
    p.handshake()
    _inject(p.server, 22, HELLO_REQUEST)
    assert p.client.receive_data(p.server.data_to_send()) == []
    assert p.client.state == OPEN
    with pytest.raises(e.TLSError, match="warning alert no_renegotiation"):
        p.server.receive_data(p.client.data_to_send())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tls13_client_hello_after_the_handshake_gets_unexpected_message(
    pki: PKI, backend: str
) -> None:
    """RFC 8446 4.1.2: TLS 1.3 has no renegotiation; a ClientHello then is fatal."""
    p = pair(pki, backend, "python", "1.3")
    p.handshake()
    _inject(p.client, 22, CLIENT_HELLO)
    with pytest.raises(e.ProtocolViolation) as err:
        p.server.receive_data(p.client.data_to_send())
    assert err.value.reason == e.UNEXPECTED_MESSAGE and p.server.state == FAILED
    with pytest.raises(e.TLSError, match="fatal alert unexpected_message"):
        p.client.receive_data(p.server.data_to_send())


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "record",
    [bytes([20, 3, 3, 0, 1, 1]), bytes([22, 3, 3, 0, 4, 1, 0, 0, 0])],
    ids=["change_cipher_spec", "plaintext-handshake"],
)
def test_a_record_out_of_place_after_the_handshake_ends_it_with_an_alert(
    pki: PKI, backend: str, version: str, record: bytes
) -> None:
    """Before, the session refused these without telling the peer anything."""
    p = pair(pki, backend, "python", version)
    p.handshake()
    with pytest.raises(e.ProtocolViolation) as err:
        p.server.receive_data(record)
    tls12_handshake = version == "1.2" and record[0] == 22
    if not tls12_handshake:  # in TLS 1.2 it goes to the backend, which cannot decrypt it
        assert err.value.reason == e.UNEXPECTED_MESSAGE
    alert = p.server.data_to_send()
    assert alert[:1] == (b"\x15" if version == "1.2" else b"\x17")  # 1.3 hides the type
    with pytest.raises(e.TLSError, match="fatal alert") as peer:
        p.client.receive_data(alert)
    if not tls12_handshake and not (backend == "openssl" and version == "1.2"):
        assert "unexpected_message" in str(peer.value)  # OpenSSL 1.2 chooses its own alert


@pytest.mark.parametrize(("server", "client", "version"), COMBOS, ids=IDS)
def test_alpn_with_no_protocol_in_common_is_refused_with_no_application_protocol(
    pki: PKI, server: str, client: str, version: str
) -> None:
    """RFC 7301 3.2: before, the handshake went on with no protocol."""
    p = pair(pki, server, client, version, client_kw={"alpn": ["h2"]},
             server_kw={"alpn": ["http/1.1"]})  # fmt: skip
    p.client.start()
    with pytest.raises(e.HandshakeFailure) as err:
        p.pump()
    assert err.value.reason == e.NO_APPLICATION_PROTOCOL and p.server.state == FAILED
    assert "'h2'" in str(err.value) and "'http/1.1'" in str(err.value)
    alert = p.server.data_to_send()
    assert alert == bytes([21, 3, 3, 0, 2, 2, 120])  # fatal no_application_protocol (120)
    with pytest.raises(e.HandshakeFailure, match=r"(?i)no.application.protocol"):
        p.client.receive_data(alert)


@pytest.mark.parametrize(("server", "client", "version"), COMBOS, ids=IDS)
def test_alpn_is_ignored_by_a_server_without_protocols_and_chosen_when_shared(
    pki: PKI, server: str, client: str, version: str
) -> None:
    p = pair(pki, server, client, version, client_kw={"alpn": ["h2"]}, server_kw={"alpn": []})
    p.handshake()
    assert p.server.info is not None and p.server.info.alpn is None
    p = pair(pki, server, client, version, client_kw={"alpn": ["h2", "http/1.1"]},
             server_kw={"alpn": ["http/1.1"]})  # fmt: skip
    p.handshake()
    assert p.client.info is not None and p.client.info.alpn == "http/1.1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_oversized_record_is_refused_before_the_backend_sees_it(pki: PKI, backend: str) -> None:
    p = pair(pki, backend, backend)
    p.handshake()
    with pytest.raises(e.ProtocolViolation) as err:
        p.server.receive_data(bytes([23, 3, 3, 0x48, 0x01]))  # 18433 > 2^14 + 256
    assert err.value.reason == e.OVERSIZED_RECORD
    assert "18433" in str(err.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tampered_record_is_bad_record_mac(pki: PKI, backend: str) -> None:
    p = pair(pki, backend, backend)
    p.handshake()
    p.client.send(b"secret message")
    record = bytearray(p.client.data_to_send())
    record[-3] ^= 0x01
    with pytest.raises(e.ProtocolViolation) as err:
        p.server.receive_data(bytes(record))
    assert err.value.reason == e.BAD_RECORD_MAC


@pytest.mark.parametrize(("server", "client"), list(itertools.product(BACKENDS, BACKENDS)))
def test_no_common_version_is_refused_with_the_version_named(
    pki: PKI, server: str, client: str
) -> None:
    p = pair(pki, server, client, "1.3", client_kw={"versions": ["1.2"]})
    p.client.start()
    with pytest.raises(e.ProtocolVersionRefused) as err:
        p.pump()
    assert err.value.version == "TLS 1.2"
    # The server's alert reached the client, which fails with a version error too.
    with pytest.raises(e.HandshakeFailure):
        p.client.receive_data(p.server.data_to_send() or b"")


def _server_refusal(
    pki: PKI, backend: str, client_cert: str | None, client_auth: str = "required"
) -> e.TLSError | None:
    kw = {"cert": f"{client_cert}.crt", "key": f"{client_cert}.key"} if client_cert else {}
    p = pair(
        pki,
        backend,
        "openssl",
        server_kw={"client_auth": client_auth, "client_ca": "ca.crt"},
        client_kw=kw,
    )
    try:
        p.handshake()
    except e.TLSError as err:
        assert p.server.error is not None, f"only the client failed: {err}"
        return p.server.error
    return None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("client_cert", "reason"),
    [
        (None, e.NO_CERTIFICATE),
        ("client-self-signed", e.SELF_SIGNED),
        ("client-other-ca", e.UNKNOWN_CA),
        ("client-expired", e.EXPIRED),
        ("client-server-eku", e.WRONG_PURPOSE),
    ],
)
def test_the_server_refuses_bad_client_certificates_with_the_reason(
    pki: PKI, backend: str, client_cert: str | None, reason: str
) -> None:
    error = _server_refusal(pki, backend, client_cert)
    assert isinstance(error, e.BadCertificate), error
    assert error.reason == reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_optional_client_auth_accepts_no_certificate_but_not_a_bad_one(
    pki: PKI, backend: str
) -> None:
    assert _server_refusal(pki, backend, None, "optional") is None
    error = _server_refusal(pki, backend, "client-other-ca", "optional")
    assert isinstance(error, e.BadCertificate) and error.reason == e.UNKNOWN_CA


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("server_cert", "hostname", "reason"),
    [
        ("server-wrong-name", "localhost", e.HOSTNAME_MISMATCH),
        ("server", "127.0.0.2", e.HOSTNAME_MISMATCH),
        ("server-expired", "localhost", e.EXPIRED),
        ("server-self-signed", "localhost", e.SELF_SIGNED),
        ("server-other-ca", "localhost", e.UNKNOWN_CA),
    ],
)
def test_the_client_refuses_bad_server_certificates_with_the_reason(
    pki: PKI, backend: str, server_cert: str, hostname: str, reason: str
) -> None:
    p = pair(
        pki,
        "openssl",
        backend,
        hostname=hostname,
        server_kw={"cert": f"{server_cert}.crt", "key": f"{server_cert}.key"},
    )
    with pytest.raises(e.BadCertificate) as err:
        p.handshake()
    assert err.value.reason == reason
    assert p.client.error is err.value
    assert p.client.info is None  # no HandshakeComplete for a peer that failed


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_client_sends_nothing_after_refusing_the_server(pki: PKI, backend: str) -> None:
    p = pair(pki, "openssl", backend, hostname="wrong.test")
    with pytest.raises(e.BadCertificate):
        p.handshake()
    with pytest.raises(e.BadCertificate):
        p.client.send(b"the secret")


@pytest.mark.parametrize("backend", BACKENDS)
def test_garbage_before_the_handshake_is_a_bad_record_with_an_alert(pki: PKI, backend: str) -> None:
    srv = device(str(pki.folder), backend).server()
    for junk, reason in [
        (b"GET / HTTP/1.1\r\n\r\n", e.BAD_RECORD),
        (b"\x80\x2e\x01\x00\x02", e.BAD_RECORD),  # SSLv2 hello
        (bytes([22, 9, 9, 0, 5]) + b"hello", e.BAD_RECORD),
        (bytes([23, 3, 1, 0, 5]) + b"hello", e.UNEXPECTED_MESSAGE),
        (bytes([22, 3, 1, 0, 5, 2, 0, 0, 1, 0]), e.UNEXPECTED_MESSAGE),
        (bytes([22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]), e.DECODE_ERROR),
    ]:
        s = srv.session()
        with pytest.raises(e.ProtocolViolation) as err:
            s.receive_data(junk)
        assert err.value.reason == reason, junk
        alert = s.data_to_send()
        assert alert[:1] == b"\x15" and alert[-2] == 2, alert  # a fatal alert record


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_handshake_message_declared_huge_is_refused_at_its_header_not_buffered(
    pki: PKI, backend: str
) -> None:
    # A peer declaring a 16 MiB ClientKeyExchange and sending it in 16 KiB fragments made the
    # python backend buffer all of it until the handshake deadline: a few such connections
    # exhausted a 64 MiB image. Now the header alone ends the handshake, as OpenSSL does.
    p = pair(pki, backend, "openssl", "1.2")
    p.client.start()
    p.server.receive_data(p.client.data_to_send())
    assert p.server.data_to_send()  # the server's first flight: it waits for the client's
    header = bytes([22, 3, 3, 0x40, 0x00, 16, 0xFF, 0xFF, 0xFF]) + bytes(0x4000 - 4)
    with pytest.raises(e.TLSError) as err:
        p.server.receive_data(header)
    alert = p.server.data_to_send()
    assert alert[:1] == b"\x15" and alert[-2:] == bytes([2, 47]), alert  # illegal_parameter
    if backend == "python":
        assert "16777215 bytes > limit 131072" in str(err.value)


def test_a_flood_of_warning_alerts_is_refused_as_ours_not_reported_as_the_peers_alert(
    pki: PKI,
) -> None:
    # OpenSSL ends a TLS 1.2 connection after five warning alerts in a row (the SSL Death
    # Alert defence) with its own error TOO_MANY_WARN_ALERTS; the openssl backend logged that
    # as "the peer sent fatal alert too_many_warn_alerts", an alert no peer sent.
    from tlslite.messages import Alert

    from summon.tls.tlslite_ng import AlertDescription, AlertLevel

    p = pair(pki, "openssl", "python", "1.2")
    p.handshake()
    conn = p.client._engine._conn  # type: ignore[attr-defined]
    warning = Alert().create(AlertDescription.user_canceled, AlertLevel.warning)
    with pytest.raises(e.TLSError) as err:
        for _ in range(10):
            for _ in conn._sendMsg(warning):
                pass
            p.server.receive_data(p.client.data_to_send())
    assert isinstance(err.value, e.ProtocolViolation), err.value
    assert "peer sent" not in str(err.value) and "TOO_MANY_WARN_ALERTS" in str(err.value)
