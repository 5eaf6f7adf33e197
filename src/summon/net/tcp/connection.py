"""One TCP connection (a TCB): RFC 9293's segment processing, sending, and timers.

The connection does no I/O. Segments reach it through `on_segment` (the layer demultiplexed
them), time through `on_timer`, and the app through `send`/`close`/`abort`/`next_event`. It hands
segments to send, timer deadlines and "something changed" marks to its layer (layer.py).

Every state change goes through `_move`, which looks the step up in state.TRANSITIONS.
"""

from __future__ import annotations

from summon.net.errors import NetError
from summon.net.tcp import state as st
from summon.net.tcp.buffers import ReceiveBuffer, SendBuffer
from summon.net.tcp.congestion import NewReno
from summon.net.tcp.events import (
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    EndOfStream,
    Event,
)
from summon.net.tcp.segment import Segment
from summon.net.tcp.seq import MASK, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from summon.net.tcp.timers import RTOEstimator, Timers, persist_interval
from summon.net.tcp.window import acceptable, ack_in_range, advertise, rst_action, scale_for
from summon.net.tcp.wire import ACK, FIN, PSH, RST, SYN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.tcp.config import TCPConfig
    from summon.net.tcp.layer import TCP
    from summon.net.tcp.listener import Listener

DEFAULT_MSS = 536  # RFC 9293 section 3.7.1: assumed when the peer sends no MSS option (IPv4)


class ConnectionStateError(NetError):
    """An app call that the connection's state does not allow (send after close, ...)."""


