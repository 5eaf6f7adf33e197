"""The ASGI bridge: the http scope (spec 2.4), streaming both ways, disconnects, failures,
and the lifespan protocol (supported, unsupported, failing)."""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import Any

import pytest
from http_wire import parse_responses

from summon.runtime.http.asgi import HTTPCycle, Lifespan, LifespanFailed, build_scope
from summon.runtime.http.connection import ConnectionIO, serve_connection
from summon.runtime.http.exchange import exchange_asgi, respond_asgi
from summon.runtime.http.protocol import ClientDisconnected, HTTPConnection, Request
from summon.runtime.http.settings import Settings

Message = dict[str, Any]
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class ScriptedIO(ConnectionIO):
    """A client that sends `chunks` one read at a time, then waits or leaves (`leave`)."""

    def __init__(self, chunks: list[bytes], leave: bool = False) -> None:
        self.chunks = deque(chunks)
        self.leave = leave
        self.out: list[bytes] = []
        self.reads = 0

    def now(self) -> float:
        return 0.0

    async def read(self, deadline: float | None, wake: asyncio.Event | None) -> bytes | None:
        await asyncio.sleep(0)
        self.reads += 1
        if self.chunks:
            return self.chunks.popleft()
        if self.leave or wake is None:
            return b""
        await wake.wait()
        return None

    async def write(self, data: bytes) -> None:
        if self.leave and not self.chunks:
            raise ClientDisconnected("gone")
        self.out.append(data)


async def run(app: Any, io: ScriptedIO, state: dict[str, Any] | None = None) -> bytes:
    conn = HTTPConnection(Settings(), 0.0)

    async def handle(request: Request) -> None:
        scope = build_scope(request, client=("1.2.3.4", 9), server=("5.6.7.8", 80), state=state)
        await HTTPCycle(conn, io, scope, lambda exchange: None).run(app)

    await asyncio.wait_for(serve_connection(conn, io, handle, lambda exchange: None), 5)
    return b"".join(io.out)


def text_app(body: bytes = b"ok", status: int = 200) -> Any:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


# --- the scope -----------------------------------------------------------------------------


def test_the_http_scope_follows_the_spec() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope)
        await text_app()(scope, receive, send)

    data = b"GET /caf%C3%A9/x?a=1&b=%20 HTTP/1.1\r\nHost: t\r\nX-Thing: One\r\nX-Thing: two\r\n\r\n"
    out = respond_asgi(app, data, client=("10.0.0.2", 4000), server=("10.0.0.1", 8000),
                       state={"db": "pool"})  # fmt: skip
    assert parse_responses(out)[0].status == 200
    [scope] = seen
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "GET", "http")
    assert scope["path"] == "/café/x"
    assert scope["raw_path"] == b"/caf%C3%A9/x"
    assert scope["query_string"] == b"a=1&b=%20"
    assert scope["root_path"] == ""
    assert scope["headers"] == [(b"host", b"t"), (b"x-thing", b"One"), (b"x-thing", b"two")]
    assert scope["client"] == ("10.0.0.2", 4000) and scope["server"] == ("10.0.0.1", 8000)
    assert scope["state"] == {"db": "pool"}


def test_each_request_gets_its_own_copy_of_the_lifespan_state() -> None:
    state = {"count": 0}

    async def app(scope: Message, receive: Any, send: Any) -> None:
        scope["state"]["count"] += 1
        await text_app(str(scope["state"]["count"]).encode())(scope, receive, send)

    out = respond_asgi(app, GET + GET, state=state)
    assert [r.body for r in parse_responses(out)] == [b"1", b"1"] and state == {"count": 0}


# --- streaming ---------------------------------------------------------------------------


def test_a_request_body_streams_to_the_app_as_it_arrives() -> None:
    messages: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body"):
                break
        await text_app(b"".join(m["body"] for m in messages))(scope, receive, send)

    head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    io = ScriptedIO([head + b"3\r\nabc\r\n", b"2\r\nde\r\n", b"0\r\n\r\n"])
    out = asyncio.run(run(app, io))
    assert [(m["body"], m["more_body"]) for m in messages] == [
        (b"abc", True),
        (b"de", True),
        (b"", False),
    ]
    assert parse_responses(out)[0].body == b"abcde"


