"""The sans-IO connection: keep-alive, pipelining, chunked bodies, HEAD and 100-continue, the
app's side of a response, shutdown and the client leaving. Limits, malformed requests and
timers are in test_http_protocol_limits.py.

Responses are read back by an h11 client (http_wire.parse_responses): a real peer's parser
decides whether what the server sent is HTTP.
"""

from __future__ import annotations

import pytest
from http_wire import GET, chunked, events, parse_responses, post, serve_all

from summon.runtime.http import state as st
from summon.runtime.http.protocol import (
    NEED_DATA,
    Body,
    Disconnected,
    EndOfRequest,
    HTTPConnection,
    Request,
    ResponseError,
    http_date,
    unquote,
)
from summon.runtime.http.settings import Settings

# --- keep-alive and pipelining -------------------------------------------------------------


def test_keep_alive_serves_requests_one_after_another() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    for i in range(3):
        conn.receive_data(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i, float(i))
        got = events(conn, float(i))
        assert [type(e) for e in got] == [Request, EndOfRequest]
        assert got[0].target == b"/%d" % i  # type: ignore[union-attr]
        conn.respond(200, [], b"r%d" % i, float(i))
        [response] = parse_responses(conn.data_to_send())
        assert (response.status, response.body) == (200, b"r%d" % i)
        assert conn.state == st.IDLE and not conn.closed


def test_pipelined_requests_are_answered_in_order() -> None:
    data = GET + post(b"xyz") + b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n"
    out, seen, conn = serve_all(data)
    assert seen == [
        ("request", b"GET", b"/a"),
        ("end",),
        ("request", b"POST", b"/p"),
        ("body", b"xyz"),
        ("end",),
        ("request", b"GET", b"/last"),
        ("end",),
    ]
    assert [r.status for r in parse_responses(out)] == [200, 200, 200]
    assert conn.state == st.IDLE


@pytest.mark.parametrize("chunks", [1, 3, 200], ids=["one-piece", "three", "bytewise"])
def test_empty_lines_before_a_request_are_ignored(chunks: int) -> None:
    """RFC 9112 2.2: a client's stray CRLF after a POST body (or before its first request)
    got 400 and a closed connection; such empty lines are skipped now."""
    data = b"\r\n" + GET + post(b"xyz") + b"\r\n" + b"\r\n\nGET /last HTTP/1.1\r\nHost: t\r\n\r\n"
    out, seen, conn = serve_all(data, chunks=chunks)
    assert [r.status for r in parse_responses(out)] == [200, 200, 200]
    assert seen[-2:] == [("request", b"GET", b"/last"), ("end",)]
    assert conn.state == st.IDLE and not conn.closed


def test_requests_pipelined_before_the_client_half_closed_are_all_answered() -> None:
    """`printf 'GET /a ...GET /b ...' | nc -N`: the FIN comes with the requests; the client
    still reads. Both are answered, then the connection closes."""
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET + b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n" + b"GET /c HTT", 0.0)
    conn.receive_data(b"", 0.0)  # the FIN, after a third request cut short
    targets = []
    for _ in range(3):
        got = events(conn, 0.0)
        if not got or type(got[-1]) is not EndOfRequest:
            break
        targets.append(got[0].target)  # type: ignore[union-attr]
        conn.respond(200, [], b"x", 0.0)
    assert targets == [b"/a", b"/b"]
    assert [r.status for r in parse_responses(conn.data_to_send())] == [200, 200]
    assert conn.closed


@pytest.mark.parametrize("chunks", [1, 7, 10_000])
def test_fed_whole_or_a_byte_at_a_time_the_events_agree(chunks: int) -> None:
    data = GET + chunked(b"hello ", b"world") + post(b"abc")
    whole, seen_whole, _ = serve_all(data)
    split, seen_split, _ = serve_all(data, chunks=chunks)

    def merged(seen: list[object]) -> list[object]:
        out: list[object] = []
        for item in seen:
            if out and item[0] == "body" and out[-1][0] == "body":  # type: ignore[index]
                out[-1] = ("body", out[-1][1] + item[1])  # type: ignore[index]
            else:
                out.append(item)
        return out

    assert merged(seen_split) == merged(seen_whole)
    assert [r.body for r in parse_responses(split)] == [r.body for r in parse_responses(whole)]


def test_http_1_0_closes_after_the_response() -> None:
    out, _, conn = serve_all(b"GET / HTTP/1.0\r\n\r\n")
    assert conn.closed and parse_responses(out)[0].status == 200


