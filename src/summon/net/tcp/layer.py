"""The TCP layer: parses what IPv4 hands up, finds the connection or listener, answers RSTs.

    tcp = TCP(local_ip, send_ip)            # send_ip(proto, dst_ip, payload) goes to IPv4
    ipv4.handlers[6] = tcp.receive          # receive(src_ip, dst_ip, payload, now)
    listener = tcp.listen(80)
    conn = tcp.connect(peer_ip, 443)
    tcp.send(conn, data); tcp.close(conn)   # the app's calls go through the layer...
    event = tcp.next_event(conn)            # ...which applies what they did (conn.effects)
    tcp.timers(now)                         # at tcp.next_deadline(), or whenever
    for thing in tcp.ready(): ...           # Connections / Listeners with news: wake their tasks

Connections and listeners hold no reference to the layer: each call on one leaves its effects
(segments, counters, marks, its next deadline) in its `effects` record, and `_apply` here
sends, counts and schedules them right after the call, so the order on the wire is the
order of the calls.

Per-path counters ("tcp__bad_checksum__drop", "tcp__no_socket_match__respond_rst",
"tcp__retransmit", "tcp__challenge_ack", ...) are in `counters`, a Counter (0 when absent).
"""

from __future__ import annotations

import heapq
import os

from summon.net.counters import Counters
from summon.net.errors import NetError
from summon.net.tcp import state as st
from summon.net.tcp.buffers import SEND_FLOOR, ReceiveBudget, SendBudget
from summon.net.tcp.config import TCPConfig
from summon.net.tcp.connection import Connection
from summon.net.tcp.effects import Effects
from summon.net.tcp.listener import Listener
from summon.net.tcp.segment import Segment, TCPIntegrityError, TCPSanityError, parse_segment
from summon.net.tcp.seq import MASK, new_iss, seq_gt
from summon.net.tcp.wire import ACK, PROTOCOL, RST, SYN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.net.icmp import IcmpErrorEvent
    from summon.net.tcp.events import Event

    SendIP = Callable[[int, bytes, bytes], None]


