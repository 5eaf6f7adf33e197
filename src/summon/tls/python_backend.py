"""The "python" backend: tlslite-ng (pure Python, LGPL-2.1) driven without sockets.

tlslite-ng expects a socket. It gets `_Pipe`, whose recv() hands out the records Session fed
and raises BlockingIOError when there are none, and whose send() appends to a buffer; the
handshake and reads run as tlslite-ng's generators (handshakeServerAsync, readAsync), which
yield 0 when they want more bytes, so they pause there and resume when the next record comes.
tlslite-ng has no certificate path validation: summon's x509.path checks the peer's chain once
the handshake messages are done, before the session reports HandshakeComplete or lets any
application data through.

Imports: tlslite (tlslite-ng 0.8.2) and ecdsa (0.19.2), which bring socket, hashlib, hmac,
zlib, and more of the stdlib; never ssl, _ssl or _hashlib's libcrypto if the image leaves them
out (hashlib then uses its builtin SHA-2).
"""

from __future__ import annotations

import errno
import time

from summon.tls import errors as e
from summon.tls.events import HandshakeComplete
from summon.tls.session import TLS13, Engine
from summon.tls.tlslite_ng import (
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    HandshakeSettings,
    TLSAlert,
    TLSConnection,
    TLSLocalAlert,
    TLSRemoteAlert,
    X509CertChain,
    parsePEMKey,
)
from summon.tls.x509.certificate import Certificate, peer_certificate, pem_certificates
from summon.tls.x509.names import ip_bytes
from summon.tls.x509.path import validate_chain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from summon.tls.hello import ClientHello
    from summon.tls.settings import CertKey, ClientSettings, ServerSettings

# The largest handshake message a peer may send (OpenSSL's max_cert_list is 100 KiB): tlslite-ng
# buffers a message whole before parsing it, up to the 16 MiB its 3-byte length allows.
MAX_HANDSHAKE_MESSAGE = 2**17

# Alerts tlslite-ng sent (we refused something) -> summon's reason.
_LOCAL_ALERTS = {
    AlertDescription.protocol_version: None,  # ProtocolVersionRefused
    AlertDescription.bad_record_mac: e.BAD_RECORD_MAC,
    AlertDescription.record_overflow: e.OVERSIZED_RECORD,
    AlertDescription.unexpected_message: e.UNEXPECTED_MESSAGE,
    AlertDescription.decode_error: e.DECODE_ERROR,
    AlertDescription.illegal_parameter: e.DECODE_ERROR,
}
# What we send when the peer's chain fails summon's checks.
_CERT_ALERTS = {
    e.EXPIRED: AlertDescription.certificate_expired,
    e.NOT_YET_VALID: AlertDescription.certificate_expired,
    e.UNKNOWN_CA: AlertDescription.unknown_ca,
    e.SELF_SIGNED: AlertDescription.unknown_ca,
    e.WRONG_PURPOSE: AlertDescription.unsupported_certificate,
    e.UNSUPPORTED_CRITICAL_EXTENSION: AlertDescription.unsupported_certificate,
}


def _alert_name(description: int) -> str:
    return AlertDescription.toRepr(description) or str(description)


def _error(exc: BaseException, handshaking: bool) -> e.TLSError:
    """The typed error for whatever tlslite-ng raised while reading the peer's records."""
    if isinstance(exc, e.TLSError):
        return exc
    if isinstance(exc, TLSLocalAlert):
        desc = exc.description
        detail = f"{exc.message or _alert_name(desc)} (alert {_alert_name(desc)} sent)"
        if desc == AlertDescription.protocol_version:
            return e.ProtocolVersionRefused(detail, version="below TLS 1.2")
        reason = _LOCAL_ALERTS.get(desc)
        if reason is not None:
            return e.ProtocolViolation(detail, reason=reason)
        if handshaking:
            return e.HandshakeFailure(detail)
        return e.ProtocolViolation(detail, reason=e.UNEXPECTED_MESSAGE)
    if isinstance(exc, TLSRemoteAlert):
        level = "warning" if exc.level == AlertLevel.warning else "fatal"
        message = f"the peer sent {level} alert {_alert_name(exc.description)}"
        if handshaking:
            return e.HandshakeFailure(message)
        return e.TLSError(message, reason="peer alert")
    # tlslite-ng raises SyntaxError, DecodeError, ValueError, AssertionError... on some bytes it
    # cannot parse; the bytes came from the peer, so they are the peer's protocol violation.
    message = f"tlslite-ng: {type(exc).__name__}: {exc}"
    if handshaking:
        return e.HandshakeFailure(message)
    return e.ProtocolViolation(message, reason=e.DECODE_ERROR)


