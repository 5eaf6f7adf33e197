"""The bridge's HTTP/1.1: requests h11 reads as sent, responses read as h11 writes them, and a
fuzzer whose rule is "parse it, or raise BadResponse"."""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.targets.browser.inpage.http1 import (
    DONE,
    MAX_HEADER_BYTES,
    TRANSITIONS,
    BadRequest,
    BadResponse,
    Response,
    ResponseParser,
    encode_request,
)

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(data: bytes, head: bool = False, eof: bool = True, bytewise: bool = False) -> Response:
    parser = ResponseParser(head=head)
    if bytewise:
        for i in range(len(data)):
            parser.feed(data[i : i + 1])
    else:
        parser.feed(data)
    if eof and not parser.complete:
        parser.feed_eof()
    return parser.response


# --- requests -----------------------------------------------------------------------------------


def h11_reads(data: bytes) -> tuple[h11.Request, bytes]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    body = b""
    while True:
        event = server.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        else:
            raise AssertionError(f"unexpected {event!r}")


def test_a_get_is_read_by_h11_as_sent() -> None:
    data = encode_request(
        "GET", "/a/b?c=d%20e", [("Accept", "text/html"), ("X-Thing", " padded ")], b"", "ex:8080"
    )
    request, body = h11_reads(data)
    assert request.method == b"GET"
    assert request.target == b"/a/b?c=d%20e"
    headers = dict(request.headers)
    assert headers[b"host"] == b"ex:8080"
    assert headers[b"accept"] == b"text/html"
    assert headers[b"x-thing"] == b"padded"
    assert headers[b"connection"] == b"close"
    assert b"content-length" not in headers
    assert body == b""


def test_a_post_carries_its_body_and_length() -> None:
    request, body = h11_reads(
        encode_request("POST", "/form", [("Content-Type", "x/y")], b"a=1&b=2", "h")
    )
    assert dict(request.headers)[b"content-length"] == b"7"
    assert body == b"a=1&b=2"
    empty, _ = h11_reads(encode_request("POST", "/", [], b"", "h"))
    assert dict(empty.headers)[b"content-length"] == b"0"


def test_hop_by_hop_fields_of_the_fetch_are_not_passed_on() -> None:
    data = encode_request(
        "GET",
        "/",
        [
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Host", "evil"),
            ("Content-Length", "99"),
            ("Upgrade", "websocket"),
        ],
        b"",
        "good",
    )
    request, _ = h11_reads(data)
    assert request.headers == [(b"host", b"good"), (b"connection", b"close")]


@pytest.mark.parametrize(
    ("method", "target", "headers", "host", "why"),
    [
        ("GE T", "/", [], "h", "method"),
        ("", "/", [], "h", "method"),
        ("GET", "relative", [], "h", "target"),
        ("GET", "/a b", [], "h", "target"),
        ("GET", "/\r\nX: y", [], "h", "target"),
        ("GET", "/é", [], "h", "target"),
        ("GET", "/", [("X", "a\r\nInjected: 1")], "h", "control characters"),
        ("GET", "/", [("Bad Name", "v")], "h", "header name"),
        ("GET", "/", [], "", "host"),
        ("GET", "/", [], "a b", "host"),
    ],
)
def test_what_cannot_be_sent_is_refused_naming_the_part(
    method: str, target: str, headers: list[tuple[str, str]], host: str, why: str
) -> None:
    with pytest.raises(BadRequest, match=why):
        encode_request(method, target, headers, b"", host)


# --- responses ----------------------------------------------------------------------------------


