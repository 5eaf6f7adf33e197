"""One Connection on its own: segments and a clock in, its effects record out, no layer.

Each call returns (or leaves in `conn.effects`) what the connection asks of its driver:
segments to send, counter names, the ready mark, "established", "forget me" and its next
deadline. These tests read that record directly, as a fuzzer or another driver would.
"""

from __future__ import annotations

from summon.net.tcp import Connection, ConnectionClosed, ConnectionEstablished, TCPConfig
from summon.net.tcp.effects import Effects
from summon.net.tcp.segment import Segment, parse_segment
from summon.net.tcp.wire import ACK, FIN, PSH, RST, SYN

LOCAL_IP, PEER_IP = bytes((192, 0, 2, 1)), bytes((192, 0, 2, 9))
LOCAL_PORT, PEER_PORT = 5000, 80
ISS, PEER_ISS = 1000, 7000
CONFIG = TCPConfig(window_scale=False)  # plain 16-bit windows keep the numbers readable


def taken(fx: Effects) -> dict[str, object]:
    """The record as plain values, then cleared (what a driver does after each call)."""
    sent = [parse_segment(LOCAL_IP, PEER_IP, data) for data in fx.segments]  # they must parse
    seen = {
        "segments": [(s.flags, s.seq, s.ack, len(s.payload)) for s in sent],
        "counts": list(fx.counts),
        "ready": fx.ready,
        "established": fx.established,
        "closed": fx.closed,
        "deadline": fx.deadline if fx.rearmed else "unchanged",
    }
    fx.clear()
    return seen


def peer(flags: int, seq: int, ack: int, payload: bytes = b"", window: int = 65535) -> Segment:
    return Segment(PEER_PORT, LOCAL_PORT, seq, ack, flags, window, payload)


def established_active() -> Connection:
    conn = Connection(CONFIG, LOCAL_IP, LOCAL_PORT, PEER_IP, PEER_PORT, ISS)
    conn.open_active(0.0)
    conn.on_segment(
        Segment(PEER_PORT, LOCAL_PORT, PEER_ISS, ISS + 1, SYN | ACK, 65535, mss=1460), 0.1
    )
    conn.effects.clear()
    assert conn.next_event() == ConnectionEstablished()
    return conn


def test_active_open_sends_a_syn_and_arms_the_retransmission_timer() -> None:
    conn = Connection(CONFIG, LOCAL_IP, LOCAL_PORT, PEER_IP, PEER_PORT, ISS)
    conn.open_active(0.0)
    (syn,) = [parse_segment(LOCAL_IP, PEER_IP, data) for data in conn.effects.segments]
    assert (syn.flags, syn.seq, syn.mss) == (SYN, ISS, 1460)
    assert taken(conn.effects) == {
        "segments": [(SYN, ISS, 0, 0)],
        "counts": [],
        "ready": False,
        "established": False,
        "closed": False,
        "deadline": 1.0,  # initial RTO
    }
    assert conn.state == "SYN_SENT"


def test_syn_ack_completes_the_handshake_with_one_ack_and_no_timer() -> None:
    conn = Connection(CONFIG, LOCAL_IP, LOCAL_PORT, PEER_IP, PEER_PORT, ISS)
    conn.open_active(0.0)
    conn.effects.clear()
    fx = conn.on_segment(
        Segment(PEER_PORT, LOCAL_PORT, PEER_ISS, ISS + 1, SYN | ACK, 65535, mss=1460), 0.1
    )
    assert fx is conn.effects  # one record per connection, reused for every call
    assert taken(fx) == {
        "segments": [(ACK, ISS + 1, PEER_ISS + 1, 0)],
        "counts": [],
        "ready": True,
        "established": False,  # only a listener's connections go to an accept queue
        "closed": False,
        "deadline": None,
    }
    assert conn.state == "ESTABLISHED"
    assert conn.next_event() == ConnectionEstablished()


def test_the_first_SYN_retransmission_comes_at_the_deadline_it_announced() -> None:
    conn = Connection(CONFIG, LOCAL_IP, LOCAL_PORT, PEER_IP, PEER_PORT, ISS)
    conn.open_active(0.0)
    deadline = conn.effects.deadline
    conn.effects.clear()
    assert deadline == 1.0
    assert taken(conn.on_timer(0.5))["segments"] == []  # not yet
    seen = taken(conn.on_timer(deadline))
    assert seen["segments"] == [(SYN, ISS, 0, 0)]
    assert seen["counts"] == ["tcp__retransmit__timeout", "tcp__retransmit"]
    assert seen["deadline"] == 1.0 + 2.0  # backed off


