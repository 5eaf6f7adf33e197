"""Scripted packet scenarios (packetdrill-style, virtual time) against one TCP endpoint.

Notation: see tcp_script.py. The endpoint is 192.0.2.1:8080; `<` comes from 192.0.2.2:40000.
Defaults unless a script says otherwise: MSS 1460, receive buffer 256 KiB (window scale 3),
RTO 1 s (RFC 6298 minimum), delayed ACK 0.2 s, MSL 30 s.
"""

from __future__ import annotations

import pytest
from tcp_script import ScriptError, run_script

# The peer offers MSS 1000 and no window scale: windows are plain 16-bit values both ways.
PASSIVE = """
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1000>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.010 accept
0.010 event ConnectionEstablished
0.010 state ESTABLISHED
"""

ACTIVE = """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
0.010 < S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 7>
0.010 > . 1:1(0) ack 1 win 32768
0.010 event ConnectionEstablished
0.010 state ESTABLISHED
"""

SCRIPTS = {
    # ---------------------------------------------------------------- handshakes
    "passive_handshake_with_window_scale": """
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,wscale 7>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 3>
0.010 < . 1:1(0) ack 1 win 512
0.010 accept
0.010 event ConnectionEstablished
// 512 << 7 = 65536 bytes of peer window: 44 full segments would fit, cwnd allows 3 (RFC 5681 IW)
0.100 write 5000
0.100 > . 1:1461(1460) ack 1 win 32768
0.100 > . 1461:2921(1460) ack 1 win 32768
0.100 > . 2921:4381(1460) ack 1 win 32768
""",
    "passive_handshake_without_options": """
// No MSS option: RFC 9293's default of 536 bytes applies to what we send.
0.000 listen
0.000 < S 0:0(0) win 8000
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.010 < . 1:1(0) ack 1 win 8000
0.010 accept
0.100 write 1000
0.100 > . 1:537(536) ack 1 win 65535
0.100 > P. 537:1001(464) ack 1 win 65535
""",
    "tiny_peer_mss_is_clamped": """
// A peer asking for 10-byte segments would have us cut a megabyte into 100,000 of them
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 10>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.010 accept
0.100 write 200
0.100 > . 1:89(88) ack 1 win 65535
0.100 > . 89:177(88) ack 1 win 65535
0.100 > P. 177:201(24) ack 1 win 65535
""",
    "passive_synack_retransmitted_then_given_up": """
0.000 config synack_retries=2
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
1.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
3.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
7.000 counter tcp__give_up 1
// The half-open entry is gone: the peer's late ACK now meets only the listener.
7.100 < . 1:1(0) ack 1 win 65535
7.100 > R 1:1(0) win 0
""",
    "passive_duplicate_syn_resends_synack": """
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.500 < S 0:0(0) win 65535 <mss 1460>
0.500 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.600 < . 1:1(0) ack 1 win 65535
0.600 accept
0.600 state ESTABLISHED
0.600 counter tcp__duplicate_syn__resend_synack 1
""",
    "passive_bad_ack_in_syn_received_gets_rst": """
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
0.010 < . 1:1(0) ack 5 win 65535
0.010 > R 5:5(0) win 0
0.020 < . 1:1(0) ack 1 win 65535
0.020 accept
0.020 state ESTABLISHED
""",
    "close_in_syn_received_after_simultaneous_open": """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
0.010 < S 0:0(0) win 65535 <mss 1460,wscale 7>
0.010 > S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 3>
0.020 close
0.020 state FIN_WAIT_1
// Our SYN is not acknowledged yet: what is resent is still the SYN,ACK, and the FIN waits
1.010 > S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 3>
1.100 < . 1:1(0) ack 1 win 512
1.100 > F. 1:1(0) ack 1 win 32768
1.200 < . 1:1(0) ack 2 win 512
1.200 state FIN_WAIT_2
""",
    "active_handshake": ACTIVE
    + """
0.100 write 2000
0.100 > . 1:1461(1460) ack 1 win 32768
0.100 > P. 1461:2001(540) ack 1 win 32768
""",
    "active_handshake_peer_without_window_scale": """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
0.010 < S. 0:0(0) ack 1 win 5840 <mss 1000>
// Scaling needs both sides: our windows go out unscaled, capped at 65535
0.010 > . 1:1(0) ack 1 win 65535
0.100 write 2500
0.100 > . 1:1001(1000) ack 1 win 65535
0.100 > . 1001:2001(1000) ack 1 win 65535
0.100 > P. 2001:2501(500) ack 1 win 65535
""",
    "active_syn_retransmitted_with_backoff_then_timeout": """
0.000 config syn_retries=3
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
1.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
3.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
7.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
14.900 state SYN_SENT
15.000 state CLOSED
15.000 event ConnectionClosed timeout
""",
    "active_refused_by_rst": """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
// An RST whose ACK does not cover our SYN is ignored (RFC 9293, RFC 5961 3.2)
0.010 < R. 0:0(0) ack 7 win 0
0.010 state SYN_SENT
0.010 < R 0:0(0) win 0
0.010 state SYN_SENT
0.020 < R. 0:0(0) ack 1 win 0
0.020 state CLOSED
0.020 event ConnectionClosed refused
""",
    "active_bad_synack_gets_rst": """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
0.010 < S. 0:0(0) ack 100 win 65535 <mss 1460>
0.010 > R 100:100(0) win 0
0.010 state SYN_SENT
""",
    "simultaneous_open": """
0.000 connect
0.000 > S 0:0(0) win 65535 <mss 1460,wscale 3>
0.010 < S 0:0(0) win 65535 <mss 1460,wscale 7>
0.010 > S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 3>
0.010 state SYN_RECEIVED
// The peer's SYN,ACK (its answer to our SYN) completes ours
0.020 < S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 7>
0.020 > . 1:1(0) ack 1 win 32768
0.020 state ESTABLISHED
0.020 event ConnectionEstablished
""",
    # ---------------------------------------------------------------- data and ACKs
    "delayed_ack_for_one_segment_immediate_for_two": PASSIVE
    + """
0.100 < P. 1:1001(1000) ack 1 win 65535
0.100 read 1000
// one segment: the ACK waits for the delayed-ACK timer (0.2 s)
0.300 > . 1:1(0) ack 1001 win 65535
0.400 < . 1001:2001(1000) ack 1 win 65535
0.400 < P. 2001:3001(1000) ack 1 win 65535
// the second full segment is ACKed at once (RFC 5681 4.2)
0.400 > . 1:1(0) ack 3001 win 65535
0.400 read 2000
0.500 counter tcp__delayed_ack 1
""",
    "ack_piggybacks_on_data": PASSIVE
    + """
0.100 < P. 1:101(100) ack 1 win 65535
0.150 write 50
0.150 > P. 1:51(50) ack 101 win 65535
0.150 read 100
""",
    "out_of_order_gets_immediate_dup_ack_then_reassembly": PASSIVE
    + """
0.100 < . 1001:2001(1000) ack 1 win 65535
0.100 > . 1:1(0) ack 1 win 65535
0.110 < . 2001:3001(1000) ack 1 win 65535
0.110 > . 1:1(0) ack 1 win 65535
0.110 event none
0.120 < P. 1:1001(1000) ack 1 win 65535
0.120 > . 1:1(0) ack 3001 win 65535
0.120 read 3000
0.120 counter tcp__out_of_order__queued 2
""",
    "retransmission_timeout_with_backoff_and_karn": PASSIVE
    + """
0.100 write 1000
0.100 > P. 1:1001(1000) ack 1 win 65535
// RTO is 1 s (the SYN's 10 ms sample is below RFC 6298's 1 s floor); then it doubles
1.100 > P. 1:1001(1000) ack 1 win 65535
3.100 > P. 1:1001(1000) ack 1 win 65535
7.100 > P. 1:1001(1000) ack 1 win 65535
7.200 < . 1:1(0) ack 1001 win 65535
// Karn: that ACK may be for any copy, so no sample; the backed-off RTO (8 s) stays
8.000 write 10
8.000 > P. 1001:1011(10) ack 1 win 65535
16.000 > P. 1001:1011(10) ack 1 win 65535
16.010 < . 1:1(0) ack 1011 win 65535
16.010 counter tcp__retransmit__timeout 4
""",
    "retransmission_gives_up_after_max_retries": "0.000 config max_retries=2\n"
    + PASSIVE
    + """
0.100 write 100
0.100 > P. 1:101(100) ack 1 win 65535
1.100 > P. 1:101(100) ack 1 win 65535
3.100 > P. 1:101(100) ack 1 win 65535
7.100 > R. 101:101(0) ack 1 win 65535
7.100 event ConnectionClosed timeout
""",
    "fast_retransmit_and_newreno_recovery": PASSIVE
    + """
// Peer MSS 1000: RFC 5681's initial window is 4 segments.
0.100 write 10000
0.100 > . 1:1001(1000) ack 1 win 65535
0.100 > . 1001:2001(1000) ack 1 win 65535
0.100 > . 2001:3001(1000) ack 1 win 65535
0.100 > . 3001:4001(1000) ack 1 win 65535
// Segment 1001:2001 is lost. The ACK of the first grows cwnd to 5000 (slow start)
0.110 < . 1:1(0) ack 1001 win 65535
0.110 > . 4001:5001(1000) ack 1 win 65535
0.110 > . 5001:6001(1000) ack 1 win 65535
// Duplicate ACKs 1 and 2: limited transmit (RFC 3042) sends one new segment each
0.111 < . 1:1(0) ack 1001 win 65535
0.111 > . 6001:7001(1000) ack 1 win 65535
0.112 < . 1:1(0) ack 1001 win 65535
0.112 > . 7001:8001(1000) ack 1 win 65535
// Third: fast retransmit; ssthresh = flight/2 = 3500, cwnd = 3500 + 3*1000
0.113 < . 1:1(0) ack 1001 win 65535
0.113 > . 1001:2001(1000) ack 1 win 65535
// Fourth inflates cwnd to 7500: 500 bytes usable, a runt the sender's SWS rule holds back
0.114 < . 1:1(0) ack 1001 win 65535
// A partial ACK (3001 < recover 8001): retransmit the next hole at once, deflate cwnd
0.120 < . 1:1(0) ack 3001 win 65535
0.120 > . 3001:4001(1000) ack 1 win 65535
0.120 > . 8001:9001(1000) ack 1 win 65535
// The full ACK ends recovery: cwnd = min(ssthresh, flight + MSS) = 2000
0.130 < . 1:1(0) ack 8001 win 65535
0.130 > P. 9001:10001(1000) ack 1 win 65535
0.140 < . 1:1(0) ack 10001 win 65535
0.140 counter tcp__retransmit__fast 1
0.140 counter tcp__retransmit__partial_ack 1
0.140 counter tcp__retransmit__timeout 0
""",
    "zero_window_then_persist_probes": PASSIVE
    + """
0.100 < . 1:1(0) ack 1 win 0
0.200 write 3000
// Nothing may go into a zero window; the persist timer probes with one byte, backing off
1.200 > . 1:2(1) ack 1 win 65535
3.200 > . 1:2(1) ack 1 win 65535
3.210 < . 1:1(0) ack 1 win 0
7.200 > . 1:2(1) ack 1 win 65535
// The window opens: everything goes, from the first byte (it may not have been taken)
7.300 < . 1:1(0) ack 1 win 65535
7.300 > . 1:1001(1000) ack 1 win 65535
7.300 > . 1001:2001(1000) ack 1 win 65535
7.300 > P. 2001:3001(1000) ack 1 win 65535
7.310 < . 1:1(0) ack 3001 win 65535
7.310 counter tcp__window_probe 3
7.310 counter tcp__dup_ack 0
7.310 state ESTABLISHED
""",
    "our_zero_window_and_window_update": """
0.000 config receive_buffer=4000 window_scale=False
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1000>
0.000 > S. 0:0(0) ack 1 win 4000 <mss 1460>
0.010 < . 1:1(0) ack 1 win 65535
0.010 accept
0.010 event ConnectionEstablished
0.100 < . 1:1001(1000) ack 1 win 65535
0.100 < . 1001:2001(1000) ack 1 win 65535
0.100 > . 1:1(0) ack 2001 win 2000
0.110 < . 2001:3001(1000) ack 1 win 65535
0.110 < . 3001:4001(1000) ack 1 win 65535
0.110 > . 1:1(0) ack 4001 win 0
// A probe into our zero window is answered, not taken
1.000 < . 4001:4002(1) ack 1 win 65535
1.000 > . 1:1(0) ack 4001 win 0
// The app reads: the window reopens and the peer is told at once
1.100 read 4000
1.100 > . 1:1(0) ack 4001 win 4000
""",
    # ---------------------------------------------------------------- closing
    "passive_close": PASSIVE
    + """
0.100 < F. 1:1(0) ack 1 win 65535
0.100 > . 1:1(0) ack 2 win 65535
0.100 state CLOSE_WAIT
0.100 event EndOfStream
0.200 write 10
0.200 > P. 1:11(10) ack 2 win 65535
0.200 close
0.200 > F. 11:11(0) ack 2 win 65535
0.200 state LAST_ACK
0.300 < . 2:2(0) ack 12 win 65535
0.300 state CLOSED
0.300 event ConnectionClosed closed
""",
    "active_close_and_time_wait": ACTIVE
    + """
0.100 write 100
0.100 > P. 1:101(100) ack 1 win 32768
0.200 close
0.200 > F. 101:101(0) ack 1 win 32768
0.200 state FIN_WAIT_1
0.300 < . 1:1(0) ack 102 win 100
0.300 state FIN_WAIT_2
// Half-closed: the peer may still send
0.400 < P. 1:6(5) ack 102 win 100
0.400 read 5
0.500 < F. 6:6(0) ack 102 win 100
0.500 > . 102:102(0) ack 7 win 32768
0.500 state TIME_WAIT
0.500 event EndOfStream
0.500 event ConnectionClosed closed
// A retransmitted FIN in TIME_WAIT is ACKed again and restarts the 2*MSL timer
2.000 < F. 6:6(0) ack 102 win 100
2.000 > . 102:102(0) ack 7 win 32768
61.900 state TIME_WAIT
62.000 state CLOSED
// Now the 4-tuple is unknown: RST, as for any segment to no socket
62.100 < . 7:7(0) ack 102 win 100
62.100 > R 102:102(0) win 0
""",
    "time_wait_and_rst": ACTIVE
    + """
0.100 close
0.100 > F. 1:1(0) ack 1 win 32768
0.200 < F. 1:1(0) ack 2 win 100
0.200 > . 2:2(0) ack 2 win 32768
0.200 state TIME_WAIT
// Not exact: a challenge ACK; exact: TIME_WAIT ends (Linux's default, not RFC 1337's)
0.300 < R 50:50(0) win 0
0.300 > . 2:2(0) ack 2 win 32768
0.300 state TIME_WAIT
0.400 < R 2:2(0) win 0
0.400 state CLOSED
""",
    "time_wait_ignores_rst_under_rfc1337": "0.000 config time_wait_ignores_rst=True\n"
    + ACTIVE
    + """
0.100 close
0.100 > F. 1:1(0) ack 1 win 32768
0.200 < F. 1:1(0) ack 2 win 100
0.200 > . 2:2(0) ack 2 win 32768
0.400 < R 2:2(0) win 0
0.400 state TIME_WAIT
0.400 counter tcp__rst_in_time_wait__drop 1
""",
    "pure_ack_after_timeout_carries_the_highest_sequence": PASSIVE
    + """
0.100 write 3000
0.100 > . 1:1001(1000) ack 1 win 65535
0.100 > . 1001:2001(1000) ack 1 win 65535
0.100 > P. 2001:3001(1000) ack 1 win 65535
1.100 > . 1:1001(1000) ack 1 win 65535
// SND.NXT went back to 1001; an ACK numbered 1001 could fall below the peer's RCV.NXT
1.200 < P. 1:11(10) ack 1 win 65535
1.400 > . 3001:3001(0) ack 11 win 65535
""",
    "simultaneous_close": ACTIVE
    + """
0.100 close
0.100 > F. 1:1(0) ack 1 win 32768
0.100 state FIN_WAIT_1
// The peer's FIN crosses ours: it does not acknowledge our FIN
0.110 < F. 1:1(0) ack 1 win 65535
0.110 > . 2:2(0) ack 2 win 32768
0.110 state CLOSING
0.120 < . 2:2(0) ack 2 win 65535
0.120 state TIME_WAIT
0.120 event EndOfStream
0.120 event ConnectionClosed closed
60.120 state CLOSED
""",
    "fin_retransmitted_until_acked": ACTIVE
    + """
0.100 close
0.100 > F. 1:1(0) ack 1 win 32768
1.100 > F. 1:1(0) ack 1 win 32768
3.100 > F. 1:1(0) ack 1 win 32768
3.200 < . 1:1(0) ack 2 win 65535
3.200 state FIN_WAIT_2
""",
    "abort_sends_rst": PASSIVE
    + """
0.100 write 100
0.100 > P. 1:101(100) ack 1 win 65535
0.200 abort
0.200 > R. 101:101(0) ack 1 win 65535
0.200 event ConnectionClosed aborted
""",
    "peer_rst_exact_resets": PASSIVE
    + """
0.100 < R 1:1(0) win 0
0.100 state CLOSED
0.100 event ConnectionClosed reset
""",
    # ---------------------------------------------------------------- RFC 5961
    "blind_rst_in_window_gets_challenge_ack": PASSIVE
    + """
0.100 < R 100:100(0) win 0
0.100 > . 1:1(0) ack 1 win 65535
0.100 state ESTABLISHED
// The real peer answers the challenge with an exact RST; a blind attacker cannot
0.200 < R 1:1(0) win 0
0.200 state CLOSED
0.200 counter tcp__rst_not_exact__challenge_ack 1
""",
    "blind_rst_out_of_window_is_dropped_silently": PASSIVE
    + """
0.100 < R 70000:70000(0) win 0
0.100 < R. 4294900000:4294900000(0) ack 1 win 0
0.100 state ESTABLISHED
0.100 counter tcp__rst_out_of_window__drop 2
""",
    "blind_syn_in_established_gets_challenge_ack": PASSIVE
    + """
0.100 < S 5000:5000(0) win 65535 <mss 1460>
0.100 > . 1:1(0) ack 1 win 65535
0.100 < S 0:0(0) win 65535 <mss 1460>
0.100 > . 1:1(0) ack 1 win 65535
0.100 state ESTABLISHED
0.100 counter tcp__syn_in_synchronized__challenge_ack 2
""",
    "blind_data_injection_with_bad_ack_is_refused": PASSIVE
    + """
0.050 write 10
0.050 > P. 1:11(10) ack 1 win 65535
// In-window data, but acknowledging bytes we never sent: dropped, challenge ACK
0.100 < P. 1:101(100) ack 50000 win 65535
0.100 > . 11:11(0) ack 1 win 65535
// ... or far older than anything in flight (SND.UNA - MAX.SND.WND)
0.110 < P. 1:101(100) ack 4294800000 win 65535
0.110 > . 11:11(0) ack 1 win 65535
0.120 event none
0.120 counter tcp__ack_out_of_range__challenge_ack 2
// A segment with an acceptable ACK is taken as usual
0.200 < P. 1:101(100) ack 11 win 65535
0.200 read 100
""",
    "challenge_acks_are_rate_limited": """
0.000 config challenge_ack_limit=2
"""
    + PASSIVE
    + """
0.100 < R 100:100(0) win 0
0.100 > . 1:1(0) ack 1 win 65535
0.100 < R 200:200(0) win 0
0.100 > . 1:1(0) ack 1 win 65535
0.100 < R 300:300(0) win 0
0.100 < S 9:9(0) win 65535
0.100 < R 400:400(0) win 0
0.100 counter tcp__challenge_ack 2
0.100 counter tcp__challenge_ack__rate_limited 3
// A new second, a fresh allowance
1.200 < R 500:500(0) win 0
1.200 > . 1:1(0) ack 1 win 65535
1.200 state ESTABLISHED
""",
    "out_of_window_data_is_acked_not_taken": PASSIVE
    + """
0.100 < P. 100000:100010(10) ack 1 win 65535
0.100 > . 1:1(0) ack 1 win 65535
0.100 event none
0.100 counter tcp__out_of_window__ack 1
""",
    "out_of_window_pure_acks_are_answered_at_most_twice_a_second": PASSIVE
    + """
// An ACK loop (two ends that disagree on the window ACK each other's ACKs) is cut short:
// Linux's tcp_invalid_ratelimit. Data out of the window is still answered every time.
0.100 < . 100000:100000(0) ack 1 win 65535
0.100 > . 1:1(0) ack 1 win 65535
0.200 < . 100000:100000(0) ack 1 win 65535
0.300 < . 100000:100000(0) ack 1 win 65535
0.300 < P. 100000:100010(10) ack 1 win 65535
0.300 > . 1:1(0) ack 1 win 65535
0.300 counter tcp__out_of_window__rate_limited 2
0.650 < . 100000:100000(0) ack 1 win 65535
0.650 > . 1:1(0) ack 1 win 65535
0.650 state ESTABLISHED
""",
    # ---------------------------------------------------------------- no connection
    "syn_to_closed_port_gets_rst_ack": """
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > R. 0:0(0) ack 1 win 0
0.000 counter tcp__no_socket_match__respond_rst 1
""",
    "ack_to_closed_port_gets_rst_from_its_ack": """
0.000 < P. 0:10(10) ack 4242 win 65535
0.000 > R 4242:4242(0) win 0
0.000 < R 0:0(0) win 0
0.000 counter tcp__no_socket_match__rst_drop 1
""",
    "ack_to_listener_gets_rst": """
0.000 listen
0.000 < . 0:0(0) ack 77 win 65535
0.000 > R 77:77(0) win 0
0.000 counter tcp__listen_ack__respond_rst 1
""",
    "bad_checksum_is_dropped_and_counted": """
0.000 listen
0.000 < S 0:0(0) win 65535 <mss 1460> bad_csum
0.000 counter tcp__bad_checksum__drop 1
0.000 < S 0:0(0) win 65535 <mss 1460>
0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460>
""",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script(name: str) -> None:
    run_script(SCRIPTS[name])


def test_runner_rejects_an_unexpected_segment() -> None:
    with pytest.raises(ScriptError, match="unexpected segment"):
        run_script(PASSIVE + "0.100 write 10\n0.200 state ESTABLISHED\n")


def test_runner_rejects_a_wrong_expectation() -> None:
    with pytest.raises(ScriptError, match="ack differs"):
        run_script(PASSIVE + "0.100 write 10\n0.100 > P. 1:11(10) ack 2\n")


def test_runner_rejects_a_late_segment() -> None:
    with pytest.raises(ScriptError, match=r"sent at 0\.300, not 0\.350"):
        run_script(PASSIVE + "0.100 < P. 1:11(10) ack 1\n0.350 > . 1:1(0) ack 11\n")
