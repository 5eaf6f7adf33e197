"""TCP for summon.net (RFC 9293): a sans-IO layer object, its connections, listeners and events.

The parts, after mirage-tcpip's split: wire (layout), segment (typed record, two-step parser),
seq (modular arithmetic), state (THE transition table), window (acceptability, scaling),
buffers (send buffer, receive buffer with reassembly), timers (RFC 6298 RTO and deadlines),
congestion (RFC 5681/6582 NewReno), connection (one TCB), listener (SYN and accept queues),
layer (demultiplexing, RSTs for no socket, counters).
"""

from __future__ import annotations

from summon.net.tcp.config import TCPConfig
from summon.net.tcp.connection import Connection, ConnectionStateError
from summon.net.tcp.events import (
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    EndOfStream,
    Event,
)
from summon.net.tcp.layer import TCP
from summon.net.tcp.listener import Listener
from summon.net.tcp.segment import Segment, TCPIntegrityError, TCPSanityError, parse_segment

__all__ = [
    "TCP",
    "Connection",
    "ConnectionClosed",
    "ConnectionEstablished",
    "ConnectionStateError",
    "DataReceived",
    "EndOfStream",
    "Event",
    "Listener",
    "Segment",
    "TCPConfig",
    "TCPIntegrityError",
    "TCPSanityError",
    "parse_segment",
]