class TCP:
    """All TCP of one local IPv4 address: connections by 4-tuple, listeners by port."""

    __slots__ = (
        "_clock",
        "_connections",
        "_effects",
        "_heap",
        "_heap_count",
        "_listeners",
        "_now",
        "_ready",
        "_send_ip",
        "_send_waiting",
        "_starved",
        "_time_wait",
        "config",
        "counters",
        "local_ip",
        "random_bytes",
        "receive_budget",
        "send_budget",
    )

    def __init__(
        self,
        local_ip: bytes,
        send_ip: SendIP,
        *,
        config: TCPConfig | None = None,
        clock: Callable[[], float] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        counters: Counters | None = None,
    ) -> None:
        """send_ip(6, dst_ip, segment_bytes) hands a segment to IPv4. clock, if given, is read
        when the app calls in (send, close, connect); otherwise the last `now` seen is used.
        random_bytes makes ISNs and the SYN-cookie key (seed it in tests). counters: share the
        interface's (`iface.counters`) to see every layer's paths in one place."""
        self.local_ip = local_ip
        self._send_ip = send_ip
        self.config = config or TCPConfig()
        self._clock = clock
        self.random_bytes = random_bytes
        self.counters = counters if counters is not None else Counters()
        self._now = 0.0
        self._connections: dict[tuple[bytes, int, int], Connection] = {}
        self._listeners: dict[int, Listener] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._heap_count = 0
        self._ready: dict[Connection | Listener, None] = {}
        self._time_wait: dict[Connection, None] = {}  # oldest first (config.max_time_wait)
        # Every connection's calls leave their effects here; _apply drains it after each.
        self._effects = Effects()
        # Connections whose window the budget shut, oldest first (_reopen_windows).
        self._starved: dict[Connection, None] = {}
        # What all the connections' receive buffers hold together (config.receive_memory).
        self.receive_budget = ReceiveBudget(
            self.config.receive_memory, self.config.out_of_order_memory
        )
        # What all their send buffers hold together (config.send_memory), and the
        # connections the spent budget keeps from taking what their app wrote, oldest first:
        # told (ready) once it has room again, not at their own next ACK (a fast peer's
        # connection would otherwise go at the floor's pace while room sits unused).
        self.send_budget = SendBudget(
            self.config.send_memory, min(self.config.send_buffer, SEND_FLOOR)
        )
        self._send_waiting: dict[Connection, None] = {}

    # ----------------------------------------------------------------- the app's side

    def listen(
        self,
        port: int,
        *,
        backlog: int | None = None,
        syn_backlog: int | None = None,
        syn_cookies: bool | None = None,
    ) -> Listener:
        """Listen on port (raises ValueError if it is taken or out of range)."""
        if not 0 < port < 65536 or port in self._listeners:
            raise ValueError(f"tcp: cannot listen on port {port}")
        c = self.config
        listener = Listener(
            c,
            port,
            c.accept_backlog if backlog is None else backlog,
            c.syn_backlog if syn_backlog is None else syn_backlog,
            c.syn_cookies if syn_cookies is None else syn_cookies,
            self.random_bytes,
            self._effects,
            self.receive_budget,
            self.send_budget,
        )
        self._listeners[port] = listener
        return listener

    def readdress(self, local_ip: bytes) -> None:
        """Our address changed (a DHCP lease): what every connection sends from now on is
        checksummed for the new one, as IPv4 sends it from there."""
        self.local_ip = local_ip
        for conn in self._connections.values():
            conn.local_ip = local_ip

    def unlisten(self, listener: Listener) -> None:
        """Stop listening: half-open and unaccepted connections are reset. Idempotent."""
        for conn in listener.close():
            conn.abort()
            self._apply(conn)
        if self._listeners.get(listener.port) is listener:
            del self._listeners[listener.port]

    def connect(
        self,
        remote_ip: bytes,
        remote_port: int,
        *,
        local_port: int | None = None,
        now: float | None = None,
    ) -> Connection:
        """Open a connection: the SYN goes out now; ConnectionEstablished follows, or
        ConnectionClosed('refused' / 'timeout')."""
        if now is not None:
            self._now = now
        if local_port is None:
            local_port = self._ephemeral_port(remote_ip, remote_port)
        elif (remote_ip, remote_port, local_port) in self._connections:
            raise ValueError(f"tcp: 4-tuple with local port {local_port} is in use")
        conn = Connection(
            self.config,
            self.local_ip,
            local_port,
            remote_ip,
            remote_port,
            self.new_iss(),
            effects=self._effects,
            budget=self.receive_budget,
            send_budget=self.send_budget,
        )
        self.register(conn)
        conn.open_active(self.now())
        self._apply(conn)
        return conn

    def send(self, conn: Connection, data: bytes) -> int:
        """Queue data on conn; how many bytes fit (maybe 0). ConnectionStateError after
        close(), abort(), or once the connection is gone."""
        n = conn.send(data, self.now())
        self._apply(conn)
        return n

    def wants_send_space(self, conn: Connection) -> None:
        """The app has more for conn than its send buffer took: if the stack-wide send
        budget is what stopped it (not the buffer's own size, whose ACKs tell it anyway),
        conn is ready again once the budget has room."""
        if conn.sndbuf.budget_bound and conn not in self._send_waiting:
            self._send_waiting[conn] = None
            self.counters.inc("tcp__send_memory__wait")

    def close(self, conn: Connection) -> None:
        """No more data from us on conn: a FIN follows what is queued. Idempotent."""
        conn.close(self.now())
        self._apply(conn)

    def orphan(self, conn: Connection) -> None:
        """The app has closed conn and reads no more: see Connection.orphan."""
        conn.orphan(self.now())
        self._apply(conn)

    def abort(self, conn: Connection) -> None:
        """Drop conn at once: RST to the peer, queued data discarded (the app's call: it
        will read none of it, so its receive buffer goes back to the budget). Idempotent."""
        conn.abort()
        conn.rcvbuf.clear()
        if self._starved:
            self._reopen_windows()
        self._apply(conn)

    def next_event(self, conn: Connection, max_bytes: int = 65536) -> Event | None:
        """conn's next event for the app, or None (taking data may send a window update)."""
        event = conn.next_event(max_bytes)
        if conn.effects.segments:
            self._apply(conn)
        if self._starved and event is not None:
            self._reopen_windows()
        return event

    def _reopen_windows(self) -> None:
        """An app read (or aborted), so the budget may have room: connections whose windows it
        shut get a window update, oldest first, as far as the room goes."""
        budget = self.receive_budget
        room = budget.limit - budget.used
        starved = self._starved
        while starved and room > 0:
            conn = next(iter(starved))
            if conn.reopen_window():
                del starved[conn]
                self._apply(conn)
                room -= (conn.rcv_adv - conn.rcv_nxt) & MASK
                continue
            rcvbuf = conn.rcvbuf
            if conn.state in st.RECEIVING and rcvbuf.free < rcvbuf.capacity - len(rcvbuf.readable):
                break  # the budget still shuts it: it keeps its place, first in line
            del starved[conn]  # done receiving, or waiting on its own app's reads now

    def timers(self, now: float) -> None:
        """Fire every timer due at `now`."""
        self._now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn._scheduled != deadline:
                continue  # superseded by an earlier deadline, already handled
            conn._scheduled = None
            conn.on_timer(now)
            self._apply(conn)

    def next_deadline(self) -> float | None:
        """When timers() next has work, or None."""
        heap = self._heap
        while heap and heap[0][2]._scheduled != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def ready(self) -> list[Connection | Listener]:
        """Connections and listeners that have news since the last call (events to read,
        send space freed, connections to accept), oldest first; the set is then emptied."""
        waiting = self._send_waiting
        if waiting and self.send_budget.limit - self.send_budget.used >= self.config.mss:
            for conn in waiting:  # those that still find no room ask again
                self._ready[conn] = None
            waiting.clear()
        out = list(self._ready)
        self._ready.clear()
        return out

    @property
    def connections(self) -> list[Connection]:
        """Every connection the layer still tracks (TIME_WAIT and half-open ones included)."""
        return list(self._connections.values())

    # ----------------------------------------------------------------- from IPv4

    def receive(self, src_ip: bytes, dst_ip: bytes, payload: bytes, now: float) -> None:
        """One TCP datagram from IPv4. Never raises for bad input: it is counted and dropped."""
        self._now = now
        try:
            seg = parse_segment(src_ip, dst_ip, payload)
        except (TCPIntegrityError, TCPSanityError) as error:
            self.counters.inc(f"tcp__{error.reason}__drop")
            return
        if dst_ip != self.local_ip:
            self.counters.inc("tcp__not_local__drop")
            return
        self.counters.inc("tcp__segment_in")
        conn = self._connections.get((src_ip, seg.src_port, seg.dst_port))
        if conn is not None:
            if (
                conn.state == st.TIME_WAIT
                and seg.flags & (SYN | ACK | RST) == SYN
                and seq_gt(seg.seq, conn.rcv_nxt)
                and seg.dst_port in self._listeners
            ):
                # RFC 9293 3.10.7.4: a new SYN above the old incarnation may reopen the pair.
                self.counters.inc("tcp__time_wait__reopen")
                conn.reincarnate()
                self._apply(conn)
            else:
                conn.on_segment(seg, now)
                self._apply(conn)
                return
        listener = self._listeners.get(seg.dst_port)
        if listener is not None:
            spawned = listener.on_segment(src_ip, dst_ip, seg, now)
            self._apply_listener(listener)
            if spawned is not None:
                self.register(spawned)
                self._apply(spawned)
            return
        self._reset_unmatched(src_ip, seg)

    def receive_error(self, event: IcmpErrorEvent, now: float) -> None:
        """An ICMP error about a segment we sent (IPv4's error_handler)."""
        self._now = now
        quote = event.original
        if len(quote) < 8:
            self.counters.inc("tcp__icmp_short_quote__drop")
            return
        # The quote starts with our header: source port, destination port, sequence number.
        local_port = int.from_bytes(quote[0:2], "big")
        remote_port = int.from_bytes(quote[2:4], "big")
        conn = self._connections.get((event.dst_ip, remote_port, local_port))
        if conn is None:
            self.counters.inc("tcp__icmp_no_socket_match__drop")
            return
        conn.on_icmp_error(event.kind, int.from_bytes(quote[4:8], "big"), event.next_hop_mtu, now)
        self._apply(conn)

    def _reset_unmatched(self, src_ip: bytes, seg: Segment) -> None:
        # RFC 9293 3.10.7.1, CLOSED: an RST is dropped; anything else gets an RST that the
        # sender will find acceptable (its ACK as our SEQ, or an ACK of everything it sent).
        if seg.flags & RST:
            self.counters.inc("tcp__no_socket_match__rst_drop")
            return
        self.counters.inc("tcp__no_socket_match__respond_rst")
        if seg.flags & ACK:
            reply = Segment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            reply = Segment(
                seg.dst_port, seg.src_port, 0, (seg.seq + seg.length) & MASK, RST | ACK, 0
            )
        self.emit_to(src_ip, reply)

    # ----------------------------------------------------------------- effects

    def _apply(self, conn: Connection) -> None:
        """Carry out what the last call on conn left in its effects record, and clear it.

        The record is shared by every connection (memory: none per connection), so this runs
        right after each call, before the next. send_ip must not call back into the layer
        (Interface.send_ip only queues frames; ARP's failures come later, from its timers)."""
        fx = conn.effects
        if fx.counts:
            inc = self.counters.inc
            for key in fx.counts:
                inc(key)
            fx.counts.clear()
        segments = fx.segments
        if segments:
            remote_ip = conn.remote_ip
            send_ip = self._send_ip
            self.counters.inc("tcp__segment_out", len(segments))
            for segment in segments:
                try:
                    send_ip(PROTOCOL, remote_ip, segment)
                except NetError as error:
                    self._send_failed(error)
            segments.clear()
        if fx.ready:
            fx.ready = False
            self._ready[conn] = None
        if fx.starved:
            fx.starved = False
            self._starved[conn] = None
        if fx.established:
            fx.established = False
            listener = self._listeners.get(conn.local_port)
            if listener is not None:
                listener.established(conn)
                self._apply_listener(listener)
        if fx.closed:
            fx.closed = False
            self.forget(conn)
            self._time_wait.pop(conn, None)
            if not conn.active:
                listener = self._listeners.get(conn.local_port)
                if listener is not None:
                    listener.forget(conn)
        if fx.rearmed:
            fx.rearmed = False
            deadline = fx.deadline
            if deadline is not None and (conn._scheduled is None or deadline < conn._scheduled):
                conn._scheduled = deadline
                self._heap_count += 1
                heapq.heappush(self._heap, (deadline, self._heap_count, conn))
        if conn.state == st.TIME_WAIT and conn not in self._time_wait:
            self._time_wait[conn] = None
            if len(self._time_wait) > self.config.max_time_wait:
                oldest = next(iter(self._time_wait))
                del self._time_wait[oldest]
                self.counters.inc("tcp__time_wait_full__drop")
                oldest.abort()  # nothing sent from TIME_WAIT: the 4-tuple is just free
                self._apply(oldest)
                oldest._scheduled = None  # its 2*MSL entry in the heap is stale now
                self._compact_heap()

    def _compact_heap(self) -> None:
        """Drop stale timer entries once they are most of the heap: each holds its
        connection until its deadline, and a dropped TIME_WAIT's is 2*MSL away."""
        heap = self._heap
        if len(heap) > 2 * len(self._connections) + 64:
            heap[:] = [entry for entry in heap if entry[2]._scheduled == entry[0]]  # in place:
            heapq.heapify(heap)  # timers() may be looping over it

    def _apply_listener(self, listener: Listener) -> None:
        fx = listener.effects
        if fx.counts:
            inc = self.counters.inc
            for key in fx.counts:
                inc(key)
            fx.counts.clear()
        if fx.replies:
            for remote_ip, seg in fx.replies:
                self.emit_to(remote_ip, seg)
            fx.replies.clear()
        if fx.ready:
            fx.ready = False
            self._ready[listener] = None

    def now(self) -> float:
        return self._clock() if self._clock is not None else self._now

    def emit_to(self, remote_ip: bytes, seg: Segment) -> None:
        self.counters.inc("tcp__segment_out")
        try:
            payload = seg.encode(self.local_ip, remote_ip, self.config.checksum_offload)
            self._send_ip(PROTOCOL, remote_ip, payload)
        except NetError as error:
            self._send_failed(error)

    def _send_failed(self, error: NetError) -> None:
        # No route (yet): the segment is lost like any other, and retransmission or the
        # connection's own timeout deals with it; the app must not see IPv4's exceptions.
        self.counters.inc(f"tcp__send_failed_{type(error).__name__.lower()}__drop")

    def register(self, conn: Connection) -> None:
        self._connections[(conn.remote_ip, conn.remote_port, conn.local_port)] = conn

    def forget(self, conn: Connection) -> None:
        key = (conn.remote_ip, conn.remote_port, conn.local_port)
        if self._connections.get(key) is conn:
            del self._connections[key]
        self._starved.pop(conn, None)
        self._send_waiting.pop(conn, None)

    def new_iss(self) -> int:
        return new_iss(self.random_bytes)

    def _ephemeral_port(self, remote_ip: bytes, remote_port: int) -> int:
        first, last = self.config.ephemeral_ports
        size = last - first + 1
        start = int.from_bytes(self.random_bytes(2), "big") % size
        for i in range(size):
            port = first + (start + i) % size
            if (remote_ip, remote_port, port) not in self._connections and (
                port not in self._listeners
            ):
                return port
        raise ValueError("tcp: no free ephemeral port")
