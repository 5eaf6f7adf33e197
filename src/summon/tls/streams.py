"""The asyncio adapter: a Session between any Stack flow and the app's (reader, writer).

wrap() takes the (StreamReader, StreamWriter) a Stack handed out (kernel sockets or
summon.net alike), runs the handshake under a deadline, and returns a new pair with the same
API carrying plaintext: a real asyncio.StreamReader fed by a pump task, and a StreamWriter over
_TLSTransport, which encrypts every write. Errors the peer causes surface as the typed errors:
raised by wrap() during the handshake, and afterwards set on the reader (read() raises them)
and raised by drain().
"""

from __future__ import annotations

import asyncio

from summon.tls import state as st
from summon.tls.errors import HandshakeTimeout, TLSError
from summon.tls.events import ApplicationData, CloseNotify, HandshakeComplete, TruncatedClose

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.tls.events import Event
    from summon.tls.session import Session

READ_SIZE = 1 << 16


def _flush(session: Session, writer: asyncio.StreamWriter) -> None:
    out = session.data_to_send()
    if out and not writer.is_closing():
        writer.write(out)


async def handshake(
    session: Session,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float,
) -> list[Event]:
    """Run the handshake over (reader, writer); return events that came after it (early data).

    On any failure the alert (if any) is written, the transport closed, and the typed error
    raised; a handshake slower than `timeout` seconds raises HandshakeTimeout.
    """
    events: list[Event] = []
    try:
        async with asyncio.timeout(timeout):
            if not session.server:
                session.start()
                _flush(session, writer)
            while session.state in (st.START, st.HANDSHAKING):
                data = await reader.read(READ_SIZE)
                try:
                    events += session.receive_data(data)
                finally:
                    _flush(session, writer)
            await writer.drain()
    except TimeoutError:
        session.close()
        writer.close()
        raise HandshakeTimeout(timeout) from None
    except TLSError:
        writer.close()
        raise
    except (ConnectionError, OSError) as exc:
        writer.close()
        from summon.tls.errors import HandshakeFailure

        raise HandshakeFailure(f"the transport failed during the handshake: {exc}") from exc
    return [ev for ev in events if not isinstance(ev, HandshakeComplete)]


class _TLSTransport(asyncio.Transport):
    """The transport under the app's StreamWriter: writes become records on the inner flow."""

    def __init__(
        self,
        session: Session,
        inner_reader: asyncio.StreamReader,
        inner_writer: asyncio.StreamWriter,
        protocol: asyncio.StreamReaderProtocol,
    ) -> None:
        super().__init__()
        self._session = session
        self._inner_reader = inner_reader
        self._inner = inner_writer
        self._protocol = protocol
        self._closing = False
        self._lost = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._pump: asyncio.Task[None] | None = None
        self._finisher: asyncio.Task[None] | None = None

    def start(self, early: list[Event]) -> None:
        self._protocol.connection_made(self)
        self._deliver(early)
        self._pump = asyncio.get_running_loop().create_task(self._run())

    # -- reading -----------------------------------------------------------------------------

    def _deliver(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, ApplicationData):
                self._protocol.data_received(ev.data)
            elif isinstance(ev, CloseNotify | TruncatedClose):
                self._protocol.eof_received()

    async def _run(self) -> None:
        error: Exception | None = None
        try:
            while self._session.state in st.RECEIVING:
                await self._reading.wait()
                data = await self._inner_reader.read(READ_SIZE)
                try:
                    events = self._session.receive_data(data)
                finally:
                    _flush(self._session, self._inner)
                self._deliver(events)
                if not data:
                    break
            if self._session.state == st.CLOSED and not self._closing:
                # The peer's close_notify (answered above) or its EOF: nothing more can come.
                await self._inner.drain()
        except TLSError as exc:
            error = exc
        except (ConnectionError, OSError) as exc:
            error = exc
        except asyncio.CancelledError:
            pass
        if error is not None:
            self._inner.close()
        self._connection_lost(error)

    def _connection_lost(self, error: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(error)

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._session.state != st.OPEN:
            return  # as asyncio's transports do after close: the bytes go nowhere
        self._session.send(bytes(data))
        _flush(self._session, self._inner)

    def writelines(self, list_of_data: object) -> None:
        self.write(b"".join(list_of_data))  # type: ignore[arg-type]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Send close_notify: TLS's end of stream. The peer may still send until it answers."""
        self._session.close()
        _flush(self._session, self._inner)

    def get_write_buffer_size(self) -> int:
        return self._inner.transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.transport.set_write_buffer_limits(high, low)

    def is_closing(self) -> bool:
        return self._closing or self._inner.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._session.close()
        _flush(self._session, self._inner)
        self._inner.close()
        # Kept referenced: the loop holds tasks only weakly.
        self._finisher = asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        try:
            await self._inner.wait_closed()
        except (ConnectionError, OSError):
            pass
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
        self._connection_lost(None)

    def abort(self) -> None:
        self._closing = True
        self._inner.transport.abort()
        if self._pump is not None:
            self._pump.cancel()

    def get_extra_info(self, name: str, default: object = None) -> object:
        info = self._session.info
        if name == "tls":
            return info
        if info is not None:
            if name == "peercert":
                return info.peer_certificate
            if name == "tls_version":
                return info.version
            if name == "alpn_protocol":
                return info.alpn
            if name == "server_name":
                return info.server_name
            if name == "cipher":
                return info.cipher
        return self._inner.get_extra_info(name, default)


class TLSStreamWriter(asyncio.StreamWriter):
    """A StreamWriter whose drain() also waits for the encrypted bytes to leave."""

    def __init__(
        self,
        transport: _TLSTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        inner: asyncio.StreamWriter,
    ) -> None:
        super().__init__(transport, protocol, reader, asyncio.get_running_loop())
        self._inner_writer = inner

    async def drain(self) -> None:
        exc = self._reader.exception() if self._reader is not None else None  # type: ignore[attr-defined]
        if isinstance(exc, TLSError):
            raise exc
        if not self._inner_writer.is_closing():
            await self._inner_writer.drain()
        await super().drain()
        # Encryption ran in write(), on this task, for as long as it took (pure Python: ~3 ms
        # per 1 KB): yield once, so one busy connection cannot starve the others' handshakes.
        await asyncio.sleep(0)


async def wrap(
    session: Session,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: float,
    limit: int = 1 << 16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Handshake over (reader, writer), then return the plaintext (reader, writer)."""
    early = await handshake(session, reader, writer, timeout)
    app_reader = asyncio.StreamReader(limit=limit)
    protocol = asyncio.StreamReaderProtocol(app_reader)
    transport = _TLSTransport(session, reader, writer, protocol)
    app_writer = TLSStreamWriter(transport, protocol, app_reader, writer)
    transport.start(early)
    return app_reader, app_writer
