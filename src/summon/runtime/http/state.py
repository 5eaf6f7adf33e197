"""THE state machine of one server connection: every state change is a row of TRANSITIONS.

Rule (after h11's _state.py): anything that changes `HTTPConnection.state` goes through
`transition` with an input named here; no other code assigns a state. The docs
(docs/http-states.md) are generated from this table:
`python3 -W ignore -m summon.runtime.http.state > docs/http-states.md`.

h11 keeps the HTTP/1.1 framing states of each side (IDLE, SEND_BODY, DONE...). This table is
the server's view above it, the one that decides which timer runs and when the socket
closes: a request arrives (HEAD, BODY), the app answers (WAIT, SEND), and the connection is
kept alive (back to IDLE) or closed.
"""

from __future__ import annotations

IDLE = "IDLE"  # between requests: a new connection, or one kept alive
HEAD = "HEAD"  # part of a request head has arrived
BODY = "BODY"  # the head is in; its body is arriving; no response yet
WAIT = "WAIT"  # the whole request is in; the app has not started its response
SEND = "SEND"  # the response is under way; the whole request is in
SEND_BODY = "SEND_BODY"  # the response started before the request body was all in
UPGRADED = "UPGRADED"  # switched to WebSocket (101 sent): HTTP is over on this connection
CLOSED = "CLOSED"  # nothing more is read; the socket closes once the bytes are sent
STATES = (IDLE, HEAD, BODY, WAIT, SEND, SEND_BODY, UPGRADED, CLOSED)

# Inputs. From the client:
DATA = "data"  # the first bytes of a request
GOT_HEAD = "head"  # a request head, within the limits
GOT_END = "end"  # the end of the request body
EOF = "eof"  # the client closed its side
# From the app (through the bridges):
START = "start_response"
SWITCH = "switch_protocols"  # an ASGI app accepted a WebSocket: 101 Switching Protocols
END_KEEP = "end_response_keep_alive"  # response done; both sides may go on
END_CLOSE = "end_response_close"  # response done; either side asked to close
ABORT = "abort"  # the response cannot be finished (the app failed mid-body, a write failed)
# From the server:
REJECT = "reject"  # an error response (400, 408, 413, 431, 505) is sent, then close
TIMEOUT = "timeout"  # the state's timer ran out (see the timers in protocol.py)
SHUTDOWN = "shutdown"  # the server is stopping

# (state, input) -> (new state, what happens on the way; docs only)
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (IDLE, DATA): (HEAD, "the head timer starts at the first byte"),
    (IDLE, EOF): (CLOSED, "the client left between requests"),
    (IDLE, TIMEOUT): (CLOSED, "kept alive too long without a request: closed silently"),
    (IDLE, SHUTDOWN): (CLOSED, "nothing under way: closed at once"),
    (IDLE, ABORT): (CLOSED, "the last response could not be written"),
    (HEAD, GOT_HEAD): (BODY, "the read timer runs while the body arrives"),
    (HEAD, REJECT): (CLOSED, "malformed (400), too large (431), not HTTP/1 (505)"),
    (HEAD, TIMEOUT): (CLOSED, "the head took too long: 408"),
    (HEAD, EOF): (CLOSED, "the client left mid-head"),
    (HEAD, SHUTDOWN): (HEAD, "the request may still complete; the response says close"),
    (HEAD, ABORT): (CLOSED, "the last response could not be written"),
    (BODY, GOT_END): (WAIT, "the app has the whole request"),
    (BODY, START): (SEND_BODY, "the app answers before reading the whole body"),
    (BODY, REJECT): (CLOSED, "body too large (413) or malformed (400)"),
    (BODY, TIMEOUT): (CLOSED, "the client went silent mid-body: 408"),
    (BODY, EOF): (CLOSED, "the client left mid-body: the app sees a disconnect"),
    (BODY, ABORT): (CLOSED, "the app failed"),
    (BODY, SHUTDOWN): (BODY, "the request may still complete; the response says close"),
    (WAIT, START): (SEND, "the response head is sent"),
    (WAIT, EOF): (WAIT, "the client closed its side; the response is still tried"),
    (WAIT, ABORT): (CLOSED, "the app failed without an answer the client can read"),
    (WAIT, SHUTDOWN): (WAIT, "the response says close"),
    (WAIT, SWITCH): (UPGRADED, "101 sent: the WebSocket session reads and writes from here"),
    (UPGRADED, END_CLOSE): (CLOSED, "the WebSocket closed (close frames exchanged, or lost)"),
    (UPGRADED, ABORT): (CLOSED, "the WebSocket could not be written to"),
    (UPGRADED, EOF): (UPGRADED, "the client left: the session tells the app (1006)"),
    (UPGRADED, SHUTDOWN): (UPGRADED, "the session closes with 1001 (going away)"),
    (SEND, END_KEEP): (IDLE, "next request: the keep-alive timer starts"),
    (SEND, END_CLOSE): (CLOSED, "Connection: close, HTTP/1.0, or a client that left"),
    (SEND, EOF): (SEND, "the client closed its side; the response is still sent"),
    (SEND, ABORT): (CLOSED, "the body stops short: the client sees a truncated response"),
    (SEND, SHUTDOWN): (SEND, "closed after this response"),
    (SEND_BODY, GOT_END): (SEND, "the rest of the body arrived"),
    (SEND_BODY, END_CLOSE): (CLOSED, "unread body left: close (after a lingering read)"),
    (SEND_BODY, EOF): (CLOSED, "the client left mid-body"),
    (SEND_BODY, TIMEOUT): (CLOSED, "the client went silent mid-body"),
    (SEND_BODY, ABORT): (CLOSED, "the body stops short"),
    (SEND_BODY, REJECT): (CLOSED, "the body grew too large after the response started"),
    (SEND_BODY, SHUTDOWN): (SEND_BODY, "closed after this response"),
}

# States in which part of a request is being read: their timers guard against slow clients.
READING = frozenset((HEAD, BODY, SEND_BODY))


class TransitionError(Exception):
    """A (state, input) pair with no row: a bug in the server, never caused by a client."""


def transition(state: str, event: str) -> str:
    """The state after `event` in `state`."""
    row = TRANSITIONS.get((state, event))
    if row is None:
        raise TransitionError(f"http: no transition from {state} on {event}")
    return row[0]


def describe() -> str:
    """The table as Markdown: one row per transition, grouped by state."""
    lines = [
        "# HTTP server connection states",
        "",
        "Generated from `src/summon/runtime/http/state.py` (`python3 -W ignore -m "
        "summon.runtime.http.state > docs/http-states.md`); do not edit by hand.",
        "h11 tracks each side's HTTP/1.1 framing; these are the server's states above it,",
        "which choose the running timer and when the connection closes (docs/http.md).",
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
        if new != state:
            lines.append(f"    {state} --> {new}: {event}")
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(), end="")
