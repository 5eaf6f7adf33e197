"""THE TCP state machine: every state change of a connection is a row of TRANSITIONS.

Rule (after h11's _state.py): anything that changes `Connection.state` goes through `transition`
with an input named here; no other code assigns a state. The docs (docs/tcp-states.md) are
generated from this table: `python3 -W ignore -m summon.net.tcp.state > docs/tcp-states.md`.

States are RFC 9293's (section 3.3.2). Inputs are what happened: a call by the app, a segment
that passed the checks in connection.py, or a timer. Inputs that change nothing (data, duplicate
ACKs, segments dropped by the RFC 5961 checks) are not rows: they never move the state.
"""

from __future__ import annotations

CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN_SENT"
SYN_RECEIVED = "SYN_RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN_WAIT_1"
FIN_WAIT_2 = "FIN_WAIT_2"
CLOSE_WAIT = "CLOSE_WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST_ACK"
TIME_WAIT = "TIME_WAIT"
STATES = (
    CLOSED,
    LISTEN,
    SYN_SENT,
    SYN_RECEIVED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    CLOSE_WAIT,
    CLOSING,
    LAST_ACK,
    TIME_WAIT,
)

# Inputs. App calls:
OPEN_PASSIVE = "open_passive"  # listen()
OPEN_ACTIVE = "open_active"  # connect(): SYN sent
CLOSE = "close"  # close(): no more data from us; FIN follows the queued data
ABORT = "abort"  # abort(): RST sent, everything dropped
# Segments (already found acceptable):
RCV_SYN = "rcv_syn"  # SYN without ACK
RCV_SYN_ACK = "rcv_syn_ack"  # SYN+ACK acknowledging our SYN
RCV_ACK_OF_SYN = "rcv_ack_of_syn"  # an ACK covering our SYN
RCV_FIN = "rcv_fin"  # FIN, in order
RCV_ACK_OF_FIN = "rcv_ack_of_fin"  # an ACK covering our FIN
RCV_RST = "rcv_rst"  # RST that passed RFC 5961's exact-match test
RCV_NEW_SYN = "rcv_new_syn"  # SYN beyond the old incarnation's sequence space (TIME_WAIT reuse)
RCV_ICMP_UNREACHABLE = "rcv_icmp_unreachable"  # port/protocol unreachable for our SYN
# Timers:
TIMEOUT_2MSL = "timeout_2msl"
FIN_TIMEOUT = "fin_timeout"  # an orphan's peer never sent its FIN (config.fin_timeout)
GIVE_UP = "give_up"  # retransmission or probe limit reached

