"""The WSGI bridge against PEP 3333, through the synchronous path (respond_wsgi): the
environ, start_response and write, exc_info, close(), bytes-only bodies, failures."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from io import BytesIO
from typing import Any

import pytest
from http_wire import parse_responses

from summon.runtime import hints
from summon.runtime.http.exchange import respond_wsgi
from summon.runtime.http.protocol import ClientDisconnected, Request
from summon.runtime.http.settings import Settings
from summon.runtime.http.wsgi import ResponseSink, build_environ, run_wsgi

StartResponse = Callable[..., Callable[[bytes], None]]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def environ_of(data: bytes) -> dict[str, Any]:
    """The environ an app sees for the request bytes `data`."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("204 No Content", [])
        return []

    out = respond_wsgi(app, data, client=("10.0.0.7", 5555), server=("10.0.0.1", 8080))
    assert parse_responses(out)[0].status == 204
    return seen


# --- the environ ---------------------------------------------------------------------------


def test_environ_has_the_keys_pep_3333_requires() -> None:
    env = environ_of(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\n\r\n")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("10.0.0.1", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.0.0.7", "5555")
    assert env["HTTP_HOST"] == "example.org"
    assert env["wsgi.version"] == (1, 0) and env["wsgi.url_scheme"] == "http"
    assert env["wsgi.errors"] is sys.stderr
    assert env["wsgi.multithread"] is False and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert all(isinstance(v, str) for k, v in env.items() if k.isupper() and k != "body")


def test_path_info_is_percent_decoded_bytes_as_latin_1() -> None:
    env = environ_of(b"GET /caf%C3%A9/%2Fx HTTP/1.1\r\nHost: t\r\n\r\n")
    assert env["PATH_INFO"] == "/caf\xc3\xa9//x"  # UTF-8 bytes, one character each
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café//x"