def test_connection_close_from_the_client_is_honoured() -> None:
    out, _, conn = serve_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    [response] = parse_responses(out)
    assert response.headers[b"connection"] == b"close" and conn.closed


# --- chunked both ways ---------------------------------------------------------------------


def test_a_chunked_request_body_arrives_decoded() -> None:
    _, seen, _ = serve_all(chunked(b"ab", b"cd"))
    body = b"".join(item[1] for item in seen if item[0] == "body")  # type: ignore[index]
    assert body == b"abcd"


def test_a_response_without_length_is_chunked_for_http_1_1() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    conn.start_response(200, [], 0.0)
    conn.send_body(b"part one, ")
    conn.send_body(b"part two")
    conn.end_response(0.0)
    out = conn.data_to_send()
    assert b"transfer-encoding: chunked" in out.lower()
    [response] = parse_responses(out)
    assert response.body == b"part one, part two"
    assert conn.state == st.IDLE  # chunked framing keeps the connection


def test_a_response_without_length_to_http_1_0_is_delimited_by_close() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"GET / HTTP/1.0\r\n\r\n", 0.0)
    events(conn, 0.0)
    conn.start_response(200, [], 0.0)
    conn.send_body(b"to the end")
    conn.end_response(0.0)
    out = conn.data_to_send()
    assert b"chunked" not in out and out.endswith(b"to the end") and conn.closed


# --- HEAD, 100-continue ----------------------------------------------------------------------


def test_head_gets_the_headers_of_get_without_the_body() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n", 0.0)
    events(conn, 0.0)
    exchange = conn.respond(200, [(b"content-type", b"text/plain")], b"twelve bytes", 0.0)
    out = conn.data_to_send()
    assert not out.endswith(b"twelve bytes")
    [response] = parse_responses(out, head_methods=(True,))
    assert response.headers[b"content-length"] == b"12" and response.body == b""
    assert exchange.sent == 0 and conn.state == st.IDLE


def test_100_continue_is_sent_when_the_body_is_wanted_and_only_then() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    head = b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    conn.receive_data(head, 0.0)
    assert [type(e) for e in events(conn, 0.0)] == [Request]
    assert conn.data_to_send() == b""  # nothing until the app asks for the body
    conn.send_continue()
    assert conn.data_to_send().startswith(b"HTTP/1.1 100 ")
    conn.send_continue()
    assert conn.data_to_send() == b""  # once
    conn.receive_data(b"abc", 0.0)
    assert [type(e) for e in events(conn, 0.0)] == [Body, EndOfRequest]


def test_no_100_continue_without_expect() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n", 0.0)
    events(conn, 0.0)
    conn.send_continue()
    assert conn.data_to_send() == b""


def test_answering_without_reading_a_body_not_yet_arrived_closes_after() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab", 0.0)
    assert [type(e) for e in events(conn, 0.0)] == [Request, Body]
    conn.respond(403, [], b"no", 0.0)
    [response] = parse_responses(conn.data_to_send())
    assert response.headers[b"connection"] == b"close"
    assert conn.closed and conn.linger


def test_answering_a_get_without_reading_its_empty_body_keeps_the_connection() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET + GET, 0.0)
    assert isinstance(conn.next_event(0.0), Request)  # the app never asks for the body
    conn.respond(200, [], b"one", 0.0)
    assert conn.state == st.HEAD  # the pipelined request is next
    assert [type(e) for e in events(conn, 0.0)] == [Request, EndOfRequest]
    conn.respond(200, [], b"two", 0.0)
    assert [r.body for r in parse_responses(conn.data_to_send())] == [b"one", b"two"]


def test_a_body_that_arrived_before_the_answer_is_still_readable() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(post(b"early"), 0.0)
    assert isinstance(conn.next_event(0.0), Request)
    conn.start_response(200, [], 0.0)
    assert conn.state == st.SEND  # the whole body was in: no Connection: close
    assert [type(e) for e in events(conn, 0.0)] == [Body, EndOfRequest]


# --- the app's side ------------------------------------------------------------------------


def test_date_and_server_are_added_unless_the_app_gives_them() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET + GET, 0.0)
    events(conn, 0.0)
    conn.respond(200, [], b"", 0.0)
    events(conn, 0.0)
    conn.respond(200, [(b"Server", b"mine"), (b"Date", b"then")], b"", 0.0)
    first, second = parse_responses(conn.data_to_send())
    assert first.headers[b"server"] == b"summon" and first.headers[b"date"].endswith(b" GMT")
    assert (second.headers[b"server"], second.headers[b"date"]) == (b"mine", b"then")