class _Pipe:
    """The socket tlslite-ng talks to: records in, bytes out, never blocking."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.outbox = bytearray()

    def recv(self, size: int) -> bytes:
        if not self.inbox:
            raise BlockingIOError(errno.EAGAIN, "no record yet")
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data

    def send(self, data: bytes) -> int:
        self.outbox += data
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.outbox += data

    def close(self) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


def _settings(versions: tuple[int, ...]) -> HandshakeSettings:
    s = HandshakeSettings()
    s.minVersion = (3, min(versions) & 0xFF)
    s.maxVersion = (3, max(versions) & 0xFF)
    s.versions = [(3, v & 0xFF) for v in sorted(versions, reverse=True)]
    # AEAD suites with ephemeral (EC)DH only: forward secrecy, no CBC padding oracles.
    # ChaCha20-Poly1305 first: in pure Python it runs ~0.37 MB/s against AES-GCM's ~0.24.
    s.cipherNames = ["chacha20-poly1305", "aes128gcm", "aes256gcm"]
    s.keyExchangeNames = ["ecdhe_ecdsa", "ecdhe_rsa"]
    s.eccCurves = ["x25519", "secp256r1", "secp384r1"]
    s.keyShares = ["secp256r1", "x25519"]
    # No finite-field DH (tlslite-ng offers ffdhe2048..8192 in TLS 1.3 by default): a client
    # offering only ffdhe8192 made each handshake cost the server five times the CPU.
    s.dhGroups = []
    s.use_heartbeat_extension = False
    # Extended master secret is offered and used (useExtendedMasterSecret), not required:
    # tlslite-ng 0.8.2 applies the requirement to TLS 1.3 too, where EMS does not exist.
    s.certificate_compression_send = []
    s.certificate_compression_receive = []
    s.ticketKeys = []  # session tickets off
    s.ticket_count = 0
    return s


def _load_pair(pair: CertKey) -> tuple[X509CertChain, object]:
    try:
        pem_certificates(pair.chain, pair.source)  # a clear error if it holds no certificate
        chain = X509CertChain()
        chain.parsePemList(pair.chain.decode("ascii"))
        key = parsePEMKey(pair.key.decode("ascii"), private=True, implementations=["python"])
    except e.TLSError:
        raise
    except Exception as exc:
        raise e.TLSConfigError(
            f"{pair.source}: tlslite-ng cannot use this certificate and key "
            f"({type(exc).__name__}: {exc})"
        ) from None
    leaf_key = chain.x509List[0].publicKey
    probe = b"summon: does this key match its certificate?"
    try:
        if getattr(key, "key_type", "") in ("Ed25519", "Ed448"):
            matches = leaf_key.hashAndVerify(key.hashAndSign(probe), probe)
        else:
            sig = key.hashAndSign(probe, "PKCS1", "sha256")
            matches = leaf_key.hashAndVerify(sig, probe, "PKCS1", "sha256")
    except Exception:
        matches = False
    if not matches:
        raise e.TLSConfigError(f"{pair.source}: the private key does not match the certificate")
    return chain, key


def _anchors(pem: bytes, what: str) -> list[Certificate]:
    try:
        return [Certificate(der) for der in pem_certificates(pem, what)]
    except e.BadCertificate as exc:
        raise e.TLSConfigError(f"{what}: {exc}") from None


def _cap_handshake_messages(conn: TLSConnection) -> None:
    """Refuse a handshake message declared longer than MAX_HANDSHAKE_MESSAGE once its header
    arrives, with a fatal illegal_parameter alert (OpenSSL's answer), rather than buffer it:
    else a peer sending one 16 MiB message in fragments holds 16 MiB of the server per
    connection until the handshake deadline, and a few connections exhaust a 64 MiB image."""
    defragmenter = conn._defragmenter
    whole_size = defragmenter.decoders[ContentType.handshake]

    def size(data: bytearray) -> int | None:
        if len(data) >= 4:
            length = int.from_bytes(data[1:4], "big")
            if length > MAX_HANDSHAKE_MESSAGE:
                defragmenter.clear_buffers()
                for _ in conn._sendError(
                    AlertDescription.illegal_parameter,
                    f"handshake message of {length} bytes > limit {MAX_HANDSHAKE_MESSAGE}",
                ):
                    pass
        return whole_size(data)  # type: ignore[no-any-return]

    defragmenter.decoders[ContentType.handshake] = size


class PythonEngine(Engine):
    """One connection through tlslite-ng's TLSConnection over a _Pipe."""

    def __init__(
        self,
        start: Callable[[TLSConnection], Generator[object, None, None]],
        verify: Callable[[TLSConnection], None],
        sni: str | None,
    ) -> None:
        self._pipe = _Pipe()
        self._conn = TLSConnection(self._pipe)
        # Keep the record layer after our close_notify, to read the peer's answer.
        self._conn.closeSocket = False
        _cap_handshake_messages(self._conn)
        self._handshaker = start(self._conn)
        self._verify = verify
        self._sni = sni
        self._reader: Generator[object, None, None] | None = None
        self._version = 0

    def start(self) -> None:
        self.handshake()

    def feed(self, record: bytes) -> None:
        self._pipe.inbox += record

    def handshake(self) -> bool:
        try:
            for result in self._handshaker:
                if result == 0:
                    return False
            major, minor = self._conn.version
            self._version = major << 8 | minor
            # No heartbeat (docs/tls.md): tlslite-ng's TLS 1.3 server turns it on for any
            # client offering the extension, ignoring use_heartbeat_extension, and then
            # echoes each heartbeat_request. Off, a heartbeat record is an unexpected one:
            # a fatal unexpected_message alert (RFC 8446 5), as OpenSSL answers.
            self._conn.heartbeat_supported = False
            self._conn.heartbeat_can_receive = False
            self._verify(self._conn)
        except e.BadCertificate as exc:
            self._send_alert(_CERT_ALERTS.get(exc.reason, AlertDescription.bad_certificate))
            raise
        except Exception as exc:
            raise _error(exc, handshaking=True) from None
        return True

    def _send_alert(self, description: int) -> None:
        # tlslite-ng 0.8.2's _sendError queues a fatal alert and raises TLSLocalAlert.
        try:
            for _ in self._conn._sendError(description):
                pass
        except TLSAlert:
            pass

    def read(self) -> tuple[bytes, bool]:
        chunks = []
        closed = False
        try:
            while True:
                if self._reader is None:
                    self._reader = self._conn.readAsync()
                result = next(self._reader)
                if result == 0:
                    break
                if result == 1:
                    continue
                self._reader = None
                if not result:
                    closed = True
                    break
                chunks.append(bytes(result))  # type: ignore[arg-type]
        except StopIteration:
            self._reader = None
        except Exception as exc:
            raise _error(exc, handshaking=False) from None
        return b"".join(chunks), closed

    def write(self, data: bytes) -> None:
        try:
            for _ in self._conn.writeAsync(data):
                pass
        except Exception as exc:
            raise _error(exc, handshaking=False) from None

    def close(self) -> None:
        if self._conn.closed:
            return
        try:
            # closeAsync sends close_notify, then (closeSocket is False) waits for the peer's:
            # the first yield is that wait, and the session does not need it.
            for result in self._conn.closeAsync():
                if result == 0:
                    break
        except Exception as exc:
            raise _error(exc, handshaking=False) from None

    def refuse(self, record: bytes, alert: int) -> None:
        self._send_alert(alert)

    def outgoing(self) -> bytes:
        out = bytes(self._pipe.outbox)
        self._pipe.outbox.clear()
        return out

    def version(self) -> int:
        return self._version

    def complete(self) -> HandshakeComplete:
        session = self._conn.session
        alpn = session.appProto
        chain = session.clientCertChain if self._conn._client is False else session.serverCertChain
        leaf = chain.x509List[0].bytes if chain is not None and chain.x509List else None
        return HandshakeComplete(
            version="TLSv1.3" if self._version == TLS13 else "TLSv1.2",
            cipher=CipherSuite.ietfNames.get(session.cipherSuite, str(session.cipherSuite)),
            alpn=bytes(alpn).decode("latin-1") if alpn else None,
            server_name=self._sni,
            peer_certificate=peer_certificate(bytes(leaf)) if leaf else None,
        )


def _chain_ders(chain: X509CertChain | None) -> list[bytes]:
    if chain is None:
        return []
    return [bytes(x.bytes) for x in chain.x509List]


def _server_alpn(settings: ServerSettings, hello: ClientHello) -> list[bytearray] | None:
    """The ALPN list to hand tlslite-ng: the server's first protocol the client offers.

    A client offering only protocols the server does not speak never gets here (the session
    refused it with no_application_protocol). A server without ALPN ignores the client's
    list (RFC 7301 3.2), but tlslite-ng 0.8.2 crashes (TypeError) in TLS 1.3 when given none
    while the client offers some: it is then given a name no client offers, and TLS 1.3
    ignores the mismatch.
    """
    chosen = next((p for p in settings.alpn if p in hello.alpn), None)
    if chosen is not None:
        return [bytearray(chosen.encode("latin-1"))]
    tls13 = 0x0304 in hello.versions and 0x0304 in settings.versions
    if hello.alpn and tls13:
        return [bytearray(b"\x00summon: no shared protocol")]
    return None


class ServerBackend:
    """tlslite-ng objects for a server: each certificate chain and key parsed once."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._pairs = {name: _load_pair(pair) for name, pair in settings.certs.items()}
        self._anchors = (
            _anchors(settings.client_ca, "client_ca") if settings.client_ca is not None else []
        )
        self._hs = _settings(settings.versions)

    def engine(self, hello: ClientHello) -> Engine:
        name, _ = self.settings.cert_for(hello.server_name)
        chain, key = self._pairs[name]
        settings = self.settings
        alpn = _server_alpn(settings, hello)

        def start(conn: TLSConnection) -> Generator[object, None, None]:
            return conn.handshakeServerAsync(  # type: ignore[no-any-return]
                certChain=chain,
                privateKey=key,
                reqCert=settings.client_auth != "none",
                settings=self._hs,
                alpn=alpn,
            )

        def verify(conn: TLSConnection) -> None:
            ders = _chain_ders(conn.session.clientCertChain)
            if not ders:
                if settings.client_auth == "required":
                    raise e.BadCertificate(
                        "the client sent no certificate", reason=e.NO_CERTIFICATE
                    )
                return
            validate_chain(ders, self._anchors, purpose="clientAuth", now=time.time())

        return PythonEngine(start, verify, hello.server_name)


class ClientBackend:
    """tlslite-ng objects for a client: trust anchors and an optional certificate."""

    def __init__(self, settings: ClientSettings) -> None:
        if settings.ca is None:
            raise e.TLSConfigError(
                "the python backend has no system trust store: give the client ca= (the "
                "secret holding the CA certificates to trust)"
            )
        self.settings = settings
        self._anchors = _anchors(settings.ca, "ca")
        self._pair = _load_pair(settings.cert) if settings.cert is not None else None
        self._hs = _settings(settings.versions)

    def engine(self, server_hostname: str) -> Engine:
        settings = self.settings
        alpn = [bytearray(p.encode("latin-1")) for p in settings.alpn] or None
        sni = None if ip_bytes(server_hostname) is not None else server_hostname
        chain, key = self._pair if self._pair is not None else (None, None)

        def start(conn: TLSConnection) -> Generator[object, None, None]:
            return conn.handshakeClientCert(  # type: ignore[no-any-return]
                certChain=chain,
                privateKey=key,
                settings=self._hs,
                serverName=sni,
                alpn=alpn,
                async_=True,
            )

        def verify(conn: TLSConnection) -> None:
            ders = _chain_ders(conn.session.serverCertChain)
            validate_chain(
                ders,
                self._anchors,
                purpose="serverAuth",
                now=time.time(),
                hostname=server_hostname,
            )

        return PythonEngine(start, verify, sni)
