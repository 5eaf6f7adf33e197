"""A connection's state (the TCB) and what every part of it shares: the effects record, the
state moves through state.TRANSITIONS, and the way into CLOSED.

Connection is built in layers by job, each a module: tcb.py (this: the variables and the
end), send_path.py (segments out, retransmission and the timers), receive_path.py (RFC 9293's
segment processing), connection.py (the app's calls, opening, ICMP). The chain is linear
(Connection -> Receiver -> Sender -> TCB), so every method is found on the one class.
"""

from __future__ import annotations

from summon.net.errors import NetError
from summon.net.tcp import state as st
from summon.net.tcp.buffers import ReceiveBudget, ReceiveBuffer, SendBudget, SendBuffer
from summon.net.tcp.congestion import NewReno
from summon.net.tcp.effects import Effects
from summon.net.tcp.seq import MASK
from summon.net.tcp.timers import RTOEstimator, Timers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.net.tcp.config import TCPConfig

DEFAULT_MSS = 536  # RFC 9293 section 3.7.1: assumed when the peer sends no MSS option (IPv4)


class ConnectionStateError(NetError):
    """An app call that the connection's state does not allow (send after close, ...)."""


class TCB:
    """The transmission control block: sequence spaces, buffers, timers, and the effects of
    the call under way (see effects.py). No reference to a layer or a listener."""

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
        "_oow_ack_at",
        "_probe_backoff",
        "_probes_unanswered",
        "_retries",
        "_rtt_seq",
        "_rtt_time",
        "_scheduled",
        "_syn_retransmitted",
        "active",
        "can_accept",
        "cc",
        "config",
        "effects",
        "irs",
        "iss",
        "local_ip",
        "local_port",
        "max_snd_wnd",
        "mss",
        "orphaned",
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
        config: TCPConfig,
        local_ip: bytes,
        local_port: int,
        remote_ip: bytes,
        remote_port: int,
        iss: int,
        can_accept: Callable[[], bool] | None = None,
        effects: Effects | None = None,
        budget: ReceiveBudget | None = None,
        send_budget: SendBudget | None = None,
    ) -> None:
        """The 4-tuple (local_ip is in the checksum of every segment it encodes); can_accept:
        for a connection a listener spawned, whether its accept queue has room (asked when
        the handshake would complete); None for one we opened. effects: the record its calls
        leave their effects in; a driver that drains it after every call may give all its
        connections one (TCP does: no memory per connection); by default its own. budget:
        what its receive buffer draws on with the others' (TCP's); by default its own;
        send_budget, the same for its send buffer."""
        self.effects = effects if effects is not None else Effects()
        self.config = config
        self.state = st.CLOSED
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.can_accept = can_accept
        self.active = can_accept is None
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
        self.sndbuf = SendBuffer(config.send_buffer, (iss + 1) & MASK, send_budget)
        self.rcvbuf = ReceiveBuffer(config.receive_buffer, config.max_ooo_runs, budget)
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
        self._oow_ack_at = -1e300  # when an out-of-window pure ACK was last answered
        self._established_pending = False
        self._eof_pending = False
        self._closed_reason: str | None = None
        self._closed_reported = False
        self._scheduled: float | None = None  # the driver's timer-heap bookkeeping
        self.orphaned = False  # the app has closed and will read no more (Connection.orphan)

    def _count(self, key: str) -> None:
        self.effects.counts.append(key)

    def _syn_acked(self) -> bool:
        # Before the SYN is acked snd_una is the ISN, one before the first data byte; after,
        # never again (a sequence comparison with the ISN would break after 2**31 bytes).
        return (self.sndbuf.start - self.snd_una) & MASK != 1

    def _move(self, event: str) -> None:
        self.state = st.transition(self.state, event)

    def _report_closed(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self.effects.ready = True

    def _finish(self, event: str, reason: str) -> None:
        """Into CLOSED: stop the timers, free the send side, ask to be forgotten."""
        self._move(event)
        self.timers.clear()
        self.sndbuf.release()
        self.sndbuf = SendBuffer(0, self.sndbuf.start)
        self.rcvbuf.drop_out_of_order()
        self._report_closed(reason)
        self.effects.closed = True
