"""Two sans-IO sessions joined by an in-memory link, for tests (after h11's ConnectionPair)."""

from __future__ import annotations

from summon.secrets import FolderSecrets
from summon.tls.device import TLSDevice
from summon.tls.events import ApplicationData, CloseNotify, HandshakeComplete, TruncatedClose
from summon.tls.session import Session

Event = HandshakeComplete | ApplicationData | CloseNotify | TruncatedClose

BACKENDS = ("openssl", "python")


def device(pki_folder: str, backend: str) -> TLSDevice:
    return TLSDevice(FolderSecrets(pki_folder), backend)


class Pair:
    """A client and a server session; pump() moves bytes until both are quiet."""

    def __init__(self, client: Session, server: Session, *, chunk: int | None = None) -> None:
        self.client = client
        self.server = server
        self.chunk = chunk
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.wire_to_server = bytearray()  # everything the client sent, for inspection

    def _deliver(self, data: bytes, to: Session, events: list[Event]) -> None:
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            events += to.receive_data(data[i : i + step])

    def pump(self) -> None:
        for _ in range(100):
            a = self.client.data_to_send()
            self.wire_to_server += a
            if a:
                self._deliver(a, self.server, self.server_events)
            b = self.server.data_to_send()
            if b:
                self._deliver(b, self.client, self.client_events)
            if not a and not b:
                return
        raise AssertionError("the sessions never went quiet")

    def handshake(self) -> None:
        self.client.start()
        self.pump()