def test_the_body_is_a_stream_with_content_length_and_content_type() -> None:
    env = environ_of(
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    assert env["body"] == b'{"a":1}'
    assert (env["CONTENT_LENGTH"], env["CONTENT_TYPE"]) == ("7", "application/json")
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env


def test_a_chunked_body_gets_its_real_content_length() -> None:
    env = environ_of(
        b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert (env["body"], env["CONTENT_LENGTH"]) == (b"abcde", "5")
    assert env["wsgi.input_terminated"] is True


def test_repeated_headers_are_merged_and_underscored_ones_dropped() -> None:
    env = environ_of(
        b"GET / HTTP/1.1\r\nHost: t\r\nAccept: a/b\r\nAccept: c/d\r\nCookie: x=1\r\n"
        b"Cookie: y=2\r\nX-Forwarded-For: 1.2.3.4\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n"
    )
    assert env["HTTP_ACCEPT"] == "a/b,c/d"
    assert env["HTTP_COOKIE"] == "x=1; y=2"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


def test_header_values_are_bytes_as_latin_1() -> None:
    env = environ_of(b"GET / HTTP/1.1\r\nHost: t\r\nX-Name: caf\xc3\xa9\r\n\r\n")
    assert env["HTTP_X_NAME"].encode("latin-1") == "café".encode()


def test_build_environ_without_a_client() -> None:
    request = Request(b"GET", b"/", [(b"host", b"t")])
    env = build_environ(request, b"", client=None, server=("h", 80), multithread=True)
    assert "REMOTE_ADDR" not in env and env["wsgi.multithread"] is True


# --- start_response, write, the iterable ---------------------------------------------------


def test_a_single_chunk_gets_a_content_length_and_a_generator_is_chunked() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/list":
            return [b"one piece"]
        return (part for part in (b"gen", b"erated"))

    out = respond_wsgi(
        app, b"GET /list HTTP/1.1\r\nHost: t\r\n\r\nGET /gen HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    first, second = parse_responses(out)
    assert first.headers[b"content-length"] == b"9" and first.body == b"one piece"
    assert second.headers[b"transfer-encoding"] == b"chunked" and second.body == b"generated"


def test_the_write_callable_sends_before_the_iterable() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"written, ")
        write(b"")
        return [b"then returned"]

    [response] = parse_responses(respond_wsgi(app, GET))
    assert response.body == b"written, then returned"


def test_exc_info_before_the_head_is_sent_replaces_it() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-Was", "ok")])
        try:
            raise ValueError("late trouble")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Was", "error")], sys.exc_info())
        return [b"sorry"]

    [response] = parse_responses(respond_wsgi(app, GET))
    assert (response.status, response.headers[b"x-was"], response.body) == (503, b"error", b"sorry")


def test_exc_info_after_the_head_is_sent_is_reraised_and_the_response_cut(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first part"
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        yield b"never"

    out = respond_wsgi(app, GET + GET)
    assert b"first part" in out and b"never" not in out
    assert not out.endswith(b"0\r\n\r\n")  # no last chunk: the client sees a cut response
    assert out.count(b"HTTP/1.1 ") == 1  # the connection closed: the second GET was not served
    err = capfd.readouterr().err
    assert "summon: the app failed on GET /:" in err and "ValueError: too late" in err


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b""]

    assert parse_responses(respond_wsgi(app, GET))[0].status == 500


class Tracked:
    """An iterable whose close() is recorded, failing on the chunk at `fail_at` if given."""

    def __init__(self, chunks: list[object], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[object]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("generator failed mid-way")
            yield chunk

    def close(self) -> None:
        self.closed += 1


def tracked_app(body: Tracked) -> Callable[..., Iterable[object]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[object]:
        start_response("200 OK", [])
        return body

    return app


def test_close_is_called_after_a_whole_response() -> None:
    body = Tracked([b"a", b"b"])
    assert parse_responses(respond_wsgi(tracked_app(body), GET))[0].body == b"ab"
    assert body.closed == 1


def test_a_body_raising_mid_way_cuts_the_response_and_still_closes(
    capfd: pytest.CaptureFixture[str],
) -> None:
    body = Tracked([b"a", b"b", b"c"], fail_at=2)
    out = respond_wsgi(tracked_app(body), GET)
    assert b"HTTP/1.1 200" in out and parse_responses(out) == []  # never completed
    assert body.closed == 1
    assert "RuntimeError: generator failed mid-way" in capfd.readouterr().err


def test_a_body_raising_before_any_bytes_gets_a_500(capfd: pytest.CaptureFixture[str]) -> None:
    body = Tracked([b"a"], fail_at=0)
    [response] = parse_responses(respond_wsgi(tracked_app(body), GET))
    assert response.status == 500 and body.closed == 1
    assert "generator failed mid-way" in capfd.readouterr().err


def test_a_str_chunk_is_an_app_error() -> None:
    body = Tracked(["not bytes"])
    assert parse_responses(respond_wsgi(tracked_app(body), GET))[0].status == 500
    assert body.closed == 1


def test_a_handler_denied_a_process_gets_the_hint_beside_its_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A handler that starts a program: the sandbox answers EPERM, the app does not catch
    # it, and the line under the traceback says why (not only a bare PermissionError).
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/never":
            os.execv("/bin/true", ["true"])
        # What os.execv raises from C in the sandbox, here in the frame that called it.
        raise PermissionError(errno.EPERM, "Operation not permitted")

    [response] = parse_responses(respond_wsgi(app, GET))
    assert response.status == 500
    err = capfd.readouterr().err
    assert "PermissionError: [Errno 1] Operation not permitted" in err
    assert err.endswith(f"summon: {hints.EXEC_HINT}\n")


def test_a_module_the_image_lacks_is_named_beside_a_handler_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        import summon_no_such_module  # type: ignore[import-not-found]  # noqa: F401

        return []

    [response] = parse_responses(respond_wsgi(app, GET))
    assert response.status == 500
    err = capfd.readouterr().err
    assert "ModuleNotFoundError: No module named 'summon_no_such_module'" in err
    assert (
        err.splitlines()[-1].startswith("summon: ")
        and "summon_no_such_module" in err.splitlines()[-1]
    )


def test_an_app_exception_is_a_500_and_the_next_request_is_served(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise KeyError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    out = respond_wsgi(app, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    assert [(r.status, r.body) for r in parse_responses(out)] == [
        (500, b"500 Internal Server Error\n"),
        (200, b"fine"),
    ]
    err = capfd.readouterr().err
    assert "summon: the app failed on GET /boom:" in err and "KeyError: 'boom'" in err
    assert "src/summon/runtime/http" not in err  # the traceback starts at the app


def test_an_invalid_header_from_the_app_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Bad Header", "x")])
        return [b"x"]

    assert parse_responses(respond_wsgi(app, GET))[0].status == 500


def test_head_gets_no_body_from_a_wsgi_app() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    out = respond_wsgi(app, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    [response] = parse_responses(out, head_methods=(True,))
    assert response.headers[b"content-length"] == b"5" and not out.endswith(b"hello")


def test_limits_apply_on_the_synchronous_path_too() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise AssertionError("not called for a refused request")

    data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50
    assert parse_responses(respond_wsgi(app, data, settings=Settings(max_body=10)))[0].status == 413


def test_a_request_cut_short_gets_no_answer() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise AssertionError("not called")

    assert respond_wsgi(app, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nabc") == b""


def test_access_lines_for_each_response() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"12345"]

    lines: list[str] = []
    respond_wsgi(app, GET, log=lines.append)
    [line] = lines
    assert line.startswith("127.0.0.1 - - [") and '"GET / HTTP/1.1" 200 5 ' in line
    assert line.endswith("ms")


# --- a client that leaves ------------------------------------------------------------------


class GoneSink(ResponseSink):
    """A sink whose client left after the head."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.calls.append("start")

    def body(self, data: bytes) -> None:
        self.calls.append("body")
        raise ClientDisconnected("gone")

    def end(self) -> None:
        self.calls.append("end")

    def abort(self) -> None:
        self.calls.append("abort")


def test_a_client_gone_mid_response_stops_the_iterable_and_closes_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    body = Tracked([b"a", b"b", b"c"])
    sink = GoneSink()
    environ = build_environ(Request(b"GET", b"/", []), b"", client=None, server=("h", 80),
                            multithread=False)  # fmt: skip
    run_wsgi(tracked_app(body), environ, sink, "GET /")
    assert sink.calls == ["start", "body", "abort"]
    assert body.closed == 1
    assert capfd.readouterr().err == ""  # a client leaving is not an app error


def test_wsgi_input_is_a_readable_stream() -> None:
    env = build_environ(Request(b"POST", b"/", []), b"line1\nline2\n", client=None,
                        server=("h", 80), multithread=False)  # fmt: skip
    stream: BytesIO = env["wsgi.input"]
    assert stream.readline() == b"line1\n" and list(stream) == [b"line2\n"]