def test_a_body_already_arrived_is_handed_out_in_one_message() -> None:
    messages: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        messages.append(await receive())
        await text_app()(scope, receive, send)

    asyncio.run(
        run(app, ScriptedIO([b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"]))
    )
    assert messages == [{"type": "http.request", "body": b"xyz", "more_body": False}]


def test_a_response_in_parts_is_chunked_and_one_part_gets_a_length() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"y")]})
        if scope["path"] == "/parts":
            for part in (b"a", b"b", b"c"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": b"whole"})

    data = b"GET /parts HTTP/1.1\r\nHost: t\r\n\r\nGET /one HTTP/1.1\r\nHost: t\r\n\r\n"
    parts, one = parse_responses(respond_asgi(app, data))
    assert parts.headers[b"transfer-encoding"] == b"chunked" and parts.body == b"abc"
    assert one.headers[b"content-length"] == b"5" and one.body == b"whole"


def test_100_continue_goes_out_when_the_app_reads_the_body() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        message = await receive()
        await text_app(message["body"])(scope, receive, send)

    head = b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    io = ScriptedIO([head, b"hi"])
    out = asyncio.run(run(app, io))
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert parse_responses(out)[0].body == b"hi"


# --- disconnects ---------------------------------------------------------------------------


def test_a_client_leaving_mid_body_is_a_disconnect_and_send_then_raises_oserror() -> None:
    got: list[object] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        got.append(await receive())
        got.append(await receive())
        try:
            await send({"type": "http.response.start", "status": 200})
        except OSError as e:
            got.append(type(e))

    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
    out = asyncio.run(run(app, ScriptedIO([head + b"abc"], leave=True)))
    assert got == [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.disconnect"},
        ClientDisconnected,
    ]
    assert out == b""


def test_an_app_waiting_in_receive_after_the_body_learns_that_the_client_left() -> None:
    """A long poll or an event stream waits in receive() once the body is read: the client
    closing the connection is an http.disconnect then, not a wait without end."""
    got: list[object] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        got.append((await receive())["type"])
        got.append((await receive())["type"])

    asyncio.run(run(app, ScriptedIO([GET], leave=True)))
    assert got == ["http.request", "http.disconnect"]


def test_receive_after_the_response_is_a_disconnect() -> None:
    after: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await text_app()(scope, receive, send)
        after.append(await receive())

    respond_asgi(app, GET)
    assert after == [{"type": "http.disconnect"}]


def test_listening_for_a_disconnect_while_streaming_does_not_block_the_response() -> None:
    """Starlette's StreamingResponse pattern: one task streams, another awaits receive()."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await receive()  # the (empty) request body

        async def listen() -> Message:
            return await receive()  # returns once the response is complete

        listener = asyncio.ensure_future(listen())
        await send({"type": "http.response.start", "status": 200})
        for part in (b"1", b"2"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"3"})
        assert await listener == {"type": "http.disconnect"}

    out = asyncio.run(run(app, ScriptedIO([GET])))
    assert parse_responses(out)[0].body == b"123"


# --- failures ------------------------------------------------------------------------------


def test_an_exception_before_the_response_is_a_500_and_the_next_request_is_served(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise ZeroDivisionError("boom")
        await text_app(b"fine")(scope, receive, send)

    out = respond_asgi(app, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    assert [r.status for r in parse_responses(out)] == [500, 200]
    err = capfd.readouterr().err
    assert "summon: the app failed on GET /boom:" in err and "ZeroDivisionError: boom" in err
    assert "src/summon/runtime/http" not in err  # the traceback starts at the app


def test_an_exception_between_start_and_body_is_still_a_clean_500() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("changed its mind")

    assert parse_responses(respond_asgi(app, GET))[0].status == 500


def test_an_exception_mid_body_cuts_the_response_and_closes() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-way")

    out = respond_asgi(app, GET + GET)
    assert b"part" in out and parse_responses(out) == [] and out.count(b"HTTP/1.1") == 1


def test_an_exception_after_a_whole_response_keeps_the_connection() -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await text_app(b"sent")(scope, receive, send)
        raise RuntimeError("after the fact")  # as Starlette's error middleware does

    out = respond_asgi(app, GET + GET)
    assert [r.body for r in parse_responses(out)] == [b"sent", b"sent"]


def test_returning_without_a_response_is_a_500(capfd: pytest.CaptureFixture[str]) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        return None

    assert parse_responses(respond_asgi(app, GET))[0].status == 500
    assert "returned without completing its response to GET /" in capfd.readouterr().err


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.start", "status": 200, "headers": [("str", "header")]}],
        [{"type": "http.response.start", "status": "200"}, {"type": "http.response.body"}],
        [{"type": "http.response.body", "body": b"no start"}],
        [{"type": "http.response.start", "status": 200}] * 2,
        [{"type": "websocket.accept"}],
        [
            {"type": "http.response.start", "status": 200},
            {"type": "http.response.body", "body": "str"},
        ],
    ],
)
def test_malformed_messages_become_a_500(messages: list[Message]) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    assert parse_responses(respond_asgi(app, GET))[0].status == 500


@pytest.mark.parametrize(
    ("status", "code"),
    [(HTTPStatus.OK, 200), (HTTPStatus.BAD_REQUEST, 400), (True, 500), (HTTPStatus.CONTINUE, 500)],
)
def test_a_status_given_as_an_int_enum_is_its_number(status: int, code: int) -> None:
    """Ariadne's GraphQL handler sends http.HTTPStatus.OK: every query answered 500 ("response
    status <HTTPStatus.OK: 200> is not a number"), as uvicorn does not. A bool stays refused."""
    [response] = parse_responses(respond_asgi(text_app(b"{}", status), GET))
    assert response.status == code


def test_head_responses_carry_no_body() -> None:
    out = respond_asgi(text_app(b"hello"), b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    [response] = parse_responses(out, head_methods=(True,))
    assert response.headers[b"content-length"] == b"5" and not out.endswith(b"hello")


def test_exchange_asgi_runs_on_a_loop_that_is_already_running() -> None:
    async def main() -> bytes:
        return await exchange_asgi(text_app(b"inside"), GET)

    assert parse_responses(asyncio.run(main()))[0].body == b"inside"


def test_respond_asgi_on_a_given_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        out = respond_asgi(text_app(b"given"), GET, loop=loop)
    finally:
        loop.close()
    assert parse_responses(out)[0].body == b"given"


# --- lifespan ------------------------------------------------------------------------------


def lifespan_app(log: list[str], *, fail_startup: str = "", fail_shutdown: str = "") -> Any:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            log.append(message["type"])
            if message["type"] == "lifespan.startup":
                if fail_startup:
                    await send({"type": "lifespan.startup.failed", "message": fail_startup})
                    raise RuntimeError(fail_startup)
                scope["state"]["ready"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                if fail_shutdown:
                    await send({"type": "lifespan.shutdown.failed", "message": fail_shutdown})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    return app


def test_lifespan_startup_and_shutdown(capfd: pytest.CaptureFixture[str]) -> None:
    log: list[str] = []

    async def main() -> None:
        lifespan = Lifespan(lifespan_app(log))
        await lifespan.startup()
        assert lifespan.supported and lifespan.state == {"ready": True}
        await lifespan.shutdown(5)

    asyncio.run(main())
    assert log == ["lifespan.startup", "lifespan.shutdown"]
    assert capfd.readouterr().err == ""


def test_lifespan_startup_failed_stops_with_the_apps_message() -> None:
    async def main() -> None:
        await Lifespan(lifespan_app([], fail_startup="no database")).startup()

    with pytest.raises(LifespanFailed, match="no database"):
        asyncio.run(main())


def test_lifespan_shutdown_failed_is_reported() -> None:
    async def main() -> None:
        lifespan = Lifespan(lifespan_app([], fail_shutdown="could not flush"))
        await lifespan.startup()
        await lifespan.shutdown(5)

    with pytest.raises(LifespanFailed, match="could not flush"):
        asyncio.run(main())


def test_an_app_raising_on_the_lifespan_scope_does_not_support_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", f"unsupported scope {scope['type']}"
        await text_app()(scope, receive, send)

    async def main() -> bool:
        lifespan = Lifespan(app)
        await lifespan.startup()
        await lifespan.shutdown(5)  # nothing to do: returns at once
        return lifespan.supported

    assert asyncio.run(main()) is False
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "does not take ASGI lifespan events (AssertionError" in err
    assert parse_responses(respond_asgi(app, GET))[0].status == 200  # and it still serves


def test_an_app_returning_at_once_does_not_support_it_and_says_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        return None

    async def main() -> bool:
        lifespan = Lifespan(app)
        await lifespan.startup()
        return lifespan.supported

    assert asyncio.run(main()) is False and capfd.readouterr().err == ""


def test_a_lifespan_shutdown_that_hangs_is_cut_off(capfd: pytest.CaptureFixture[str]) -> None:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(3600)

    async def main() -> None:
        lifespan = Lifespan(app)
        await lifespan.startup()
        await lifespan.shutdown(0.05)

    asyncio.run(main())
    assert "did not finish within 0.05 s" in capfd.readouterr().err


class LeavingIO(ScriptedIO):
    """A client that takes `writes` writes, then is gone (its next write fails)."""

    def __init__(self, chunks: list[bytes], writes: int) -> None:
        super().__init__(chunks)
        self.writes = writes

    async def write(self, data: bytes) -> None:
        if self.writes <= 0:
            raise ClientDisconnected("gone")
        self.writes -= 1
        await super().write(data)


def test_a_client_leaving_a_stream_is_logged_and_no_app_failure(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Starlette turns our ClientDisconnected into an exception of its own; a client that
    leaves an event stream is no app failure (no traceback), and the access log has it."""
    logged: list[object] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        try:
            for _ in range(10):
                await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        except OSError as e:
            raise RuntimeError("the framework's own 'client disconnected'") from e

    io = LeavingIO([GET], writes=2)
    conn = HTTPConnection(Settings(), 0.0)

    async def handle(request: Request) -> None:
        scope = build_scope(request, client=("1.2.3.4", 9), server=("5.6.7.8", 80))
        await HTTPCycle(conn, io, scope, logged.append).run(app)

    asyncio.run(asyncio.wait_for(serve_connection(conn, io, handle, logged.append), 5))
    assert "the app failed" not in capfd.readouterr().err
    assert len(logged) == 1 and logged[0].status == 200  # type: ignore[attr-defined]
