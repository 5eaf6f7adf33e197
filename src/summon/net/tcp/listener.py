"""A listening port: a bounded SYN queue of half-open connections and a bounded accept queue.

Under a SYN flood the SYN queue fills and further SYNs are dropped and counted (or, with
`syn_cookies`, answered statelessly: the SYN,ACK's sequence number encodes and authenticates
what we would have kept). Either way memory stays bounded by syn_backlog + accept_backlog
connections, and half-open entries expire after the SYN,ACK retransmissions give up.

Like a Connection, a Listener does no I/O and knows nothing of its layer: what it answers
and counts is left in `listener.effects` (effects.py), and the connections it spawns are
returned to the caller, which registers them and drains their effects.
"""

from __future__ import annotations

from collections import deque

from summon.net.tcp import state as st
from summon.net.tcp.connection import Connection
from summon.net.tcp.effects import Effects
from summon.net.tcp.segment import Segment
from summon.net.tcp.seq import MASK, new_iss
from summon.net.tcp.wire import ACK, RST, SYN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.net.tcp.buffers import ReceiveBudget, SendBudget
    from summon.net.tcp.config import TCPConfig

# SYN cookies keep the MSS as a 3-bit index into this table (the largest entry <= the peer's).
COOKIE_MSS = (88, 256, 536, 956, 1220, 1300, 1440, 1460)
COOKIE_PERIOD = 64.0  # seconds per tick of the cookie's 5-bit clock; a cookie lives 1-2 ticks


