"""What a connection tells its app, h11-style: small value objects returned by next_event()."""

from __future__ import annotations

from summon.net._record import Record


class Event(Record):
    """Base of the events; equal when of the same type with the same fields."""

    __slots__ = ()


class ConnectionEstablished(Event):
    """The three-way handshake completed (either side opened)."""

    __slots__ = ()


class DataReceived(Event):
    """In-order bytes from the peer; taking them opens the receive window again."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfStream(Event):
    """The peer sent FIN and every byte before it was delivered: it will send nothing more."""

    __slots__ = ()


class ConnectionClosed(Event):
    """The connection is gone; the last event it gives.

    reason: "closed" (both FINs exchanged), "reset" (valid RST from the peer), "refused" (RST
    answering our SYN), "timeout" (retransmissions or probes exhausted), "aborted" (abort()).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason
