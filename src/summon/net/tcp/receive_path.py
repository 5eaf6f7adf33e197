"""A connection's way in: RFC 9293's processing of arriving segments (section 3.10.7), with
RFC 5961's checks against blind attacks woven in, and the handshake's SYN and ACK taken.

`on_segment` is the entry; what it makes the connection send, count or report is left in the
effects record (effects.py).
"""

from __future__ import annotations

from summon.net.tcp import state as st
from summon.net.tcp.congestion import NewReno
from summon.net.tcp.segment import Segment
from summon.net.tcp.send_path import Sender
from summon.net.tcp.seq import MASK, seq_ge, seq_gt, seq_le, seq_lt
from summon.net.tcp.tcb import DEFAULT_MSS
from summon.net.tcp.window import acceptable, ack_in_range, rst_action, scale_for
from summon.net.tcp.wire import ACK, FIN, RST, SYN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.tcp.effects import Effects


class Receiver(Sender):
    """Segment processing of one connection."""

    __slots__ = ()

    # ----------------------------------------------------------------- the handshake

    def _take_syn(self, syn: Segment) -> None:
        """The peer's SYN: its ISN, MSS (clamped) and window scale."""
        self.irs = syn.seq
        self.rcv_nxt = (syn.seq + 1) & MASK
        peer_mss = syn.mss if syn.mss else DEFAULT_MSS
        self.mss = max(min(peer_mss, self.config.mss), self.config.min_mss)
        if syn.wscale is not None and self.wscale_offered:
            self.snd_shift = syn.wscale
            self.rcv_shift = scale_for(self.config.receive_buffer)
        else:  # RFC 7323: scaling only when both SYNs carry the option
            self.snd_shift = self.rcv_shift = 0
            self.wscale_offered = False
        # The window in a SYN is never scaled.
        self.snd_wnd = syn.window
        self.snd_wl1 = syn.seq
        self.max_snd_wnd = syn.window

    def _synchronize(self, seg: Segment, now: float, scaled: bool) -> None:
        """Our SYN is acknowledged: the send side starts."""
        self.snd_una = seg.ack
        if seq_lt(self.snd_nxt, self.snd_una):
            self.snd_nxt = self.snd_una
        self.snd_wnd = seg.window << self.snd_shift if scaled else seg.window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.cc = NewReno(self.mss, self.iss)
        if self._syn_retransmitted:
            self.rto.reset_after_syn_loss()  # RFC 6298 (5.7); Karn: no sample from a resent SYN
        elif self._rtt_seq is not None:
            self.rto.sample(now - self._rtt_time)
        self._rtt_seq = None
        self._retries = 0
        self.timers.retransmit = None
        self._established_pending = True
        self.effects.ready = True

    # ----------------------------------------------------------------- arriving segments

    def on_segment(self, seg: Segment, now: float) -> Effects:
        """A segment for this connection's 4-tuple (checksummed and sane)."""
        self._ack_now = False
        if self.state == st.SYN_SENT:
            self._on_syn_sent(seg, now)
        elif self.state != st.CLOSED:
            self._on_segment(seg, now)
        if self.state != st.CLOSED:
            sent = self._output(now) if self._syn_acked() else False
            if self._ack_now and not sent:
                self._send_ack()
        self._rearm(now)
        return self.effects

    def _on_syn_sent(self, seg: Segment, now: float) -> None:
        # RFC 9293 section 3.10.7.3.
        flags = seg.flags
        syn_end = (self.snd_una + 1) & MASK
        if flags & ACK and seg.ack != syn_end:
            if not flags & RST:
                self._send_segment(RST, seg.ack, ack=False)
                self._count("tcp__bad_ack_in_syn_sent__respond_rst")
            else:
                self._count("tcp__bad_ack_in_syn_sent__drop")
            return
        if flags & RST:
            if flags & ACK:
                self._count("tcp__rst__refused")
                self._finish(st.RCV_RST, "refused")
            else:  # RFC 5961 section 3.2: an RST without an acceptable ACK is ignored
                self._count("tcp__rst_in_syn_sent__drop")
            return
        if not flags & SYN:
            self._count("tcp__no_syn_in_syn_sent__drop")
            return
        self._take_syn(seg)
        if flags & ACK:
            self._synchronize(seg, now, scaled=False)
            self._move(st.RCV_SYN_ACK)
            self._ack_now = True
            if seg.payload or flags & FIN:
                self._receive_text(self.rcv_nxt, seg.payload, bool(flags & FIN), now)
        else:
            # Simultaneous open: both SYNs crossed. Our SYN,ACK reuses our ISN.
            self._move(st.RCV_SYN)
            self._send_syn(now)

    def _on_segment(self, seg: Segment, now: float) -> None:
        # RFC 9293 section 3.10.7.4, with RFC 5961's checks woven in.
        flags = seg.flags
        state = self.state
        if state == st.TIME_WAIT:
            if flags & RST and self.config.time_wait_ignores_rst:
                # RFC 1337's remedy for TIME_WAIT assassination. Off by default, as in Linux:
                # an exact RST is how a client whose new SYN drew our ACK clears the way.
                self._count("tcp__rst_in_time_wait__drop")
                return
            if flags & FIN and not flags & SYN and (seg.seq + seg.length) & MASK == self.rcv_nxt:
                self._move(st.RCV_FIN)  # the peer lost our ACK of its FIN
                self.timers.time_wait = now + 2 * self.config.msl
                self._ack_now = True
                return
        if flags & SYN:
            if state == st.SYN_RECEIVED and seg.seq == self.irs:
                if not flags & ACK:
                    self._count("tcp__duplicate_syn__resend_synack")
                    self._send_syn(now)
                    return
                # Simultaneous open: the peer's SYN,ACK. Its SYN we have; take its ACK.
                seg = Segment(
                    seg.src_port,
                    seg.dst_port,
                    (seg.seq + 1) & MASK,
                    seg.ack,
                    flags & ~SYN,
                    seg.window,
                    seg.payload,
                )
                flags = seg.flags
                self._ack_now = True
            else:
                # RFC 5961 section 4: a SYN in a synchronized state, whatever its sequence
                # number, gets a challenge ACK; a real peer that restarted answers it with an RST
                # at exactly RCV.NXT, a blind attacker cannot.
                self._challenge_ack(now, "syn_in_synchronized")
                return
        # First: is any of it in the window? The window is the one we advertised, not our free
        # space: that is what the peer knows, and a wider one only helps blind attackers.
        rcv_wnd = (self.rcv_adv - self.rcv_nxt) & MASK if seq_ge(self.rcv_adv, self.rcv_nxt) else 0
        if not acceptable(seg.seq, seg.length, self.rcv_nxt, rcv_wnd):
            if flags & RST:
                self._count("tcp__rst_out_of_window__drop")
            elif (
                not seg.payload
                and not flags & FIN
                and now - self._oow_ack_at < self.config.invalid_ack_interval
            ):
                # A pure ACK answered moments ago: an ACK loop, or someone feeding one.
                self._count("tcp__out_of_window__rate_limited")
            else:
                if not seg.payload and not flags & FIN:
                    self._oow_ack_at = now
                self._count("tcp__out_of_window__ack")
                self._ack_now = True
            return
        # Second: RST. Only an exact match resets (RFC 5961 section 3.2).
        if flags & RST:
            action = rst_action(seg.seq, self.rcv_nxt, rcv_wnd)
            if action == "reset":
                self._count("tcp__rst__reset")
                reason = "refused" if state == st.SYN_RECEIVED and self.active else "reset"
                self._finish(st.RCV_RST, reason)
            elif action == "challenge":
                self._challenge_ack(now, "rst_not_exact")
            else:
                self._count("tcp__rst_out_of_window__drop")
            return
        # Fifth: ACK. A segment without one is dropped (RFC 9293).
        if not flags & ACK:
            self._count("tcp__no_ack__drop")
            return
        if not self._syn_acked():
            if seg.ack != self.sndbuf.start:
                # RFC 9293: an unacceptable ACK in SYN-RECEIVED gets <SEQ=SEG.ACK><CTL=RST>.
                self._send_segment(RST, seg.ack, ack=False)
                self._count("tcp__bad_ack_in_syn_received__respond_rst")
                return
            if self.can_accept is not None and not self.can_accept():
                # Linux's choice: keep the half-open entry; our SYN,ACK resend retries later.
                self._count("tcp__accept_queue_full__drop")
                return
            self._synchronize(seg, now, scaled=True)
            if state == st.SYN_RECEIVED:
                self._move(st.RCV_ACK_OF_SYN)
                if not self.active:
                    self.effects.established = True
        elif not self._process_ack(seg, now):
            return
        if self.state == st.CLOSED:
            return
        # Seventh and eighth: data and FIN.
        if seg.payload or flags & FIN:
            self._receive_text(seg.seq, seg.payload, bool(flags & FIN), now)

    def _process_ack(self, seg: Segment, now: float) -> bool:
        """RFC 9293's ACK processing for synchronized states; False means drop the segment."""
        ack = seg.ack
        if not ack_in_range(ack, self.snd_una, self.snd_max, self.max_snd_wnd):
            # RFC 5961 section 5.2: stops blind data injection, which must now guess the ACK too.
            self._challenge_ack(now, "ack_out_of_range")
            return False
        window = seg.window << self.snd_shift
        fin_seq = self.sndbuf.end
        fin_acked = False
        if seq_gt(ack, self.snd_una):
            acked = (ack - self.snd_una) & MASK
            fin_acked = self._fin_queued and ack == (fin_seq + 1) & MASK
            freed = self.sndbuf.acknowledge(ack)
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            if self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
                self.rto.sample(now - self._rtt_time)
                self._rtt_seq = None
            self._retries = 0
            self._probes_unanswered = 0
            self.timers.retransmit = None  # RFC 6298 (5.3): restart on new data acknowledged
            if self.cc.on_ack(acked, ack, (self.snd_max - ack) & MASK):
                self._count("tcp__retransmit__partial_ack")
                self._retransmit_first(now)
            if freed:
                self.effects.ready = True
        elif (
            ack == self.snd_una
            and not seg.payload
            and not seg.flags & (SYN | FIN)
            and window == self.snd_wnd
            and window  # zero-window probe answers are not loss signals
            and self.snd_una != self.snd_max
        ):
            # A duplicate ACK, by RFC 5681's definition.
            self._count("tcp__dup_ack")
            flight = (self.snd_max - self.snd_una) & MASK
            if self.cc.on_dup_ack(self.snd_una, self.snd_max, flight):
                self._count("tcp__retransmit__fast")
                self._retransmit_first(now)
            elif not self.cc.in_recovery and self.cc.dupacks < self.cc.DUPACK_THRESHOLD:
                # Limited transmit (RFC 3042): a new segment per early duplicate ACK keeps
                # the ACK clock going, so small windows reach three duplicates, not a timeout.
                if self._output(now, self.cc.dupacks * self.mss):
                    self._count("tcp__limited_transmit")
        if ack == self.snd_una and self.snd_wnd == 0 and window == 0:
            self._probes_unanswered = 0  # the peer is alive, just full
        # Window update, only from segments newer than the last one that set it (SND.WL1/2).
        if seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack)):
            self.snd_wnd = window
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
        if fin_acked:
            if self.state == st.FIN_WAIT_1:
                self._move(st.RCV_ACK_OF_FIN)
                if self.orphaned:
                    self.timers.time_wait = now + self.config.fin_timeout
            elif self.state == st.CLOSING:
                self._enter_time_wait(now)
            elif self.state == st.LAST_ACK:
                self._finish(st.RCV_ACK_OF_FIN, "closed")
                return False
        return True

    def _receive_text(self, seq: int, payload: bytes, fin: bool, now: float) -> None:
        """Data and FIN of an acceptable segment (RFC 9293's seventh and eighth steps)."""
        if self.state not in st.RECEIVING:
            return  # after the peer's FIN, nothing more can be data
        end = (seq + len(payload)) & MASK
        if payload:
            rcv_nxt = self.rcv_nxt
            if seq_lt(seq, rcv_nxt):  # trim what we already have
                skip = (rcv_nxt - seq) & MASK
                payload = payload[skip:]
                seq = rcv_nxt
            rcvbuf = self.rcvbuf
            offset = (seq - rcv_nxt) & MASK
            room = rcvbuf.free - offset
            if len(payload) > room:  # trim what lies past the window, and the FIN with it
                if room < rcvbuf.capacity - len(rcvbuf.readable) - offset:
                    # The stack-wide budget (config.receive_memory) is short, not our buffer.
                    self._count("tcp__receive_memory__trim")
                payload = payload[: max(room, 0)]
                fin = False
            if payload:
                self.rcv_nxt, what = self.rcvbuf.add(seq, payload, rcv_nxt)
                if what == "in_order":
                    self.effects.ready = True
                    self._ack_pending += 1
                    if self._ack_pending >= 2:  # RFC 5681 section 4.2: every second segment
                        self._ack_now = True
                    elif self.timers.delayed_ack is None:
                        self.timers.delayed_ack = now + self.config.delayed_ack
                elif what == "filled":  # a hole closed: tell the sender at once (RFC 5681 4.2)
                    self.effects.ready = True
                    self._ack_now = True
                elif what == "queued":  # out of order: an immediate duplicate ACK (RFC 5681 4.2)
                    self._count("tcp__out_of_order__queued")
                    self._ack_now = True
                else:  # too many holes, or config.out_of_order_memory is spent
                    if what == "dropped":
                        self._count("tcp__out_of_order__drop")
                    else:
                        self._count("tcp__out_of_order_memory__drop")
                    self._ack_now = True
            else:
                self._ack_now = True
        if fin:
            if end == self.rcv_nxt:
                self._receive_fin(now)
            elif seq_gt(end, self.rcv_nxt):
                self.rcv_fin_seq = end  # ahead of a hole; taken when the hole fills
        if self.rcv_fin_seq is not None and self.rcv_fin_seq == self.rcv_nxt:
            self._receive_fin(now)

    def _receive_fin(self, now: float) -> None:
        self.rcv_fin_seq = None
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self._ack_now = True
        self._eof_pending = True
        self.effects.ready = True
        if self.state == st.FIN_WAIT_2:
            self._enter_time_wait(now, st.RCV_FIN)
        else:
            self._move(st.RCV_FIN)

    def _enter_time_wait(self, now: float, event: str = st.RCV_ACK_OF_FIN) -> None:
        self._move(event)
        self.timers.clear()
        self.timers.time_wait = now + 2 * self.config.msl
        # The app is done with it: TIME_WAIT is the layer's business from here on.
        self._report_closed("closed")

    def _challenge_ack(self, now: float, why: str) -> None:
        """RFC 5961's challenge ACK, throttled per connection (section 7)."""
        self._count(f"tcp__{why}__challenge_ack")
        if now - self._challenge_start >= self.config.challenge_ack_interval:
            self._challenge_start = now
            self._challenge_count = 0
        if self._challenge_count >= self.config.challenge_ack_limit:
            self._count("tcp__challenge_ack__rate_limited")
            return
        self._challenge_count += 1
        self._count("tcp__challenge_ack")
        self._send_ack()