class Connection:
    """A TCP connection. Made by `TCP.connect` or handed out by `Listener.accept`."""

    __slots__ = (
        "_ack_now",
        "_ack_pending",
        "_challenge_count",
        "_challenge_start",
        "_closed_reason",
        "_closed_reported",
        "_eof_pending",
        "_established_pending",
        "_fin_queued",
        "_layer",
        "_probe_backoff",
        "_probes_unanswered",
        "_retries",
        "_rtt_seq",
        "_rtt_time",
        "_scheduled",
        "_syn_retransmitted",
        "active",
        "cc",
        "config",
        "irs",
        "iss",
        "listener",
        "local_port",
        "max_snd_wnd",
        "mss",
        "rcv_adv",
        "rcv_fin_seq",
        "rcv_nxt",
        "rcv_shift",
        "rcvbuf",
        "remote_ip",
        "remote_port",
        "rto",
        "snd_max",
        "snd_nxt",
        "snd_shift",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "sndbuf",
        "state",
        "timers",
        "wscale_offered",
    )

    def __init__(
        self,
        layer: TCP,
        local_port: int,
        remote_ip: bytes,
        remote_port: int,
        iss: int,
        listener: Listener | None = None,
    ) -> None:
        config: TCPConfig = layer.config
        self._layer = layer
        self.config = config
        self.state = st.CLOSED
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.listener = listener
        self.active = listener is None
        # Send sequence space (RFC 9293 section 3.3.1). snd_max is the highest sequence number
        # sent so far: after a timeout snd_nxt goes back to snd_una and climbs again.
        self.iss = iss
        self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_shift = 0
        self.mss = DEFAULT_MSS
        # Receive sequence space; rcv_adv is the right edge of the window last advertised.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_shift = 0
        self.rcv_fin_seq: int | None = None  # the peer's FIN, seen ahead of a hole
        self.wscale_offered = config.window_scale
        self.sndbuf = SendBuffer(config.send_buffer, (iss + 1) & MASK)
        self.rcvbuf = ReceiveBuffer(config.receive_buffer, config.max_ooo_runs)
        self.rto = RTOEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self.cc = NewReno(config.mss, iss)
        self.timers = Timers()
        self._fin_queued = False
        self._retries = 0
        self._probe_backoff = 0
        self._probes_unanswered = 0
        self._rtt_seq: int | None = None  # Karn: the one segment being timed, if any
        self._rtt_time = 0.0
        self._syn_retransmitted = False
        self._ack_pending = 0  # in-order segments received since our last ACK
        self._ack_now = False
        self._challenge_start = -1e300
        self._challenge_count = 0
        self._established_pending = False
        self._eof_pending = False
        self._closed_reason: str | None = None
        self._closed_reported = False
        self._scheduled: float | None = None  # the layer's timer-heap bookkeeping

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

    def send(self, data: bytes) -> int:
        """Queue data to send; returns how many bytes fit in the send buffer (maybe 0).

        Raises ConnectionStateError after close(), abort(), or once the connection is gone.
        """
        if self._fin_queued or self.state not in st.SENDING:
            raise ConnectionStateError(f"tcp: send() in state {self.state} after close")
        n = self.sndbuf.write(data)
        if n and self._syn_acked():
            now = self._layer.now()
            self._output(now)
            self._rearm(now)
        return n

    def close(self) -> None:
        """No more data from us: a FIN follows what is queued. Reading goes on until the peer's
        FIN (EndOfStream). Calling it again, or after the connection is gone, does nothing."""
        now = self._layer.now()
        if self.state == st.SYN_SENT:
            self._finish(st.CLOSE, "closed")
        elif self.state in (st.SYN_RECEIVED, st.ESTABLISHED, st.CLOSE_WAIT):
            self._fin_queued = True
            self._move(st.CLOSE)
            if self._syn_acked():  # else the FIN follows the ACK of our SYN
                self._output(now)
        self._rearm(now)

    def abort(self) -> None:
        """Drop the connection at once: RST to the peer, queued data discarded."""
        if self.state == st.CLOSED:
            return
        if self.state != st.TIME_WAIT and self.state != st.SYN_SENT:
            self._send_segment(RST | ACK, self.snd_max)
            self._layer.count("tcp__abort__send_rst")
        self._finish(st.ABORT, "aborted")

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
        self._send_syn()
        self.snd_nxt = self.snd_max = (self.snd_una + 1) & MASK
        self._rearm(now)

    def open_passive(self, syn: Segment, now: float) -> None:
        """A listener's SYN: answer SYN,ACK (the caller checked the backlog)."""
        self._move(st.OPEN_PASSIVE)  # a TCB spawned by a listener starts as a copy of it
        self._move(st.RCV_SYN)
        self._take_syn(syn)
        self._send_syn()
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

    def _syn_acked(self) -> bool:
        # Before the SYN is acked snd_una is the ISN, one before the first data byte; after,
        # never again (a sequence comparison with the ISN would break after 2**31 bytes).
        return (self.sndbuf.start - self.snd_una) & MASK != 1

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
        self._layer.mark_ready(self)

    # ----------------------------------------------------------------- arriving segments

    def on_segment(self, seg: Segment, now: float) -> None:
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

    def _on_syn_sent(self, seg: Segment, now: float) -> None:
        # RFC 9293 section 3.10.7.3.
        flags = seg.flags
        syn_end = (self.snd_una + 1) & MASK
        if flags & ACK and seg.ack != syn_end:
            if not flags & RST:
                self._send_segment(RST, seg.ack, ack=False)
                self._layer.count("tcp__bad_ack_in_syn_sent__respond_rst")
            else:
                self._layer.count("tcp__bad_ack_in_syn_sent__drop")
            return
        if flags & RST:
            if flags & ACK:
                self._layer.count("tcp__rst__refused")
                self._finish(st.RCV_RST, "refused")
            else:  # RFC 5961 section 3.2: an RST without an acceptable ACK is ignored
                self._layer.count("tcp__rst_in_syn_sent__drop")
            return
        if not flags & SYN:
            self._layer.count("tcp__no_syn_in_syn_sent__drop")
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
            self._send_syn()

    def _on_segment(self, seg: Segment, now: float) -> None:
        # RFC 9293 section 3.10.7.4, with RFC 5961's checks woven in.
        flags = seg.flags
        state = self.state
        if state == st.TIME_WAIT:
            if flags & RST and self.config.time_wait_ignores_rst:
                # RFC 1337's remedy for TIME_WAIT assassination. Off by default, as in Linux:
                # an exact RST is how a client whose new SYN drew our ACK clears the way.
                self._layer.count("tcp__rst_in_time_wait__drop")
                return
            if flags & FIN and not flags & SYN and (seg.seq + seg.length) & MASK == self.rcv_nxt:
                self._move(st.RCV_FIN)  # the peer lost our ACK of its FIN
                self.timers.time_wait = now + 2 * self.config.msl
                self._ack_now = True
                return
        if flags & SYN:
            if state == st.SYN_RECEIVED and seg.seq == self.irs:
                if not flags & ACK:
                    self._layer.count("tcp__duplicate_syn__resend_synack")
                    self._send_syn()
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
                self._layer.count("tcp__rst_out_of_window__drop")
            else:
                self._layer.count("tcp__out_of_window__ack")
                self._ack_now = True
            return
        # Second: RST. Only an exact match resets (RFC 5961 section 3.2).
        if flags & RST:
            action = rst_action(seg.seq, self.rcv_nxt, rcv_wnd)
            if action == "reset":
                self._layer.count("tcp__rst__reset")
                reason = "refused" if state == st.SYN_RECEIVED and self.active else "reset"
                self._finish(st.RCV_RST, reason)
            elif action == "challenge":
                self._challenge_ack(now, "rst_not_exact")
            else:
                self._layer.count("tcp__rst_out_of_window__drop")
            return
        # Fifth: ACK. A segment without one is dropped (RFC 9293).
        if not flags & ACK:
            self._layer.count("tcp__no_ack__drop")
            return
        if not self._syn_acked():
            if seg.ack != self.sndbuf.start:
                # RFC 9293: an unacceptable ACK in SYN-RECEIVED gets <SEQ=SEG.ACK><CTL=RST>.
                self._send_segment(RST, seg.ack, ack=False)
                self._layer.count("tcp__bad_ack_in_syn_received__respond_rst")
                return
            if self.listener is not None and not self.listener.can_accept():
                # Linux's choice: keep the half-open entry; our SYN,ACK resend retries later.
                self._layer.count("tcp__accept_queue_full__drop")
                return
            self._synchronize(seg, now, scaled=True)
            if state == st.SYN_RECEIVED:
                self._move(st.RCV_ACK_OF_SYN)
                if self.listener is not None:
                    self.listener.established(self)
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
                self._layer.count("tcp__retransmit__partial_ack")
                self._retransmit_first(now)
            if freed:
                self._layer.mark_ready(self)
        elif (
            ack == self.snd_una
            and not seg.payload
            and not seg.flags & (SYN | FIN)
            and window == self.snd_wnd
            and window  # zero-window probe answers are not loss signals
            and self.snd_una != self.snd_max
        ):
            # A duplicate ACK, by RFC 5681's definition.
            self._layer.count("tcp__dup_ack")
            flight = (self.snd_max - self.snd_una) & MASK
            if self.cc.on_dup_ack(self.snd_una, self.snd_max, flight):
                self._layer.count("tcp__retransmit__fast")
                self._retransmit_first(now)
            elif not self.cc.in_recovery and self.cc.dupacks < self.cc.DUPACK_THRESHOLD:
                # Limited transmit (RFC 3042): a new segment per early duplicate ACK keeps
                # the ACK clock going, so small windows reach three duplicates, not a timeout.
                if self._output(now, self.cc.dupacks * self.mss):
                    self._layer.count("tcp__limited_transmit")
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
            room = self.rcvbuf.free - ((seq - rcv_nxt) & MASK)
            if len(payload) > room:  # trim what lies past the window, and the FIN with it
                payload = payload[: max(room, 0)]
                fin = False
            if payload:
                self.rcv_nxt, what = self.rcvbuf.add(seq, payload, rcv_nxt)
                if what == "in_order":
                    self._layer.mark_ready(self)
                    self._ack_pending += 1
                    if self._ack_pending >= 2:  # RFC 5681 section 4.2: every second segment
                        self._ack_now = True
                    elif self.timers.delayed_ack is None:
                        self.timers.delayed_ack = now + self.config.delayed_ack
                elif what == "filled":  # a hole closed: tell the sender at once (RFC 5681 4.2)
                    self._layer.mark_ready(self)
                    self._ack_now = True
                elif what == "queued":  # out of order: an immediate duplicate ACK (RFC 5681 4.2)
                    self._layer.count("tcp__out_of_order__queued")
                    self._ack_now = True
                else:
                    self._layer.count("tcp__out_of_order__drop")
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
        self._layer.mark_ready(self)
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
        self._layer.count(f"tcp__{why}__challenge_ack")
        if now - self._challenge_start >= self.config.challenge_ack_interval:
            self._challenge_start = now
            self._challenge_count = 0
        if self._challenge_count >= self.config.challenge_ack_limit:
            self._layer.count("tcp__challenge_ack__rate_limited")
            return
        self._challenge_count += 1
        self._layer.count("tcp__challenge_ack")
        self._send_ack()

    # ----------------------------------------------------------------- sending

    def _send_segment(
        self, flags: int, seq: int, payload: bytes = b"", *, ack: bool = True
    ) -> None:
        """Emit one segment; every segment but a bare SYN or RST carries our ACK and window."""
        field, self.rcv_adv = advertise(
            self.rcvbuf.free,
            self.rcv_nxt,
            self.rcv_adv,
            self.rcv_shift,
            self.mss,
            self.rcvbuf.capacity,
        )
        seg = Segment(
            self.local_port,
            self.remote_port,
            seq,
            self.rcv_nxt if ack else 0,
            flags | ACK if ack else flags,
            field if ack else 0,
            payload,
        )
        if ack:
            self._ack_pending = 0
            self.timers.delayed_ack = None
        self._layer.emit(self, seg)

    def _send_ack(self) -> None:
        # SEQ = the highest sequence sent, not SND.NXT: after a timeout SND.NXT goes back, and
        # an ACK numbered below the peer's RCV.NXT fails its acceptability test and is dropped,
        # so both sides could sit retransmitting with each other's ACKs thrown away (as in BSD).
        self._send_segment(ACK, self.snd_max)

    def _send_syn(self) -> None:
        """Our SYN (active open) or SYN,ACK (passive or simultaneous open), with options."""
        synack = self.state != st.SYN_SENT  # also FIN_WAIT_1 after close() in SYN_RECEIVED
        window = min(self.rcvbuf.free, 0xFFFF)  # never scaled in a SYN (RFC 7323 section 2.2)
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt if synack else 0,
            SYN | ACK if synack else SYN,
            window,
            mss=self.config.mss,
            wscale=self.rcv_shift if self.wscale_offered else None,
        )
        if synack:
            self.rcv_adv = (self.rcv_nxt + window) & MASK
        if self._rtt_seq is None and not self._syn_retransmitted:
            self._rtt_seq = self.sndbuf.start
            self._rtt_time = self._layer.now()
        self._layer.emit(self, seg)

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
            payload = buf.read(nxt, n) if n else b""
            flags = (PSH if n and n == avail else 0) | (FIN if fin else 0)
            self._send_segment(flags, nxt, payload)
            new_nxt = (nxt + n + (1 if fin else 0)) & MASK
            if seq_lt(nxt, self.snd_max):
                self._layer.count("tcp__retransmit")
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
        self._send_segment(FIN if fin else 0, una, self.sndbuf.read(una, n))
        self._layer.count("tcp__retransmit")
        self._rtt_seq = None  # Karn: never time a retransmitted segment

    def _window_update(self) -> None:
        """After the app read: if the peer may be stalled on a small window, tell it at once."""
        if self.state not in st.RECEIVING:
            return
        free = self.rcvbuf.free
        promised = (self.rcv_adv - self.rcv_nxt) & MASK
        threshold = min(self.rcvbuf.capacity // 2, 2 * self.mss)
        if promised < threshold <= free - promised:
            self._layer.count("tcp__window_update")
            self._send_ack()

    # ----------------------------------------------------------------- time

    def on_timer(self, now: float) -> None:
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
                    self._layer.count("tcp__delayed_ack")
                    self._send_ack()
            elif name == "time_wait":
                self._finish(st.TIMEOUT_2MSL, "closed")
        self._rearm(now)

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
        self._layer.count("tcp__retransmit__timeout")
        if not synced:
            self._syn_retransmitted = True
            self._layer.count("tcp__retransmit")
            self._send_syn()
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
        self._layer.count("tcp__window_probe")
        self._send_segment(0, una, self.sndbuf.read(una, 1))
        probe_end = (una + 1) & MASK
        if seq_gt(probe_end, self.snd_max):
            self.snd_max = probe_end
        self._probe_backoff += 1
        self.timers.persist = now + persist_interval(
            self.rto.rto, self._probe_backoff, self.config.max_rto
        )

    def _rearm(self, now: float) -> None:
        """Make the retransmit and persist timers agree with the send state, then tell the
        layer the next deadline."""
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
        self._layer.schedule(self)

    # ----------------------------------------------------------------- ICMP

    def on_icmp_error(self, kind: str, seq: int, next_hop_mtu: int, now: float) -> None:
        """An ICMP error quoting one of our segments (the layer matched the 4-tuple)."""
        # RFC 5927 section 4.1: believe it only if it quotes a sequence number in flight,
        # which a blind attacker has to guess just like for an RST.
        if not (seq_le(self.snd_una, seq) and seq_lt(seq, self.snd_max)):
            self._layer.count("tcp__icmp_seq_not_in_flight__drop")
            return
        if kind == "fragmentation_needed":
            mss = max(next_hop_mtu - 40, self.config.min_mss) if next_hop_mtu else 0
            if mss and mss < self.mss:
                self._layer.count("tcp__icmp_fragmentation_needed__lower_mss")
                self.mss = self.cc.mss = mss
                if self._syn_acked():  # what was in flight was too big: send it again, smaller
                    self.snd_nxt = self.snd_una
                    self._output(now)
        elif self.state == st.SYN_SENT and kind in ("port_unreachable", "protocol_unreachable"):
            # RFC 1122 4.2.3.9: hard errors while connecting; later they are soft (RFC 5461).
            self._layer.count("tcp__icmp_unreachable__abort")
            self._finish(st.RCV_ICMP_UNREACHABLE, "unreachable")
        else:
            self._layer.count("tcp__icmp_soft_error__ignore")
        self._rearm(now)

    def reincarnate(self) -> None:
        """TIME_WAIT gives way to a new SYN for the same 4-tuple (the layer checked it)."""
        self._finish(st.RCV_NEW_SYN, "closed")

    # ----------------------------------------------------------------- the end

    def _give_up(self) -> None:
        self._layer.count("tcp__give_up")
        # Not for a half-open connection: under a spoofed SYN flood that RST would go to
        # whoever owns the forged address (backscatter).
        if self.state in st.SYNCHRONIZED:
            self._send_segment(RST | ACK, self.snd_max)
        self._finish(st.GIVE_UP, "timeout")

    def _move(self, event: str) -> None:
        self.state = st.transition(self.state, event)

    def _report_closed(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._layer.mark_ready(self)

    def _finish(self, event: str, reason: str) -> None:
        """Into CLOSED: stop the timers, free the send side, leave the layer's tables."""
        self._move(event)
        self.timers.clear()
        self.sndbuf = SendBuffer(0, self.sndbuf.start)
        self.rcvbuf.runs = []
        self._report_closed(reason)
        self._layer.forget(self)
        if self.listener is not None:
            self.listener.forget(self)