def h11_writes(status: int, headers: list[tuple[str, str]], chunks: list[bytes]) -> bytes:
    """A response as h11 sends it to a client that asked GET (keeping the connection)."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    server.next_event()
    server.next_event()
    out = server.send(h11.Response(status_code=status, headers=headers)) or b""
    for chunk in chunks:
        out += server.send(h11.Data(data=chunk)) or b""
    return out + (server.send(h11.EndOfMessage()) or b"")


@pytest.mark.parametrize("bytewise", [False, True])
def test_responses_as_h11_writes_them(bytewise: bool) -> None:
    fixed = h11_writes(200, [("Content-Length", "11"), ("X-A", "1")], [b"hello", b" world"])
    r = parse(fixed, eof=False, bytewise=bytewise)
    assert (r.status, r.reason, r.body, r.header("x-a")) == (200, "", b"hello world", "1")
    chunked = h11_writes(404, [("Content-Type", "text/plain")], [b"not ", b"found", b"\n"])
    assert b"chunked" in chunked.lower()
    r = parse(chunked, eof=False, bytewise=bytewise)
    assert (r.status, r.body, r.header("content-type")) == (404, b"not found\n", "text/plain")


def test_a_response_is_complete_without_waiting_for_the_close() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokTRAILING GARBAGE")
    assert parser.complete
    assert parser.response.body == b"ok"
    parser.feed(b"more")  # after the response: ignored, the bridge closes the connection
    parser.feed_eof()
    assert parser.response.body == b"ok"


def test_a_body_without_framing_ends_with_the_stream() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\npart one, ")
    parser.feed(b"part two")
    assert not parser.complete
    parser.feed_eof()
    assert parser.response.body == b"part one, part two"


def test_chunk_extensions_and_trailers_are_read_and_dropped() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    )
    r = parse(data, eof=False)
    assert r.body == b"hello"
    assert r.header("x-t") is None


@pytest.mark.parametrize(
    ("data", "head", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", True, b""),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", False, b""),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", False, b""),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False, b""),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", False, b"abc"),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            False,
            b"x",
        ),
    ],
)
def test_responses_without_a_body_or_after_an_interim_one(
    data: bytes, head: bool, body: bytes
) -> None:
    parser = ResponseParser(head=head)
    parser.feed(data)
    assert parser.complete
    assert parser.response.body == body


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "before sending anything"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "middle of the response"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "three digits"),
        (b"HTTP/1.1 099 Low\r\n\r\n", "below 100"),
        (b"HTTP/1.1 101 Switching\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare LF"),
        (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "no colon"),
        (b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n", "not a token"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "control characters"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not a number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not hexadecimal"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "not supported"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", "head is over"),
    ],
)
def test_what_is_not_a_response_is_refused_naming_where(data: bytes, why: str) -> None:
    with pytest.raises(BadResponse, match=why):
        parse(data)


def test_every_transition_leads_somewhere_that_can_end() -> None:
    states = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())
    reaches_done = {DONE}
    changed = True
    while changed:
        changed = False
        for (state, _), target in TRANSITIONS.items():
            if target in reaches_done and state not in reaches_done:
                reaches_done.add(state)
                changed = True
    assert reaches_done == states


def _valid_responses() -> st.SearchStrategy[bytes]:
    bodies = st.binary(max_size=64)
    return st.one_of(
        bodies.map(lambda b: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)),
        bodies.map(
            lambda b: (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (len(b), b)
                if b
                else b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
        ),
        bodies.map(lambda b: b"HTTP/1.0 500 Oops\r\n\r\n" + b),
    )


def _mutated(data: bytes, at: int, byte: int, cut: int) -> bytes:
    data = bytearray(data)
    if data:
        data[at % len(data)] = byte
    return bytes(data[: len(data) - cut % (len(data) + 1)])


def _outcome(data: bytes, bytewise: bool) -> object:
    try:
        r = parse(data, bytewise=bytewise)
        return (r.status, r.reason, r.headers, r.body)
    except BadResponse:
        return BadResponse


@FUZZ
@given(st.one_of(st.binary(max_size=300), _valid_responses()))
def test_fuzz_any_bytes_parse_or_raise_bad_response(data: bytes) -> None:
    assert _outcome(data, bytewise=False) == _outcome(data, bytewise=True)


@FUZZ
@given(_valid_responses(), st.integers(0, 400), st.integers(0, 255), st.integers(0, 400))
def test_fuzz_mutated_responses_parse_or_raise_bad_response(
    data: bytes, at: int, byte: int, cut: int
) -> None:
    mutated = _mutated(data, at, byte, cut)
    assert _outcome(mutated, bytewise=False) == _outcome(mutated, bytewise=True)
