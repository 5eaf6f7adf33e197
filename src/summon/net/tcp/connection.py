"""One TCP connection (a TCB): RFC 9293's segment processing, sending, and timers, sans-IO.

The connection does no I/O and knows nothing of its layer. Segments reach it through
`on_segment` (the layer demultiplexed them), time through `on_timer`, the app through
`send`/`close`/`abort`/`next_event`; each call leaves what must happen outside it (segments to
send, counters, "the app has news", the next deadline, "forget me") in `conn.effects`, which
the caller drains (TCP in layer.py does, after every call). The job is split in modules:

    tcb.py           the variables, state moves, the way into CLOSED
    send_path.py     segments out, retransmission, timers
    receive_path.py  arriving segments (RFC 9293 3.10.7, RFC 5961)
    connection.py    the app's side, opening, ICMP errors (this module)

Every state change goes through `_move`, which looks the step up in state.TRANSITIONS.
"""

from __future__ import annotations

from summon.net.tcp import state as st
from summon.net.tcp.events import (
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    EndOfStream,
    Event,
)
from summon.net.tcp.receive_path import Receiver
from summon.net.tcp.segment import Segment
from summon.net.tcp.seq import MASK, seq_le, seq_lt
from summon.net.tcp.tcb import DEFAULT_MSS, ConnectionStateError
from summon.net.tcp.window import scale_for
from summon.net.tcp.wire import ACK, RST

__all__ = ["DEFAULT_MSS", "Connection", "ConnectionStateError"]