def test_in_order_data_is_acked_every_second_segment_or_at_the_delayed_ack_timer() -> None:
    conn = established_active()
    seen = taken(conn.on_segment(peer(ACK | PSH, PEER_ISS + 1, ISS + 1, b"a" * 100), 1.0))
    assert (seen["segments"], seen["ready"]) == ([], True)  # the ACK waits for a second one
    seen = taken(conn.on_segment(peer(ACK | PSH, PEER_ISS + 101, ISS + 1, b"b" * 100), 1.01))
    assert seen["segments"] == [(ACK, ISS + 1, PEER_ISS + 201, 0)]
    conn.on_segment(peer(ACK | PSH, PEER_ISS + 201, ISS + 1, b"c" * 50), 2.0)
    assert conn.effects.deadline == 2.0 + CONFIG.delayed_ack
    conn.effects.clear()
    seen = taken(conn.on_timer(2.0 + CONFIG.delayed_ack))
    assert seen["segments"] == [(ACK, ISS + 1, PEER_ISS + 251, 0)]
    assert seen["counts"] == ["tcp__delayed_ack"]


def test_sent_data_is_retransmitted_when_its_timer_fires_and_acked_data_disarms_it() -> None:
    conn = established_active()
    assert conn.send(b"x" * 500, 1.0) == 500
    seen = taken(conn.effects)
    assert seen["segments"] == [(ACK | PSH, ISS + 1, PEER_ISS + 1, 500)]
    rto_deadline = seen["deadline"]
    assert isinstance(rto_deadline, float) and rto_deadline > 1.0
    seen = taken(conn.on_timer(rto_deadline))
    assert seen["segments"] == [(ACK | PSH, ISS + 1, PEER_ISS + 1, 500)]
    assert "tcp__retransmit" in seen["counts"]
    seen = taken(conn.on_segment(peer(ACK, PEER_ISS + 1, ISS + 501), rto_deadline + 0.1))
    assert seen["ready"] and seen["deadline"] is None  # send space freed; nothing in flight


def test_an_exact_rst_closes_and_asks_to_be_forgotten() -> None:
    conn = established_active()
    seen = taken(conn.on_segment(peer(RST, PEER_ISS + 1, 0), 1.0))
    assert seen["closed"] and seen["ready"]
    assert seen["counts"] == ["tcp__rst__reset"]
    assert conn.next_event() == ConnectionClosed("reset")


def test_an_in_window_rst_that_is_not_exact_draws_a_challenge_ack_rfc_5961() -> None:
    conn = established_active()
    seen = taken(conn.on_segment(peer(RST, PEER_ISS + 10, 0), 1.0))
    assert not seen["closed"]
    assert seen["segments"] == [(ACK, ISS + 1, PEER_ISS + 1, 0)]
    assert seen["counts"] == ["tcp__rst_not_exact__challenge_ack", "tcp__challenge_ack"]
    assert conn.state == "ESTABLISHED"


def test_a_passive_connection_reports_established_only_when_its_listener_has_room() -> None:
    room = [False]
    conn = Connection(CONFIG, LOCAL_IP, 80, PEER_IP, 40000, ISS, can_accept=lambda: room[0])
    syn = Segment(40000, 80, PEER_ISS, 0, SYN, 65535, mss=1460)
    conn.open_passive(syn, 0.0)
    assert taken(conn.effects)["segments"] == [(SYN | ACK, ISS, PEER_ISS + 1, 0)]
    ack = Segment(40000, 80, PEER_ISS + 1, ISS + 1, ACK, 65535)
    seen = taken(conn.on_segment(ack, 0.1))
    assert not seen["established"] and seen["counts"] == ["tcp__accept_queue_full__drop"]
    assert conn.state == "SYN_RECEIVED"  # kept half-open: the SYN,ACK resend retries later
    room[0] = True
    seen = taken(conn.on_segment(ack, 0.2))
    assert seen["established"] and seen["ready"]
    assert conn.state == "ESTABLISHED"


def test_close_sends_fin_and_abort_sends_rst() -> None:
    conn = established_active()
    conn.close(1.0)
    assert taken(conn.effects)["segments"] == [(ACK | FIN, ISS + 1, PEER_ISS + 1, 0)]
    assert conn.state == "FIN_WAIT_1"
    conn.abort()
    seen = taken(conn.effects)
    assert seen["segments"] == [(ACK | RST, ISS + 2, PEER_ISS + 1, 0)]
    assert seen["counts"] == ["tcp__abort__send_rst"] and seen["closed"]
    assert conn.state == "CLOSED"


def test_effects_record_is_false_when_empty_and_says_what_it_holds() -> None:
    fx = Effects()
    assert not fx and repr(fx) == "<Effects none>"
    fx.counts.append("tcp__x")
    fx.ready = True
    assert fx and "tcp__x" in repr(fx) and "ready" in repr(fx)
    fx.clear()
    assert not fx
