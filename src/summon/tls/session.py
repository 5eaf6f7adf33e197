"""The sans-IO TLS session: bytes in (receive_data), events out, data in (send), bytes out.

One Session serves one connection, as client or server, over whichever backend the context
chose (an Engine: OpenSSL through ssl.SSLObject, or tlslite-ng). The session owns what summon
promises the same way on both: the record framing and its limits (record.py), the first look
at a ClientHello (hello.py: versions below TLS 1.2 refused, the certificate picked by SNI,
ALPN without a shared protocol refused), what may come after the handshake (renegotiation
refused), and the state table (state.py). It does no I/O and keeps no clock: the
asyncio adapter (streams.py) moves the bytes and enforces the handshake timeout.

    session = context.session()                   # a server; a client also calls start()
    events = session.receive_data(bytes_from_peer)  # b"" when the transport ended
    session.send(b"reply")
    transport.write(session.data_to_send())
"""

from __future__ import annotations

from summon.tls import state as st
from summon.tls.errors import (
    NO_APPLICATION_PROTOCOL,
    UNEXPECTED_MESSAGE,
    HandshakeFailure,
    ProtocolVersionRefused,
    ProtocolViolation,
    TLSClosed,
    TLSError,
)
from summon.tls.events import ApplicationData, CloseNotify, HandshakeComplete, TruncatedClose
from summon.tls.hello import ClientHello, HelloCollector
from summon.tls.record import (
    ALERT_DECODE_ERROR,
    ALERT_NO_APPLICATION_PROTOCOL,
    ALERT_PROTOCOL_VERSION,
    ALERT_RECORD_OVERFLOW,
    ALERT_UNEXPECTED_MESSAGE,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    MAX_TLS13,
    Record,
    RecordReader,
    plaintext_alert,
    version_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.tls.events import Event

TLS12 = 0x0303
TLS13 = 0x0304
# Application data records in a row that give no data, after the handshake: each costs a
# decryption and gives the app nothing. OpenSSL's bound (MAX_EMPTY_RECORDS); tlslite-ng has
# none. (TLS 1.3's post-handshake messages, tickets and key updates, count too: a peer sends
# one or two, never dozens in a row.)
MAX_EMPTY_RECORDS = 32


class Engine:
    """What a backend does for one connection. Only Session calls these, in this order:
    start() (client) once; feed() with each whole record and handshake() until it returns
    True; then feed()/read(), write() and close(). outgoing() at any time."""

    def start(self) -> None:
        """Client: queue the ClientHello."""
        raise NotImplementedError

    def feed(self, record: bytes) -> None:
        """Take one whole record (header included) from the peer."""
        raise NotImplementedError

    def handshake(self) -> bool:
        """Advance the handshake; True once it is done and the peer's chain was verified."""
        raise NotImplementedError

    def read(self) -> tuple[bytes, bool]:
        """Application data decrypted so far, and whether close_notify came (then our reply
        is queued)."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Encrypt `data` into records."""
        raise NotImplementedError

    def close(self) -> None:
        """Queue close_notify."""
        raise NotImplementedError

    def refuse(self, record: bytes, alert: int) -> None:
        """The session refuses this record of the peer's, which has no place after the
        handshake: queue a fatal alert (`alert`, or the backend's own choice), encrypted."""
        raise NotImplementedError

    def outgoing(self) -> bytes:
        """Bytes for the peer produced since the last call."""
        raise NotImplementedError

    def version(self) -> int:
        """The negotiated version (0x0303 or 0x0304); valid once handshake() is True."""
        raise NotImplementedError

    def complete(self) -> HandshakeComplete:
        """What was negotiated; valid once handshake() is True."""
        raise NotImplementedError


def offered_versions(hello: ClientHello) -> set[int]:
    """The versions a ClientHello offers: its supported_versions list, or for a hello without
    one, every version from TLS 1.0 up to its legacy_version (capped at TLS 1.2)."""
    if len(hello.versions) > 1 or hello.versions[0] == TLS13:
        return set(hello.versions)
    legacy = min(hello.versions[0], TLS12)
    return set(range(0x0301, legacy + 1))


class Session:
    """One TLS connection's protocol state. See the module docstring."""

    def __init__(
        self,
        *,
        server: bool,
        versions: tuple[int, ...],
        server_engine: Callable[[ClientHello], Engine] | None = None,
        client_engine: Callable[[], Engine] | None = None,
        alpn: tuple[str, ...] = (),
    ) -> None:
        self.server = server
        self.state = st.START
        self.versions = versions
        self.alpn = alpn  # a server's protocols; a client offering only others is refused
        self.info: HandshakeComplete | None = None
        self.error: TLSError | None = None
        self._server_engine = server_engine
        self._client_engine = client_engine
        self._engine: Engine | None = None
        self._reader = RecordReader()
        self._hello = HelloCollector() if server else None
        self._out = bytearray()
        self._empty = 0  # records in a row that gave no data (MAX_EMPTY_RECORDS)

    def _move(self, event: str) -> None:
        self.state = st.transition(self.state, event)

    # -- app calls ---------------------------------------------------------------------------

    def start(self) -> None:
        """Client: queue the ClientHello (call data_to_send() next)."""
        if self.server or self._client_engine is None:
            raise TLSClosed("start() is for a client session")
        self._move(st.CONNECT)
        self._engine = self._client_engine()
        try:
            self._engine.start()
        except TLSError as e:
            self._fail(e)
            raise

    def send(self, data: bytes) -> None:
        """Queue `data` for the peer, encrypted; only once the handshake is complete."""
        if self.state not in st.SENDING or self._engine is None:
            if self.error is not None:
                raise self.error
            raise TLSClosed(f"cannot send in state {self.state}")
        if data:
            self._engine.write(bytes(data))

    def close(self) -> None:
        """Queue close_notify (or give up a handshake that is not done). Safe to repeat."""
        if self.state == st.FAILED:
            return
        before = self.state
        self._move(st.CLOSE)
        if before == st.OPEN and self._engine is not None:
            try:
                self._engine.close()
            except TLSError:
                pass  # the peer is gone or broken; closing must not fail

    def data_to_send(self) -> bytes:
        """Bytes for the peer, in order: records and alerts queued so far."""
        if self._engine is not None:
            try:
                self._out += self._engine.outgoing()
            except TLSError:
                pass
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- the peer's bytes --------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Take bytes from the peer (b"": the transport ended); return what happened.

        Raises a TLSError subclass for anything the peer did wrong; the session is then
        FAILED, data_to_send() holds the alert (if one can be sent), and later calls raise the
        same error.
        """
        if self.error is not None:
            raise self.error
        if self.state not in st.RECEIVING:
            return []
        try:
            if not data:
                return self._eof()
            events: list[Event] = []
            for record in self._reader.feed(data):
                self._record(record, events)
                if self.state not in st.RECEIVING:
                    break
            return events
        except TLSError as e:
            self._fail(e)
            raise

    def _fail(self, error: TLSError) -> None:
        if self.state == st.START and isinstance(error, ProtocolViolation | HandshakeFailure):
            # No keys yet: a plaintext alert tells the peer why (RFC 8446 6.2).
            self._out += plaintext_alert(_alert_for(error))
        self.error = error
        if self.state != st.FAILED:
            self._move(st.FAIL)

    def _eof(self) -> list[Event]:
        self._reader.check_eof()
        if self.state in (st.START, st.HANDSHAKING):
            raise HandshakeFailure("the peer closed the connection during the handshake")
        self._move(st.RCV_EOF)
        return [TruncatedClose()]

    def _record(self, record: Record, events: list[Event]) -> None:
        opened = self.info is not None  # the handshake was done before this record
        if self.state == st.START:
            if not self.server:
                raise TLSClosed("a client session must start() before it receives data")
            self._client_hello(record)
            if self.state == st.START:
                return
        elif self.state in (st.OPEN, st.CLOSING):
            self._check_after_handshake(record)
            assert self._engine is not None
            self._engine.feed(record.raw)
        else:
            assert self._engine is not None
            self._engine.feed(record.raw)
        engine = self._engine
        assert engine is not None
        if self.state == st.HANDSHAKING:
            if not engine.handshake():
                return
            if engine.version() == TLS13:
                self._reader.limit = MAX_TLS13
            self.info = engine.complete()
            self._move(st.HANDSHAKE_DONE)
            events.append(self.info)
        data, closed = engine.read()
        self._count_empty(record, engine, bool(data or closed) or not opened)
        if data:
            events.append(ApplicationData(data))
        if closed:
            self._move(st.RCV_CLOSE_NOTIFY)
            events.append(CloseNotify())

    def _count_empty(self, record: Record, engine: Engine, gave: bool) -> None:
        """Refuse the record past MAX_EMPTY_RECORDS application data records in a row that
        gave nothing after the handshake, with an unexpected_message alert (OpenSSL's)."""
        if gave or record.content_type != APPLICATION_DATA:
            self._empty = 0
            return
        self._empty += 1
        if self._empty > MAX_EMPTY_RECORDS:
            engine.refuse(record.raw, ALERT_UNEXPECTED_MESSAGE)
            raise ProtocolViolation(
                f"over {MAX_EMPTY_RECORDS} empty records in a row", reason=UNEXPECTED_MESSAGE
            )

    def _client_hello(self, record: Record) -> None:
        assert self._hello is not None and self._server_engine is not None
        hello = self._hello.add(record)
        if hello is None:
            return
        offered = offered_versions(hello)
        if not offered & set(self.versions):
            top = max(offered) if offered else hello.max_version
            allowed = " and ".join(version_name(v) for v in self.versions)
            raise ProtocolVersionRefused(
                f"the client offered at most {version_name(top)}; this server speaks {allowed}",
                version=version_name(top),
            )
        if self.alpn and hello.alpn and not set(hello.alpn) & set(self.alpn):
            # RFC 7301 3.2: no shared protocol is a fatal no_application_protocol alert.
            protocols = ", ".join(repr(p[:40]) for p in hello.alpn[:8])
            raise HandshakeFailure(
                f"the client offered ALPN {protocols}; this server speaks "
                f"{', '.join(map(repr, self.alpn))}",
                reason=NO_APPLICATION_PROTOCOL,
            )
        self._engine = self._server_engine(hello)
        self._move(st.RCV_CLIENT_HELLO)
        for earlier in self._hello.records:
            self._engine.feed(earlier.raw)
        self._hello = None

    def _check_after_handshake(self, record: Record) -> None:
        """Refuse what has no place after the handshake (before the engine reads it).

        TLS 1.2: a handshake record is a renegotiation attempt (a ClientHello, or a
        HelloRequest to a client). It goes to the engine, which never renegotiates
        (OP_NO_RENEGOTIATION; tlslite-ng cannot) and answers with a warning no_renegotiation
        alert, so the peer decides whether to go on without it: RFC 5246 7.2.2 (that alert
        is "always a warning") and RFC 5746 4.2. A change_cipher_spec, or any plaintext
        handshake record in TLS 1.3 (which has no renegotiation, RFC 8446 4.1.2, and sends
        every record after the handshake as application_data, 5), ends the connection with
        a fatal unexpected_message alert.
        """
        engine = self._engine
        assert engine is not None
        tls12 = engine.version() == TLS12
        if record.content_type == HANDSHAKE and tls12:
            return
        if record.content_type == HANDSHAKE:
            error = "a plaintext handshake record after the TLS 1.3 handshake"
        elif record.content_type == CHANGE_CIPHER_SPEC:
            error = "change_cipher_spec after the handshake"
        else:
            return
        engine.refuse(record.raw, ALERT_UNEXPECTED_MESSAGE)
        raise ProtocolViolation(error, reason=UNEXPECTED_MESSAGE)


def _alert_for(error: TLSError) -> int:
    if isinstance(error, ProtocolVersionRefused):
        return ALERT_PROTOCOL_VERSION
    if error.reason == "oversized record":
        return ALERT_RECORD_OVERFLOW
    if error.reason == UNEXPECTED_MESSAGE:
        return ALERT_UNEXPECTED_MESSAGE
    if error.reason == NO_APPLICATION_PROTOCOL:
        return ALERT_NO_APPLICATION_PROTOCOL
    return ALERT_DECODE_ERROR
