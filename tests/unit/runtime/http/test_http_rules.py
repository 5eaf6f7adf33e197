"""What the server checks of responses beyond h11 (rules.py), through the WSGI and ASGI
bridges as apps reach it: response splitting, Content-Length that lies, 204 and 304, the
hop-by-hop headers an app may not set, header values with surrounding whitespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from http_wire import parse_responses

from summon.runtime.http.exchange import respond_wsgi
from summon.runtime.http.rules import ResponseError, check_length, response_head

StartResponse = Callable[..., Callable[[bytes], None]]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def wsgi(
    status: str, headers: list[tuple[str, str]], body: list[bytes], request: bytes = GET
) -> bytes:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response(status, headers)
        return body

    return respond_wsgi(app, request)


def test_a_reason_phrase_with_cr_lf_is_a_500_not_a_split_response() -> None:
    out = wsgi("200 OK\r\nSet-Cookie: session=attacker", [], [b"x"])
    [response] = parse_responses(out)
    assert response.status == 500
    assert b"set-cookie" not in response.headers and b"attacker" not in out
    with pytest.raises(ResponseError, match="control characters"):
        response_head(200, [], b"OK\r\nX-Injected: yes")


@pytest.mark.parametrize("status", [99, 600, 999])
def test_a_status_outside_200_to_599_is_refused(status: int) -> None:
    with pytest.raises(ResponseError, match="from 200 to 599"):
        response_head(status, [])


@pytest.mark.parametrize(
    ("declared", "body"), [("5", [b"hello world"]), ("100", [b"short"]), ("3", [])]
)
def test_a_whole_body_that_is_not_its_content_length_is_a_clean_500(
    declared: str, body: list[bytes]
) -> None:
    [response] = parse_responses(wsgi("200 OK", [("Content-Length", declared)], body))
    assert response.status == 500


def test_head_204_and_304_declare_the_length_of_what_they_leave_out() -> None:
    check_length(200, [(b"content-length", b"11")], 0, head_request=True)
    check_length(304, [(b"content-length", b"11")], 0, head_request=False)
    head = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
    out = wsgi("200 OK", [("Content-Length", "11")], [], request=head)
    [response] = parse_responses(out, head_methods=(True,))
    assert response.status == 200 and response.headers[b"content-length"] == b"11"


def test_no_content_length_on_a_204_and_none_made_up_for_a_304() -> None:
    [no_content] = parse_responses(wsgi("204 No Content", [], []))
    assert b"content-length" not in no_content.headers
    [not_modified] = parse_responses(wsgi("304 Not Modified", [], []))
    assert b"content-length" not in not_modified.headers
    kept = response_head(304, [(b"content-length", b"42")])  # the 200's length: the app's
    assert (b"content-length", b"42") in list(kept.headers)


def test_hop_by_hop_headers_from_the_app_are_dropped_and_close_is_honoured() -> None:
    headers = [("Keep-Alive", "timeout=99"), ("Upgrade", "h2c"), ("Trailer", "x"),
               ("Connection", "close"), ("X-Ok", "1")]  # fmt: skip
    out = wsgi("200 OK", headers, [b"x"], request=GET + GET)
    responses = parse_responses(out)
    assert len(responses) == 1  # closed after the first: the second request is not read
    got = responses[0].headers
    assert got[b"connection"] == b"close" and got[b"x-ok"] == b"1"
    assert not {b"keep-alive", b"upgrade", b"trailer"} & set(got)


def test_a_header_value_with_surrounding_whitespace_is_sent_trimmed() -> None:
    """Django sends cookies as ' csrftoken=...; Path=/' (http.cookies' output with no
    header name): whitespace around a value is not part of it, and h11 refused it (500)."""
    [response] = parse_responses(wsgi("200 OK", [("Set-Cookie", " a=b; Path=/\t")], [b"x"]))
    assert response.status == 200 and response.headers[b"set-cookie"] == b"a=b; Path=/"


def test_an_asgi_body_that_is_not_its_content_length_is_a_clean_500() -> None:
    from summon.runtime.http.exchange import respond_asgi

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"hello world"})

    out = respond_asgi(app, GET)
    [response] = parse_responses(out)
    assert response.status == 500