# (state, input) -> (new state, what happens on the way; docs only)
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (CLOSED, OPEN_PASSIVE): (LISTEN, "listener created"),
    (CLOSED, OPEN_ACTIVE): (SYN_SENT, "send SYN <mss, wscale>"),
    (LISTEN, RCV_SYN): (SYN_RECEIVED, "new TCB for the peer; send SYN,ACK"),
    (LISTEN, CLOSE): (CLOSED, "half-open and unaccepted connections are aborted"),
    (SYN_SENT, RCV_SYN_ACK): (ESTABLISHED, "send ACK; event ConnectionEstablished"),
    (SYN_SENT, RCV_SYN): (SYN_RECEIVED, "simultaneous open: send SYN,ACK"),
    (SYN_SENT, RCV_RST): (CLOSED, "RST acking our SYN: ConnectionClosed('refused')"),
    (SYN_SENT, RCV_ICMP_UNREACHABLE): (CLOSED, "ConnectionClosed('unreachable')"),
    (SYN_SENT, CLOSE): (CLOSED, "nothing sent but the SYN; ConnectionClosed('closed')"),
    (SYN_SENT, ABORT): (CLOSED, "ConnectionClosed('aborted')"),
    (SYN_SENT, GIVE_UP): (CLOSED, "SYN retries exhausted: ConnectionClosed('timeout')"),
    (SYN_RECEIVED, RCV_ACK_OF_SYN): (
        ESTABLISHED,
        "passive: moves to the accept queue; event ConnectionEstablished",
    ),
    (SYN_RECEIVED, CLOSE): (FIN_WAIT_1, "FIN sent once our SYN is acknowledged"),
    (SYN_RECEIVED, RCV_RST): (CLOSED, "passive: forgotten silently; active: 'refused'"),
    (SYN_RECEIVED, ABORT): (CLOSED, "send RST"),
    (SYN_RECEIVED, GIVE_UP): (CLOSED, "SYN,ACK retries exhausted"),
    (ESTABLISHED, RCV_FIN): (CLOSE_WAIT, "ACK the FIN; event EndOfStream after the data"),
    (ESTABLISHED, CLOSE): (FIN_WAIT_1, "FIN sent after the queued data"),
    (ESTABLISHED, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (ESTABLISHED, ABORT): (CLOSED, "send RST; ConnectionClosed('aborted')"),
    (ESTABLISHED, GIVE_UP): (CLOSED, "send RST; ConnectionClosed('timeout')"),
    (FIN_WAIT_1, RCV_ACK_OF_FIN): (FIN_WAIT_2, "our FIN is acknowledged"),
    (FIN_WAIT_1, RCV_FIN): (CLOSING, "simultaneous close: ACK the FIN"),
    (FIN_WAIT_1, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (FIN_WAIT_1, ABORT): (CLOSED, "send RST"),
    (FIN_WAIT_1, GIVE_UP): (CLOSED, "send RST; ConnectionClosed('timeout')"),
    (FIN_WAIT_2, RCV_FIN): (TIME_WAIT, "ACK the FIN; 2*MSL timer; app: ConnectionClosed('closed')"),
    (FIN_WAIT_2, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (FIN_WAIT_2, FIN_TIMEOUT): (CLOSED, "the app is gone and the peer's FIN never came"),
    (FIN_WAIT_2, ABORT): (CLOSED, "send RST"),
    (CLOSE_WAIT, CLOSE): (LAST_ACK, "FIN sent after the queued data"),
    (CLOSE_WAIT, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (CLOSE_WAIT, ABORT): (CLOSED, "send RST"),
    (CLOSE_WAIT, GIVE_UP): (CLOSED, "send RST; ConnectionClosed('timeout')"),
    (CLOSING, RCV_ACK_OF_FIN): (TIME_WAIT, "2*MSL timer; app: ConnectionClosed('closed')"),
    (CLOSING, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (CLOSING, ABORT): (CLOSED, "send RST"),
    (CLOSING, GIVE_UP): (CLOSED, "ConnectionClosed('timeout')"),
    (LAST_ACK, RCV_ACK_OF_FIN): (CLOSED, "ConnectionClosed('closed')"),
    (LAST_ACK, RCV_RST): (CLOSED, "ConnectionClosed('reset')"),
    (LAST_ACK, ABORT): (CLOSED, "send RST"),
    (LAST_ACK, GIVE_UP): (CLOSED, "ConnectionClosed('timeout')"),
    (TIME_WAIT, RCV_FIN): (TIME_WAIT, "retransmitted FIN: ACK it, restart the 2*MSL timer"),
    (TIME_WAIT, TIMEOUT_2MSL): (CLOSED, "the 4-tuple is free again"),
    (TIME_WAIT, RCV_NEW_SYN): (CLOSED, "SYN above RCV.NXT: the listener takes it (RFC 9293)"),
    (TIME_WAIT, RCV_RST): (CLOSED, "exact RST (unless time_wait_ignores_rst, RFC 1337)"),
    (TIME_WAIT, ABORT): (CLOSED, "nothing sent"),
}

# States in which both sides' initial sequence numbers are known (RFC 9293's "synchronized").
SYNCHRONIZED = frozenset(
    (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT)
)
# States in which data that arrives is still taken (the peer has not sent its FIN).
RECEIVING = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))
# States in which the app may still queue data to send.
SENDING = frozenset((SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT))


class TransitionError(Exception):
    """A (state, input) pair with no row: a bug in the stack, never caused by a peer."""


def transition(state: str, event: str) -> str:
    """The state after `event` in `state`."""
    row = TRANSITIONS.get((state, event))
    if row is None:
        raise TransitionError(f"tcp: no transition from {state} on {event}")
    return row[0]


def describe() -> str:
    """The table as Markdown: one row per transition, grouped by state in RFC order."""
    lines = [
        "# TCP states",
        "",
        "Generated from `src/summon/net/tcp/state.py` "
        "(`python3 -W ignore -m summon.net.tcp.state > docs/tcp-states.md`); do not edit by hand.",
        "Inputs that change no state (data, duplicate ACKs, segments refused by the RFC 5961",
        "checks, window probes) are not rows.",
        "",
        "| state | input | next state | what happens |",
        "| --- | --- | --- | --- |",
    ]
    order = {state: i for i, state in enumerate(STATES)}
    for (state, event), (new, note) in sorted(
        TRANSITIONS.items(), key=lambda item: order[item[0][0]]
    ):
        lines.append(f"| {state} | {event} | {new} | {note} |")
    lines += ["", "```mermaid", "stateDiagram-v2"]
    for (state, event), (new, _) in TRANSITIONS.items():
        lines.append(f"    {state} --> {new}: {event}")
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(), end="")
