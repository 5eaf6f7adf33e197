"""A connection's way out: segments built and sent, retransmission, and the timers.

What goes out is left in the effects record (`effects.segments`, encoded and checksummed for
the connection's address pair, ready for IPv4), never sent from here; the timers' deadlines
are recomputed by `_rearm` at the end of every call that may move them and left in
`effects.deadline`. A data segment is encoded straight from the send buffer (one copy of
its payload, into the segment's bytes), so nothing but the wire bytes is kept per segment
until the driver drains the record.
"""

from __future__ import annotations

from summon.net.tcp import state as st
from summon.net.tcp.seq import MASK, seq_diff, seq_gt, seq_le, seq_lt
from summon.net.tcp.tcb import TCB
from summon.net.tcp.timers import persist_interval
from summon.net.tcp.window import advertise
from summon.net.tcp.wire import ACK, FIN, PSH, RST, SYN, encode, encode_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.tcp.effects import Effects


class Sender(TCB):
    """Sending, retransmitting and the timers of one connection."""

    __slots__ = ()

    # ----------------------------------------------------------------- sending

    def _send_segment(self, flags: int, seq: int, n: int = 0, *, ack: bool = True) -> None:
        """Emit one segment carrying the n bytes of the send buffer from seq on; every segment
        but a bare SYN or RST carries our ACK and window."""
        rcvbuf = self.rcvbuf
        free = rcvbuf.free
        field, self.rcv_adv = advertise(
            free, self.rcv_nxt, self.rcv_adv, self.rcv_shift, self.mss, rcvbuf.capacity
        )
        if not field and free < rcvbuf.capacity - len(rcvbuf.readable):
            self.effects.starved = True  # the budget, not our buffer, shut the window
        if ack:
            self._ack_pending = 0
            self.timers.delayed_ack = None
            flags |= ACK
            ack_no = self.rcv_nxt
        else:
            ack_no = field = 0
        if n:
            buf = self.sndbuf
            offset = (seq - buf.start) & MASK
            # A view, not a copy: encode() copies it once, into the segment; the slice is
            # gone when it returns, so the buffer can grow and shrink again after.
            with memoryview(buf.data) as view:
                segment = self._encode(flags, seq, ack_no, field, b"", view[offset : offset + n])
        else:
            segment = self._encode(flags, seq, ack_no, field, b"", b"")
        self.effects.segments.append(segment)

    def _encode(
        self,
        flags: int,
        seq: int,
        ack: int,
        window: int,
        options: bytes,
        payload: bytes | memoryview,
    ) -> bytes:
        return encode(
            self.local_ip,
            self.remote_ip,
            self.local_port,
            self.remote_port,
            seq,
            ack,
            flags,
            window,
            options,
            payload,
            0,
            self.config.checksum_offload,
        )

    def _send_ack(self) -> None:
        # SEQ = the highest sequence sent, not SND.NXT: after a timeout SND.NXT goes back, and
        # an ACK numbered below the peer's RCV.NXT fails its acceptability test and is dropped,
        # so both sides could sit retransmitting with each other's ACKs thrown away (as in BSD).
        self._send_segment(ACK, self.snd_max)

    def _send_syn(self, now: float) -> None:
        """Our SYN (active open) or SYN,ACK (passive or simultaneous open), with options."""
        synack = self.state != st.SYN_SENT  # also FIN_WAIT_1 after close() in SYN_RECEIVED
        window = min(self.rcvbuf.free, 0xFFFF)  # never scaled in a SYN (RFC 7323 section 2.2)
        options = encode_options(
            self.config.mss, self.rcv_shift if self.wscale_offered else None, False, None
        )
        if synack:
            segment = self._encode(SYN | ACK, self.iss, self.rcv_nxt, window, options, b"")
        else:
            segment = self._encode(SYN, self.iss, 0, window, options, b"")
        if synack:
            self.rcv_adv = (self.rcv_nxt + window) & MASK
        if self._rtt_seq is None and not self._syn_retransmitted:
            self._rtt_seq = self.sndbuf.start
            self._rtt_time = now
        self.effects.segments.append(segment)

    def _output(self, now: float, extra: int = 0) -> bool:
        """Send what the windows allow: new data, a retransmission after snd_nxt went back,
        and the FIN; `extra` bytes beyond cwnd for limited transmit. Returns whether anything
        went out."""
        buf = self.sndbuf
        end = buf.end
        window = min(self.snd_wnd, self.cc.cwnd + extra)
        mss = self.mss
        sent = False
        while True:
            nxt = self.snd_nxt
            avail = (end - nxt) & MASK if seq_lt(nxt, end) else 0
            usable = seq_diff((self.snd_una + window) & MASK, nxt)
            n = max(0, min(avail, usable, mss))
            fin = self._fin_queued and n == avail and seq_le(nxt, end)
            if n == 0 and not fin:
                break
            if n < mss and n < avail:
                # Sender silly-window avoidance (RFC 9293 3.8.6.2.1): a window-limited runt
                # goes only if it is half the largest window seen, or nothing is in flight.
                if n < self.max_snd_wnd // 2 and nxt != self.snd_una:
                    break
            elif n < mss and not fin and not self.config.nodelay and nxt != self.snd_una:
                break  # Nagle: one small segment in flight at a time
            flags = (PSH if n and n == avail else 0) | (FIN if fin else 0)
            self._send_segment(flags, nxt, n)
            new_nxt = (nxt + n + (1 if fin else 0)) & MASK
            if seq_lt(nxt, self.snd_max):
                self.effects.counts.append("tcp__retransmit")
                self._rtt_seq = None
            elif self._rtt_seq is None:
                self._rtt_seq = new_nxt
                self._rtt_time = now
            self.snd_nxt = new_nxt
            if seq_gt(new_nxt, self.snd_max):
                self.snd_max = new_nxt
            sent = True
            if fin:
                break
        return sent

    def _retransmit_first(self, now: float) -> None:
        """Resend the first unacknowledged segment (fast retransmit, partial ACK, RTO)."""
        una = self.snd_una
        end = self.sndbuf.end
        avail = (end - una) & MASK if seq_lt(una, end) else 0
        n = min(avail, self.mss)
        fin = self._fin_queued and n == avail and seq_gt(self.snd_max, end)
        if n == 0 and not fin:
            return
        self._send_segment(FIN if fin else 0, una, n)
        self._count("tcp__retransmit")
        self._rtt_seq = None  # Karn: never time a retransmitted segment

    def _window_update(self) -> None:
        """After the app read: if the peer may be stalled on a small window, tell it at once."""
        if self.state not in st.RECEIVING:
            return
        free = self.rcvbuf.free
        promised = (self.rcv_adv - self.rcv_nxt) & MASK
        threshold = min(self.rcvbuf.capacity // 2, 2 * self.mss)
        if promised < threshold <= free - promised:
            self._count("tcp__window_update")
            self._send_ack()

    # ----------------------------------------------------------------- time

    def on_timer(self, now: float) -> Effects:
        """Run the timers whose deadline passed."""
        for name in self.timers.due(now):
            if self.state == st.CLOSED:
                break
            if name == "retransmit":
                self._on_retransmit_timeout(now)
            elif name == "persist":
                self._on_persist(now)
            elif name == "delayed_ack":
                if self._ack_pending:
                    self._count("tcp__delayed_ack")
                    self._send_ack()
            elif name == "time_wait":  # 2*MSL in TIME_WAIT; fin_timeout for an orphan
                if self.state == st.FIN_WAIT_2:
                    self._count("tcp__fin_timeout__close")
                    self._finish(st.FIN_TIMEOUT, "closed")
                else:
                    self._finish(st.TIMEOUT_2MSL, "closed")
        self._rearm(now)
        return self.effects

    def next_deadline(self) -> float | None:
        return self.timers.next()

    def _on_retransmit_timeout(self, now: float) -> None:
        self._retries += 1
        synced = self._syn_acked()
        if not synced:
            limit = (
                self.config.syn_retries if self.state == st.SYN_SENT else self.config.synack_retries
            )
        else:
            limit = self.config.max_retries
        if self._retries > limit:
            self._give_up()
            return
        first = self.rto.backoff == 0
        self.rto.expired()
        self._rtt_seq = None
        self._count("tcp__retransmit__timeout")
        if not synced:
            self._syn_retransmitted = True
            self._count("tcp__retransmit")
            self._send_syn(now)
        else:
            flight = (self.snd_max - self.snd_una) & MASK
            self.cc.on_timeout(flight, self.snd_max, first)
            self.snd_nxt = self.snd_una  # go back: slow start resends from the first hole
            if not self._output(now):
                self._retransmit_first(now)
        self.timers.retransmit = now + self.rto.rto

    def _on_persist(self, now: float) -> None:
        """Zero-window probe: one byte past the closed window, so the peer's ACK tells us when
        it opens (RFC 9293 section 3.8.6.1)."""
        una = self.snd_una
        if self.snd_wnd != 0 or not seq_lt(una, self.sndbuf.end):
            return
        self._probes_unanswered += 1
        if self._probes_unanswered > self.config.max_retries:
            self._give_up()
            return
        self._count("tcp__window_probe")
        self._send_segment(0, una, 1)
        probe_end = (una + 1) & MASK
        if seq_gt(probe_end, self.snd_max):
            self.snd_max = probe_end
        self._probe_backoff += 1
        self.timers.persist = now + persist_interval(
            self.rto.rto, self._probe_backoff, self.config.max_rto
        )

    def _rearm(self, now: float) -> None:
        """Make the retransmit and persist timers agree with the send state, then leave the
        next deadline in the effects."""
        t = self.timers
        if self.state in (st.CLOSED, st.TIME_WAIT):
            t.retransmit = t.persist = None
        elif not self._syn_acked():
            if t.retransmit is None:
                t.retransmit = now + self.rto.rto
        else:
            data_left = seq_lt(self.snd_una, self.sndbuf.end)
            if self.snd_wnd == 0 and data_left:
                # Persist mode: the retransmit timer would count a full peer as a dead one.
                t.retransmit = None
                self.snd_nxt = self.snd_una
                if t.persist is None:
                    t.persist = now + persist_interval(
                        self.rto.rto, self._probe_backoff, self.config.max_rto
                    )
            else:
                t.persist = None
                self._probe_backoff = 0
                if self.snd_una != self.snd_max:
                    if t.retransmit is None:
                        t.retransmit = now + self.rto.rto
                else:
                    t.retransmit = None
        fx = self.effects
        fx.rearmed = True
        fx.deadline = t.next()

    def _give_up(self) -> None:
        self._count("tcp__give_up")
        # Not for a half-open connection: under a spoofed SYN flood that RST would go to
        # whoever owns the forged address (backscatter).
        if self.state in st.SYNCHRONIZED:
            self._send_segment(RST | ACK, self.snd_max)
        self._finish(st.GIVE_UP, "timeout")