class Listener:
    """What `TCP.listen` returns: take established connections with `accept()`."""

    __slots__ = (
        "_budget",
        "_can_accept",
        "_conn_effects",
        "_cookie_key",
        "_random_bytes",
        "_send_budget",
        "accept_backlog",
        "accept_queue",
        "config",
        "effects",
        "port",
        "state",
        "syn_backlog",
        "syn_cookies",
        "syn_queue",
    )

    def __init__(
        self,
        config: TCPConfig,
        port: int,
        accept_backlog: int,
        syn_backlog: int,
        syn_cookies: bool,
        random_bytes: Callable[[int], bytes],
        conn_effects: Effects | None = None,
        budget: ReceiveBudget | None = None,
        send_budget: SendBudget | None = None,
    ) -> None:
        """random_bytes makes the SYN-cookie key (now) and the ISNs of the connections;
        conn_effects is the record the connections it spawns leave their effects in (see
        effects.py; by default each its own); budget, what their receive buffers draw on
        (TCP's, shared by all its connections; by default each its own); send_budget, what their
        send buffers draw on."""
        self.config = config
        self._budget = budget
        self._send_budget = send_budget
        self.effects = Effects()
        self._conn_effects = conn_effects
        self._can_accept = self.can_accept  # one bound method for all its connections
        self._random_bytes = random_bytes
        self.port = port
        self.state = st.transition(st.CLOSED, st.OPEN_PASSIVE)
        self.accept_backlog = accept_backlog
        self.syn_backlog = syn_backlog
        self.syn_cookies = syn_cookies
        self.syn_queue: dict[tuple[bytes, int], Connection] = {}
        self.accept_queue: deque[Connection] = deque()
        self._cookie_key = random_bytes(16)

    def reseed(self) -> None:
        """Draw the SYN-cookie key again (a VM restored from a snapshot shares the old one:
        its siblings' cookies would be forgeable from one). Cookies sent before are void."""
        self._cookie_key = self._random_bytes(16)

    def __repr__(self) -> str:
        return (
            f"<Listener :{self.port} {self.state} half-open {len(self.syn_queue)}"
            f"/{self.syn_backlog} ready {len(self.accept_queue)}/{self.accept_backlog}>"
        )

    def accept(self) -> Connection | None:
        """The oldest established connection not yet taken, or None."""
        return self.accept_queue.popleft() if self.accept_queue else None

    def close(self) -> list[Connection]:
        """Stop listening; returns the half-open and unaccepted connections, which the caller
        resets (TCP.unlisten aborts them)."""
        if self.state == st.CLOSED:
            return []
        self.state = st.transition(self.state, st.CLOSE)
        doomed = [*self.syn_queue.values(), *self.accept_queue]
        self.syn_queue.clear()
        self.accept_queue.clear()
        return doomed

    # ----------------------------------------------------------------- for the layer

    def can_accept(self) -> bool:
        return len(self.accept_queue) < self.accept_backlog

    def established(self, conn: Connection) -> None:
        """conn finished its handshake (its effects said so): from the SYN queue to the
        accept queue; the listener has news for the app."""
        self.syn_queue.pop((conn.remote_ip, conn.remote_port), None)
        self.accept_queue.append(conn)
        self.effects.ready = True

    def forget(self, conn: Connection) -> None:
        """conn closed; if it was half-open, its SYN-queue slot is free again."""
        key = (conn.remote_ip, conn.remote_port)
        if self.syn_queue.get(key) is conn:
            del self.syn_queue[key]

    # ----------------------------------------------------------------- segments

    def on_segment(
        self, src_ip: bytes, dst_ip: bytes, seg: Segment, now: float
    ) -> Connection | None:
        """A segment for our port that matched no connection (RFC 9293 3.10.7.2, LISTEN).
        Returns the connection it opened, if any: the caller registers it under its 4-tuple
        and drains its effects (its SYN,ACK)."""
        counts = self.effects.counts
        flags = seg.flags
        if flags & RST:
            counts.append("tcp__listen_rst__drop")
            return None
        if flags & ACK:
            if not flags & SYN and self.syn_cookies:
                taken, conn = self._take_cookie(src_ip, dst_ip, seg, now)
                if taken:
                    return conn
            counts.append("tcp__listen_ack__respond_rst")
            self.effects.replies.append(
                (src_ip, Segment(self.port, seg.src_port, seg.ack, 0, RST, 0))
            )
            return None
        if not flags & SYN:
            counts.append("tcp__listen_no_syn__drop")
            return None
        if not self.can_accept():
            counts.append("tcp__accept_queue_full__drop")
            return None
        if len(self.syn_queue) >= self.syn_backlog:
            if self.syn_cookies:
                self._send_cookie(src_ip, dst_ip, seg, now)
            else:
                counts.append("tcp__syn_queue_full__drop")
            return None
        conn = Connection(
            self.config,
            dst_ip,
            self.port,
            src_ip,
            seg.src_port,
            new_iss(self._random_bytes),
            can_accept=self._can_accept,
            effects=self._conn_effects,
            budget=self._budget,
            send_budget=self._send_budget,
        )
        self.syn_queue[(src_ip, seg.src_port)] = conn
        counts.append("tcp__listen__syn_received")
        conn.open_passive(seg, now)
        return conn

    # ----------------------------------------------------------------- SYN cookies

    def _cookie_hash(
        self, src_ip: bytes, dst_ip: bytes, src_port: int, peer_isn: int, tick: int
    ) -> int:
        from hashlib import blake2s  # only a listener under a flood pays for the import

        data = (
            src_ip
            + dst_ip
            + src_port.to_bytes(2, "big")
            + self.port.to_bytes(2, "big")
            + peer_isn.to_bytes(4, "big")
            + tick.to_bytes(8, "big", signed=True)  # tick - 1 is -1 in the first period
        )
        digest = blake2s(data, key=self._cookie_key, digest_size=4).digest()
        return int.from_bytes(digest, "big") & 0xFFFFFF

    # cookie (our ISN) = tick mod 32 : 5 bits | MSS index : 3 bits | keyed hash : 24 bits
    def _send_cookie(self, src_ip: bytes, dst_ip: bytes, seg: Segment, now: float) -> None:
        tick = int(now // COOKIE_PERIOD)
        peer_mss = seg.mss or 536
        index = max(i for i, mss in enumerate(COOKIE_MSS) if mss <= peer_mss or i == 0)
        cookie = (
            ((tick & 31) << 27)
            | (index << 24)
            | self._cookie_hash(src_ip, dst_ip, seg.src_port, seg.seq, tick)
        )
        self.effects.counts.append("tcp__syn_cookie__sent")
        window = min(self.config.receive_buffer, 0xFFFF)
        reply = Segment(
            self.port,
            seg.src_port,
            cookie,
            (seg.seq + 1) & MASK,
            SYN | ACK,
            window,
            mss=self.config.mss,
        )
        self.effects.replies.append((src_ip, reply))

    def _take_cookie(
        self, src_ip: bytes, dst_ip: bytes, seg: Segment, now: float
    ) -> tuple[bool, Connection | None]:
        """An ACK that may complete a cookie handshake: (whether it carried a valid cookie,
        the connection it opened if the accept queue had room)."""
        cookie = (seg.ack - 1) & MASK
        peer_isn = (seg.seq - 1) & MASK
        tick = int(now // COOKIE_PERIOD)
        for candidate in (tick, tick - 1):
            if (candidate & 31) == cookie >> 27 and (cookie & 0xFFFFFF) == self._cookie_hash(
                src_ip, dst_ip, seg.src_port, peer_isn, candidate
            ):
                break
        else:
            self.effects.counts.append("tcp__syn_cookie__invalid")
            return False, None
        if not self.can_accept():
            self.effects.counts.append("tcp__accept_queue_full__drop")
            return True, None
        self.effects.counts.append("tcp__syn_cookie__accepted")
        mss = COOKIE_MSS[(cookie >> 24) & 7]
        conn = Connection(
            self.config,
            dst_ip,
            self.port,
            src_ip,
            seg.src_port,
            cookie,
            can_accept=self._can_accept,
            effects=self._conn_effects,
            budget=self._budget,
            send_budget=self._send_budget,
        )
        conn.wscale_offered = False  # the cookie SYN,ACK carried no window scale
        conn.open_from_cookie(seg, mss, now)
        return True, conn
