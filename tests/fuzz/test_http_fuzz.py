"""Fuzzing the HTTP server's input side: any bytes, and mutations of valid requests, fed whole
or in pieces through the served path (respond_wsgi, respond_asgi): the server answers or
closes, never raises, and what it sends is HTTP that a real client parser (h11) reads. The
settings parser: a value parses, or is a ValueError naming its variable."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.runtime.http.exchange import respond_asgi, respond_wsgi
from summon.runtime.http.settings import VARIABLES, Settings

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Settings(max_header=512, max_body=256)
ALLOWED = {200, 400, 408, 413, 431, 500, 501, 505}

SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "grow", "overwrite"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "grow":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body or b"-"]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body or b"-"})


def statuses(out: bytes) -> list[int]:
    """The statuses of the responses in `out`, read by an h11 client; fails if not HTTP."""
    found: list[int] = []
    if not out:
        return found  # (b"" would tell h11 the connection closed)
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    client.receive_data(out)
    while True:
        # The method does not matter to the parser, except HEAD: guess from what came back.
        client.send(h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"t")]))
        client.send(h11.EndOfMessage())
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                return found
            if type(event) is h11.Response:
                found.append(event.status_code)
            if type(event) is h11.EndOfMessage:
                break
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            return found
        client.start_next_cycle()


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    # b"" is the end of the stream to receive_data: an empty input stays one (empty) chunk.
    return [data[a:b] for a, b in itertools.pairwise(points)] or [data]


@FUZZ
@given(st.one_of(mutated(), st.binary(max_size=600)))
def test_wsgi_path_answers_or_closes_never_raises(data: bytes) -> None:
    out = respond_wsgi(wsgi_app, data, settings=LIMITS)
    if b"HEAD" not in data:  # HEAD answers carry no body, which a GET-parser would misread
        assert set(statuses(out)) <= ALLOWED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_asgi_path_answers_or_closes_never_raises(data: bytes) -> None:
    out = respond_asgi(asgi_app, data, settings=LIMITS)
    if b"HEAD" not in data:
        assert set(statuses(out)) <= ALLOWED


@FUZZ
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=8))
def test_whole_or_in_pieces_the_connection_agrees(data: bytes, cuts: list[int]) -> None:
    from summon.runtime.http.protocol import NEED_DATA, HTTPConnection

    def run(chunks: list[bytes]) -> list[str]:
        conn = HTTPConnection(LIMITS, 0.0)
        seen: list[str] = []
        for chunk in chunks:
            conn.receive_data(chunk, 0.0)
            while not conn.closed:
                event = conn.next_event(0.0)
                if event is NEED_DATA:
                    break
                seen.append(type(event).__name__)
                if type(event).__name__ == "EndOfRequest":
                    conn.respond(200, [], b"", 0.0)
        # Runs of Body events are one; and a body refused for the sizes its chunks declare
        # (413 at once) may have had some of it seen first or not, as the bytes were cut.
        kept = [s for i, s in enumerate(seen) if not (s == "Body" and seen[i - 1 : i] == ["Body"])]
        return [
            s
            for i, s in enumerate(kept)
            if not (s == "Body" and kept[i + 1 : i + 2] == ["Rejected"])
        ]

    assert run(pieces(data, cuts)) == run([data])


@FUZZ
@given(st.sampled_from([v[0] for v in VARIABLES]), st.text(max_size=12))
def test_settings_parse_or_name_the_variable(name: str, value: str) -> None:
    try:
        Settings.from_environ({name: value})
    except ValueError as e:
        assert str(e).startswith(f"{name}: ") and "\n" not in str(e)