class Connection(Receiver):
    """A TCP connection. Made by `TCP.connect` or handed out by `Listener.accept`."""

    __slots__ = ()

    def __repr__(self) -> str:
        ip = ".".join(str(b) for b in self.remote_ip)
        return f"<Connection :{self.local_port} -> {ip}:{self.remote_port} {self.state}>"

    # ----------------------------------------------------------------- the app's side

    @property
    def send_space(self) -> int:
        """Bytes send() would take now."""
        if self._fin_queued or self.state not in st.SENDING:
            return 0
        return self.sndbuf.space

    @property
    def readable(self) -> int:
        """In-order bytes waiting to be read through next_event()."""
        return len(self.rcvbuf.readable)

    def send(self, data: bytes, now: float) -> int:
        """Queue data to send; returns how many bytes fit in the send buffer (maybe 0).

        Raises ConnectionStateError after close(), abort(), or once the connection is gone.
        """
        if self._fin_queued or self.state not in st.SENDING:
            raise ConnectionStateError(f"tcp: send() in state {self.state} after close")
        n = self.sndbuf.write(data)
        if n and self._syn_acked():
            self._output(now)
            self._rearm(now)
        return n

    def close(self, now: float) -> None:
        """No more data from us: a FIN follows what is queued. Reading goes on until the peer's
        FIN (EndOfStream). Calling it again, or after the connection is gone, does nothing."""
        if self.state == st.SYN_SENT:
            self._finish(st.CLOSE, "closed")
        elif self.state in (st.SYN_RECEIVED, st.ESTABLISHED, st.CLOSE_WAIT):
            self._fin_queued = True
            self._move(st.CLOSE)
            if self._syn_acked():  # else the FIN follows the ACK of our SYN
                self._output(now)
        self._rearm(now)

    def orphan(self, now: float) -> None:
        """The app is gone (it closed, and will read nothing more): once our FIN is ACKed,
        the peer's FIN has config.fin_timeout to come, as Linux's orphans have."""
        self.orphaned = True
        if self.state == st.FIN_WAIT_2 and self.timers.time_wait is None:
            self.timers.time_wait = now + self.config.fin_timeout
        self._rearm(now)

    def abort(self) -> None:
        """Drop the connection at once: RST to the peer, queued data discarded."""
        if self.state == st.CLOSED:
            return
        if self.state != st.TIME_WAIT and self.state != st.SYN_SENT:
            self._send_segment(RST | ACK, self.snd_max)
            self._count("tcp__abort__send_rst")
        self._finish(st.ABORT, "aborted")

    def reopen_window(self) -> bool:
        """The receive budget has room again (an app read another connection): if this one
        shut its window for want of it, tell the peer it is open (else the peer would wait
        for its next zero-window probe, up to minutes away). True if an update went out."""
        sent = len(self.effects.segments)
        self._window_update()
        return len(self.effects.segments) > sent

    def next_event(self, max_bytes: int = 65536) -> Event | None:
        """The next thing the app should know, or None. Data stays in the receive buffer (and
        keeps the window shut) until taken here: not calling this is how the app pushes back."""
        if self._established_pending:
            self._established_pending = False
            return ConnectionEstablished()
        if self.rcvbuf.readable:
            data = self.rcvbuf.take(max_bytes)
            self._window_update()
            return DataReceived(data)
        if self._eof_pending:
            self._eof_pending = False
            return EndOfStream()
        if self._closed_reason is not None and not self._closed_reported:
            self._closed_reported = True
            return ConnectionClosed(self._closed_reason)
        return None

    # ----------------------------------------------------------------- opening

    def open_active(self, now: float) -> None:
        """connect(): send our SYN."""
        self._move(st.OPEN_ACTIVE)
        self.rcv_shift = scale_for(self.config.receive_buffer) if self.wscale_offered else 0
        self._send_syn(now)
        self.snd_nxt = self.snd_max = (self.snd_una + 1) & MASK
        self._rearm(now)

    def open_passive(self, syn: Segment, now: float) -> None:
        """A listener's SYN: answer SYN,ACK (the caller checked the backlog)."""
        self._move(st.OPEN_PASSIVE)  # a TCB spawned by a listener starts as a copy of it
        self._move(st.RCV_SYN)
        self._take_syn(syn)
        self._send_syn(now)
        self.snd_nxt = self.snd_max = (self.snd_una + 1) & MASK
        self._rearm(now)

    def open_from_cookie(self, ack_seg: Segment, mss: int, now: float) -> None:
        """A listener's valid SYN cookie: the handshake is done, and nothing was kept for it.

        The cookie keeps only the MSS, so window scaling is off (both sides agreed to that when
        our SYN,ACK carried no wscale option)."""
        self._move(st.OPEN_PASSIVE)
        self._move(st.RCV_SYN)
        self.irs = (ack_seg.seq - 1) & MASK
        self.rcv_nxt = ack_seg.seq
        self.rcv_adv = (self.rcv_nxt + min(self.rcvbuf.free, 0xFFFF)) & MASK  # as the cookie said
        self.mss = max(min(mss, self.config.mss), self.config.min_mss)
        self.snd_nxt = self.snd_max = (self.snd_una + 1) & MASK
        self.on_segment(ack_seg, now)

    # ----------------------------------------------------------------- ICMP

    def on_icmp_error(self, kind: str, seq: int, next_hop_mtu: int, now: float) -> None:
        """An ICMP error quoting one of our segments (the layer matched the 4-tuple)."""
        # RFC 5927 section 4.1: believe it only if it quotes a sequence number in flight,
        # which a blind attacker has to guess just like for an RST.
        if not (seq_le(self.snd_una, seq) and seq_lt(seq, self.snd_max)):
            self._count("tcp__icmp_seq_not_in_flight__drop")
            return
        if kind == "fragmentation_needed":
            mss = max(next_hop_mtu - 40, self.config.min_mss) if next_hop_mtu else 0
            if mss and mss < self.mss:
                self._count("tcp__icmp_fragmentation_needed__lower_mss")
                self.mss = self.cc.mss = mss
                if self._syn_acked():  # what was in flight was too big: send it again, smaller
                    self.snd_nxt = self.snd_una
                    self._output(now)
        elif self.state == st.SYN_SENT and kind in ("port_unreachable", "protocol_unreachable"):
            # RFC 1122 4.2.3.9: hard errors while connecting; later they are soft (RFC 5461).
            self._count("tcp__icmp_unreachable__abort")
            self._finish(st.RCV_ICMP_UNREACHABLE, "unreachable")
        else:
            self._count("tcp__icmp_soft_error__ignore")
        self._rearm(now)

    def reincarnate(self) -> None:
        """TIME_WAIT gives way to a new SYN for the same 4-tuple (the layer checked it)."""
        self._finish(st.RCV_NEW_SYN, "closed")
