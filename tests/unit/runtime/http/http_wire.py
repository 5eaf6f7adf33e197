"""Test helpers for the HTTP server: a fake clock, a real HTTP/1.1 client parser (h11)
that reads what the server sent, so the tests judge bytes by a peer, not by our own code, and
requests made by hand (a GET, a POST, a chunked POST) for the connection's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h11

from summon.runtime.http.protocol import (
    NEED_DATA,
    Body,
    Disconnected,
    EndOfRequest,
    HTTPConnection,
    Rejected,
    Request,
)
from summon.runtime.http.settings import Settings

if TYPE_CHECKING:
    from summon.runtime.http.protocol import Event


GET = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def chunked(*parts: bytes) -> bytes:
    out = b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    for part in parts:
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def parse_responses(data: bytes, *, head_methods: tuple[bool, ...] = ()) -> list[Response]:
    """Every complete response in `data`, in order, read by an h11 client.

    `head_methods[i]` says the i-th request was a HEAD (its response then has no body).
    Raises if the bytes are not valid HTTP/1.1 responses.
    """
    client = h11.Connection(h11.CLIENT)
    out: list[Response] = []
    i = 0
    if not data:
        return out
    client.receive_data(data)
    while True:
        method = b"HEAD" if i < len(head_methods) and head_methods[i] else b"GET"
        client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"t")]))
        client.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body = b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                return out
            if type(event) is h11.InformationalResponse:
                continue
            if type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                break
        assert head is not None
        out.append(
            Response(
                head.status_code,
                {k: v for k, v in head.headers},
                body,
                list(head.headers),
            )
        )
        i += 1
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            return out
        client.start_next_cycle()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def events(conn: HTTPConnection, now: float) -> list[Event]:
    """Every event the connection has for now, up to NEED_DATA (excluded)."""
    out: list[Event] = []
    for _ in range(10_000):
        event = conn.next_event(now)
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, (Disconnected, Rejected)):
            return out
    raise AssertionError("the connection never asked for data")


def serve_all(
    data: bytes, settings: Settings | None = None, body: bytes = b"ok", chunks: int = 1
) -> tuple[bytes, list[object], HTTPConnection]:
    """Feed `data` (split into `chunks` pieces) and answer every request with `body`."""
    conn = HTTPConnection(settings or Settings(), 0.0)
    out = b""
    seen: list[object] = []
    step = max(1, -(-len(data) // chunks))
    pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    for piece in pieces:
        conn.receive_data(piece, 0.0)
        while True:
            event = conn.next_event(0.0)
            if event is NEED_DATA:
                break
            seen.append(_describe(event))
            if type(event) is EndOfRequest:
                conn.respond(200, [(b"content-type", b"text/plain")], body, 0.0)
            if isinstance(event, (Disconnected, Rejected)):
                break
        out += conn.data_to_send()
    return out, seen, conn


def _describe(event: Event) -> object:
    if isinstance(event, Request):
        return ("request", event.method, event.target)
    if isinstance(event, Body):
        return ("body", event.data)
    if isinstance(event, EndOfRequest):
        return ("end",)
    if isinstance(event, Rejected):
        return ("rejected", event.status)
    return ("disconnected", event.reason)  # type: ignore[union-attr]