def test_the_apps_transfer_encoding_is_ignored() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    conn.start_response(200, [(b"Transfer-Encoding", b"gzip")], 0.0)
    conn.send_body(b"x")
    conn.end_response(0.0)
    assert parse_responses(conn.data_to_send())[0].body == b"x"


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (200, [(b"bad name", b"v")]),
        (200, [(b"x", b"bad\r\nvalue")]),
        (99, []),
        ("200", []),
    ],
)
def test_an_invalid_head_is_refused_with_nothing_sent(status: object, headers: object) -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    with pytest.raises(ResponseError):
        conn.start_response(status, headers, 0.0)  # type: ignore[arg-type]
    assert conn.data_to_send() == b"" and conn.state == st.WAIT
    conn.respond(500, [], b"fine", 0.0)  # a 500 can still go out
    assert parse_responses(conn.data_to_send())[0].status == 500


def test_a_body_longer_than_its_content_length_aborts() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    conn.start_response(200, [(b"content-length", b"2")], 0.0)
    with pytest.raises(ResponseError, match="does not fit"):
        conn.send_body(b"three")
    assert conn.closed


def test_a_body_shorter_than_its_content_length_aborts_at_the_end() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    conn.start_response(200, [(b"content-length", b"5")], 0.0)
    conn.send_body(b"ab")
    with pytest.raises(ResponseError, match="does not fit"):
        conn.end_response(0.0)
    assert conn.closed


def test_the_exchange_record_has_what_the_access_log_needs() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"POST /q?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", 10.0)
    events(conn, 10.0)
    exchange = conn.respond(201, [], b"created", 10.25)
    assert (exchange.method, exchange.target, exchange.http_version) == (b"POST", b"/q?x=1", b"1.1")
    assert (exchange.status, exchange.sent, exchange.duration) == (201, 7, 0.25)


# --- shutdown and the client leaving -------------------------------------------------------


def test_shutdown_closes_an_idle_connection_at_once() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.shutdown(0.0)
    assert conn.closed and conn.data_to_send() == b""


def test_shutdown_lets_the_request_under_way_finish_then_closes() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET + GET, 0.0)
    events(conn, 0.0)
    conn.shutdown(0.0)
    assert conn.state == st.WAIT
    conn.respond(200, [], b"last", 0.0)
    [response] = parse_responses(conn.data_to_send())
    assert response.body == b"last" and response.headers[b"connection"] == b"close"
    assert conn.closed  # the pipelined second request is not served


def test_the_client_leaving_mid_body_is_a_disconnect() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab", 0.0)
    events(conn, 0.0)
    conn.receive_data(b"", 0.0)
    assert isinstance(conn.next_event(0.0), Disconnected) and conn.closed
    assert conn.data_to_send() == b""  # nobody to answer


def test_the_client_closing_its_side_after_the_request_still_gets_the_answer() -> None:
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    conn.receive_data(b"", 0.0)
    assert isinstance(conn.next_event(0.0), Disconnected)
    assert conn.state == st.WAIT
    conn.respond(200, [], b"anyway", 0.0)
    assert parse_responses(conn.data_to_send())[0].body == b"anyway" and conn.closed


def test_a_pipelined_request_held_while_answering_is_bounded() -> None:
    conn = HTTPConnection(Settings(max_header=100), 0.0)
    conn.receive_data(GET, 0.0)
    events(conn, 0.0)
    assert conn.wants_data
    conn.receive_data(b"GET /next HTTP/1.1\r\n" * 10, 0.0)
    assert conn.next_event(0.0) is NEED_DATA
    assert not conn.wants_data  # the client must wait for this answer first


# --- helpers -------------------------------------------------------------------------------


def test_unquote_decodes_escapes_and_keeps_malformed_ones() -> None:
    assert unquote(b"/caf%C3%A9%20x") == "/café x".encode()
    assert unquote(b"/100%") == b"/100%"
    assert unquote(b"/%zz%4") == b"/%zz%4"


def test_http_date_is_imf_fixdate_in_english() -> None:
    assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_options_star_and_an_ipv6_host_are_served() -> None:
    _out, seen, _conn = serve_all(b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
    assert seen[0] == ("request", b"OPTIONS", b"*")


def test_an_absolute_form_target_names_the_host() -> None:
    """RFC 9112 3.2.2: the authority of an absolute-form target is the host, whatever Host
    says."""
    conn = HTTPConnection(Settings(), 0.0)
    conn.receive_data(b"GET http://real.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n", 0.0)
    request = conn.next_event(0.0)
    assert isinstance(request, Request)
    assert request.path == b"/p" and dict(request.headers)[b"host"] == b"real.example:81"
