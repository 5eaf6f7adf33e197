"""A listening port: a bounded SYN queue of half-open connections and a bounded accept queue.

Under a SYN flood the SYN queue fills and further SYNs are dropped and counted (or, with
`syn_cookies`, answered statelessly: the SYN,ACK's sequence number encodes and authenticates
what we would have kept). Either way memory stays bounded by syn_backlog + accept_backlog
connections, and half-open entries expire after the SYN,ACK retransmissions give up.
"""

from __future__ import annotations

from collections import deque

from summon.net.tcp import state as st
from summon.net.tcp.connection import Connection
from summon.net.tcp.segment import Segment
from summon.net.tcp.seq import MASK
from summon.net.tcp.wire import ACK, RST, SYN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.tcp.layer import TCP

# SYN cookies keep the MSS as a 3-bit index into this table (the largest entry <= the peer's).
COOKIE_MSS = (88, 256, 536, 956, 1220, 1300, 1440, 1460)
COOKIE_PERIOD = 64.0  # seconds per tick of the cookie's 5-bit clock; a cookie lives 1-2 ticks


class Listener:
    """What `TCP.listen` returns: take established connections with `accept()`."""

    __slots__ = (
        "_cookie_key",
        "_layer",
        "accept_backlog",
        "accept_queue",
        "port",
        "state",
        "syn_backlog",
        "syn_cookies",
        "syn_queue",
    )

    def __init__(
        self, layer: TCP, port: int, accept_backlog: int, syn_backlog: int, syn_cookies: bool
    ) -> None:
        self._layer = layer
        self.port = port
        self.state = st.transition(st.CLOSED, st.OPEN_PASSIVE)
        self.accept_backlog = accept_backlog
        self.syn_backlog = syn_backlog
        self.syn_cookies = syn_cookies
        self.syn_queue: dict[tuple[bytes, int], Connection] = {}
        self.accept_queue: deque[Connection] = deque()
        self._cookie_key = layer.random_bytes(16)

    def __repr__(self) -> str:
        return (
            f"<Listener :{self.port} {self.state} half-open {len(self.syn_queue)}"
            f"/{self.syn_backlog} ready {len(self.accept_queue)}/{self.accept_backlog}>"
        )

    def accept(self) -> Connection | None:
        """The oldest established connection not yet taken, or None."""
        return self.accept_queue.popleft() if self.accept_queue else None

    def close(self) -> None:
        """Stop listening: half-open and unaccepted connections are reset."""
        if self.state == st.CLOSED:
            return
        self.state = st.transition(self.state, st.CLOSE)
        for conn in [*self.syn_queue.values(), *self.accept_queue]:
            conn.abort()
        self.syn_queue.clear()
        self.accept_queue.clear()
        self._layer.unlisten(self)

    # ----------------------------------------------------------------- for Connection

    def can_accept(self) -> bool:
        return len(self.accept_queue) < self.accept_backlog

    def established(self, conn: Connection) -> None:
        """conn finished its handshake: from the SYN queue to the accept queue."""
        self.syn_queue.pop((conn.remote_ip, conn.remote_port), None)
        self.accept_queue.append(conn)
        self._layer.mark_ready(self)

    def forget(self, conn: Connection) -> None:
        """conn closed; if it was half-open, its SYN-queue slot is free again."""
        key = (conn.remote_ip, conn.remote_port)
        if self.syn_queue.get(key) is conn:
            del self.syn_queue[key]

    # ----------------------------------------------------------------- segments

    def on_segment(self, src_ip: bytes, seg: Segment, now: float) -> None:
        """A segment for our port that matched no connection (RFC 9293 3.10.7.2, LISTEN)."""
        layer = self._layer
        flags = seg.flags
        if flags & RST:
            layer.count("tcp__listen_rst__drop")
            return
        if flags & ACK:
            if not flags & SYN and self.syn_cookies and self._take_cookie(src_ip, seg, now):
                return
            layer.count("tcp__listen_ack__respond_rst")
            layer.emit_to(src_ip, Segment(self.port, seg.src_port, seg.ack, 0, RST, 0))
            return
        if not flags & SYN:
            layer.count("tcp__listen_no_syn__drop")
            return
        if not self.can_accept():
            layer.count("tcp__accept_queue_full__drop")
            return
        if len(self.syn_queue) >= self.syn_backlog:
            if self.syn_cookies:
                self._send_cookie(src_ip, seg, now)
            else:
                layer.count("tcp__syn_queue_full__drop")
            return
        conn = Connection(layer, self.port, src_ip, seg.src_port, layer.new_iss(), listener=self)
        self.syn_queue[(src_ip, seg.src_port)] = conn
        layer.register(conn)
        layer.count("tcp__listen__syn_received")
        conn.open_passive(seg, now)

    # ----------------------------------------------------------------- SYN cookies

    def _cookie_hash(self, src_ip: bytes, src_port: int, peer_isn: int, tick: int) -> int:
        from hashlib import blake2s  # only a listener under a flood pays for the import

        data = (
            src_ip
            + self._layer.local_ip
            + src_port.to_bytes(2, "big")
            + self.port.to_bytes(2, "big")
            + peer_isn.to_bytes(4, "big")
            + tick.to_bytes(8, "big", signed=True)  # tick - 1 is -1 in the first period
        )
        digest = blake2s(data, key=self._cookie_key, digest_size=4).digest()
        return int.from_bytes(digest, "big") & 0xFFFFFF

    # cookie (our ISN) = tick mod 32 : 5 bits | MSS index : 3 bits | keyed hash : 24 bits
    def _send_cookie(self, src_ip: bytes, seg: Segment, now: float) -> None:
        tick = int(now // COOKIE_PERIOD)
        peer_mss = seg.mss or 536
        index = max(i for i, mss in enumerate(COOKIE_MSS) if mss <= peer_mss or i == 0)
        cookie = (
            ((tick & 31) << 27)
            | (index << 24)
            | self._cookie_hash(src_ip, seg.src_port, seg.seq, tick)
        )
        self._layer.count("tcp__syn_cookie__sent")
        window = min(self._layer.config.receive_buffer, 0xFFFF)
        reply = Segment(
            self.port,
            seg.src_port,
            cookie,
            (seg.seq + 1) & MASK,
            SYN | ACK,
            window,
            mss=self._layer.config.mss,
        )
        self._layer.emit_to(src_ip, reply)

    def _take_cookie(self, src_ip: bytes, seg: Segment, now: float) -> bool:
        """An ACK that may complete a cookie handshake; True if it did."""
        cookie = (seg.ack - 1) & MASK
        peer_isn = (seg.seq - 1) & MASK
        tick = int(now // COOKIE_PERIOD)
        for candidate in (tick, tick - 1):
            if (candidate & 31) == cookie >> 27 and (cookie & 0xFFFFFF) == self._cookie_hash(
                src_ip, seg.src_port, peer_isn, candidate
            ):
                break
        else:
            self._layer.count("tcp__syn_cookie__invalid")
            return False
        if not self.can_accept():
            self._layer.count("tcp__accept_queue_full__drop")
            return True
        self._layer.count("tcp__syn_cookie__accepted")
        mss = COOKIE_MSS[(cookie >> 24) & 7]
        conn = Connection(self._layer, self.port, src_ip, seg.src_port, cookie, listener=self)
        conn.wscale_offered = False  # the cookie SYN,ACK carried no window scale
        self._layer.register(conn)
        conn.open_from_cookie(seg, mss, now)
        return True
