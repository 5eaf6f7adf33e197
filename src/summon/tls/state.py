"""THE TLS session state machine: every state change of a Session is a row of TRANSITIONS.

Rule (after h11's _state.py, like summon.net.tcp.state): anything that changes `Session.state`
goes through `transition` with an input named here; no other code assigns a state. The docs
(docs/tls-states.md) are generated from this table:
`python3 -W ignore -m summon.tls.state > docs/tls-states.md`.

The backends (OpenSSL through SSLObject, or tlslite-ng) keep their own handshake states
inside; this table is the part summon promises: when data may flow, when the session is over,
and that an error ends it for good.
"""

from __future__ import annotations

START = "START"  # nothing exchanged; a server waits for a whole ClientHello (SNI picks the cert)
HANDSHAKING = "HANDSHAKING"  # the backend runs the handshake
OPEN = "OPEN"  # handshake done and the peer verified: data flows both ways
CLOSING = "CLOSING"  # we sent close_notify; the peer may still send data
CLOSED = "CLOSED"  # over; nothing more is read or sent
FAILED = "FAILED"  # an error was raised; only the alert in data_to_send() goes out
STATES = (START, HANDSHAKING, OPEN, CLOSING, CLOSED, FAILED)

# Inputs. App calls:
CONNECT = "connect"  # client: start(); the ClientHello is queued
CLOSE = "close"  # close(): send close_notify (or give up a handshake not yet done)
# From the peer:
RCV_CLIENT_HELLO = "rcv_client_hello"  # server: a whole ClientHello, version and SNI peeked
HANDSHAKE_DONE = "handshake_done"  # the backend finished and the peer's chain passed
RCV_CLOSE_NOTIFY = "rcv_close_notify"
RCV_EOF = "rcv_eof"  # the transport ended at a record boundary (receive_data(b""))
# Either:
FAIL = "fail"  # a typed error was raised: bad record, bad certificate, timeout...

# (state, input) -> (new state, what happens on the way; docs only)
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (START, CONNECT): (HANDSHAKING, "client: ClientHello queued (SNI, ALPN, versions)"),
    (START, RCV_CLIENT_HELLO): (
        HANDSHAKING,
        "server: version below 1.2 refused here; certificate picked by SNI; backend started",
    ),
    (START, CLOSE): (CLOSED, "nothing was sent"),
    (START, FAIL): (FAILED, "bad record or a refused version: alert queued"),
    (HANDSHAKING, HANDSHAKE_DONE): (OPEN, "event HandshakeComplete"),
    (HANDSHAKING, CLOSE): (CLOSED, "the handshake is abandoned; the transport closes"),
    (HANDSHAKING, FAIL): (FAILED, "HandshakeFailure, BadCertificate, ProtocolViolation..."),
    (OPEN, CLOSE): (CLOSING, "close_notify queued after the data"),
    (OPEN, RCV_CLOSE_NOTIFY): (CLOSED, "event CloseNotify; our close_notify queued in reply"),
    (OPEN, RCV_EOF): (CLOSED, "event TruncatedClose: no close_notify came"),
    (OPEN, FAIL): (
        FAILED,
        "ProtocolViolation (bad record mac, unexpected message...): alert queued",
    ),
    (CLOSING, RCV_CLOSE_NOTIFY): (CLOSED, "event CloseNotify"),
    (CLOSING, RCV_EOF): (CLOSED, "event TruncatedClose"),
    (CLOSING, CLOSE): (CLOSING, "already sent: nothing more"),
    (CLOSING, FAIL): (FAILED, "the peer broke the protocol while we were closing"),
    (CLOSED, CLOSE): (CLOSED, "nothing more"),
}

# States in which bytes from the peer are still taken.
RECEIVING = frozenset((START, HANDSHAKING, OPEN, CLOSING))
# States in which the app may send.
SENDING = frozenset((OPEN,))


class TransitionError(Exception):
    """A (state, input) pair with no row: a bug in summon.tls, never caused by a peer."""


def transition(state: str, event: str) -> str:
    """The state after `event` in `state`."""
    row = TRANSITIONS.get((state, event))
    if row is None:
        raise TransitionError(f"tls: no transition from {state} on {event}")
    return row[0]


def describe() -> str:
    """The table as Markdown: one row per transition, grouped by state."""
    lines = [
        "# TLS session states",
        "",
        "Generated from `src/summon/tls/state.py` "
        "(`python3 -W ignore -m summon.tls.state > docs/tls-states.md`); do not edit by hand.",
        "The backend's own handshake states (OpenSSL's, tlslite-ng's) live inside HANDSHAKING.",
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
