"""The tunables of the TCP layer, each with the RFC default or the reason it differs."""

from __future__ import annotations


class TCPConfig:
    """Settings shared by every connection of one TCP layer.

    mss              our MSS option: the largest payload we take (MTU 1500 - 40 bytes of headers)
    min_mss          floor for the peer's MSS: a tiny MSS would make us cut data into thousands
                     of segments (the "SACK panic"/small-MSS resource attacks); Linux uses 48-88
    send_buffer      bytes send() queues before it takes less than it was given
    send_memory      bytes all connections' send buffers hold together: past it a buffer takes
                     no more than 16 KiB (buffers.SEND_FLOOR), so 400 connections to peers
                     that read nothing hold 16 MiB + 400 x 16 KiB, not 400 send buffers
                     (100 MB); the app's writes wait (drain) meanwhile
    receive_buffer   bytes held for the app; the receive window is what is free of it
    receive_memory   bytes all connections' receive buffers hold together (in order or not):
                     past it windows close (to zero, or to what is left) and new data is
                     dropped, so an app that reads none of 400 connections holds 16 MiB, not
                     400 receive buffers (100 MB, a 128 MB guest's whole memory)
    out_of_order_memory  of receive_memory, what out-of-order bytes may take: nobody can read
                     them until their hole fills, so they must not shut every window
    window_scale     offer RFC 7323 window scaling (the shift is derived from receive_buffer)
    initial_rto, min_rto, max_rto   RFC 6298: 1 s, 1 s, 60 s
    delayed_ack      how long an ACK may wait for a second segment (RFC 9293: < 0.5 s)
    fin_timeout      how long a connection the app has closed (an orphan) waits in FIN_WAIT_2
                     for the peer's FIN (Linux's tcp_fin_timeout); else a peer that ACKs our
                     FIN and never sends its own keeps the connection for ever
    msl              maximum segment lifetime; TIME_WAIT lasts 2*msl (RFC 9293 suggests 2 min,
                     and 30 s is what stacks use in practice)
    syn_retries, synack_retries     handshake retransmissions before giving up (Linux: 6, 5)
    max_retries      data retransmissions (and unanswered zero-window probes) before giving up
    challenge_ack_limit per challenge_ack_interval: RFC 5961 section 7's throttle, per
                     connection (a global one leaks state to off-path attackers, CVE-2016-5696)
    max_ooo_runs     out-of-order runs (holes) reassembly keeps per connection
    invalid_ack_interval  at most one ACK per this many seconds answers out-of-window pure
                     ACKs (Linux's tcp_invalid_ratelimit, 500 ms): two ends that disagree
                     on the window (a desync an attacker on the link can cause) would
                     otherwise ACK each other's ACKs for ever. Data is always answered
    nodelay          True: no Nagle (asyncio sets TCP_NODELAY too); False: RFC 9293 Nagle
    syn_backlog      half-open connections a listener keeps (its SYN queue)
    accept_backlog   established connections waiting for accept() (its accept queue)
    time_wait_ignores_rst  RFC 1337: no RST ends TIME_WAIT (default: an exact one does, as in
                     Linux, so a client reusing the 4-tuple recovers from our ACK to its SYN)
    max_time_wait    connections kept in TIME_WAIT; past it the oldest goes at once (Linux's
                     tcp_max_tw_buckets): each is a Connection object, and a client closing
                     a thousand a second would otherwise keep 2*msl's worth (60,000) in memory
    syn_cookies      answer SYNs statelessly when the SYN queue is full, instead of dropping
                     them (default on, as Linux's tcp_syncookies=1: a full queue shut out
                     every client until its entries expired)
    ephemeral_ports  (first, last) local ports connect() picks from (RFC 6335 range)
    checksum_offload the link completes TCP checksums (a TAP with virtio-net headers, like a
                     virtio NIC): segments leave with only the pseudo-header sum in the field,
                     as Linux hands them to such devices; received ones are still verified
    """

    __slots__ = (
        "accept_backlog",
        "challenge_ack_interval",
        "challenge_ack_limit",
        "checksum_offload",
        "delayed_ack",
        "ephemeral_ports",
        "fin_timeout",
        "initial_rto",
        "invalid_ack_interval",
        "max_ooo_runs",
        "max_retries",
        "max_rto",
        "max_time_wait",
        "min_mss",
        "min_rto",
        "msl",
        "mss",
        "nodelay",
        "out_of_order_memory",
        "receive_buffer",
        "receive_memory",
        "send_buffer",
        "send_memory",
        "syn_backlog",
        "syn_cookies",
        "syn_retries",
        "synack_retries",
        "time_wait_ignores_rst",
        "window_scale",
    )

    def __init__(
        self,
        *,
        mss: int = 1460,
        min_mss: int = 88,
        send_buffer: int = 256 * 1024,
        send_memory: int = 16 * 1024 * 1024,
        receive_buffer: int = 256 * 1024,
        receive_memory: int = 16 * 1024 * 1024,
        out_of_order_memory: int = 4 * 1024 * 1024,
        window_scale: bool = True,
        initial_rto: float = 1.0,
        min_rto: float = 1.0,
        max_rto: float = 60.0,
        delayed_ack: float = 0.2,
        msl: float = 30.0,
        fin_timeout: float = 60.0,
        syn_retries: int = 6,
        synack_retries: int = 5,
        max_retries: int = 15,
        challenge_ack_limit: int = 10,
        challenge_ack_interval: float = 1.0,
        max_ooo_runs: int = 64,
        invalid_ack_interval: float = 0.5,
        max_time_wait: int = 4096,
        nodelay: bool = True,
        syn_backlog: int = 1024,
        accept_backlog: int = 1024,
        syn_cookies: bool = True,
        time_wait_ignores_rst: bool = False,
        ephemeral_ports: tuple[int, int] = (49152, 65535),
        checksum_offload: bool = False,
    ) -> None:
        self.mss = mss
        self.min_mss = min_mss
        self.send_buffer = send_buffer
        self.send_memory = send_memory
        self.receive_buffer = receive_buffer
        self.receive_memory = receive_memory
        self.out_of_order_memory = out_of_order_memory
        self.window_scale = window_scale
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.delayed_ack = delayed_ack
        self.msl = msl
        self.fin_timeout = fin_timeout
        self.syn_retries = syn_retries
        self.synack_retries = synack_retries
        self.max_retries = max_retries
        self.challenge_ack_limit = challenge_ack_limit
        self.challenge_ack_interval = challenge_ack_interval
        self.max_ooo_runs = max_ooo_runs
        self.invalid_ack_interval = invalid_ack_interval
        self.max_time_wait = max_time_wait
        self.nodelay = nodelay
        self.syn_backlog = syn_backlog
        self.accept_backlog = accept_backlog
        self.syn_cookies = syn_cookies
        self.time_wait_ignores_rst = time_wait_ignores_rst
        self.ephemeral_ports = ephemeral_ports
        self.checksum_offload = checksum_offload
