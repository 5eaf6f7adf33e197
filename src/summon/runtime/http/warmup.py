"""Warm-up requests: the app asked for its own pages, in-process, before the seal closes.

Frameworks build some things at their first request, not at import: Falcon compiles its
router to Python source and exec()s it, others fill caches or compile templates. Once the
seal is closed (the runtime's server listening), code from strings is refused, so the runtime
asks for the manifest's `warm_up` paths (["/"] by default) first, through the same
connection, limits and bridges as a request from the network (exchange.py), with no socket:
nothing leaves the instance. Each is a GET with `User-Agent: summon-warm-up`; the answer is
dropped, its status said in one line. A path that fails (an error page, an exception, no
answer within WARM_UP_TIMEOUT) is said and the server starts anyway: the app answers the
network as it would have.

Image-side: stdlib only.
"""

from __future__ import annotations

import asyncio
import threading

from summon.runtime.http.exchange import exchange_asgi, respond_wsgi

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

WARM_UP_TIMEOUT = 10.0  # seconds for one warm-up request
USER_AGENT = "summon-warm-up"


def request_bytes(path: str) -> bytes:
    """One GET for `path` that closes its connection."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def status_of(response: bytes) -> str:
    """The status code of the response bytes, or "no answer"."""
    line = response.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return line[1].decode("ascii")
    return "no answer"


async def _wsgi(app: Callable[..., Any], data: bytes) -> bytes:
    """respond_wsgi on a thread of its own, as a served request runs on a worker's: the app
    may block; the event loop goes on."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    def settle(result: bytes | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result or b"")

    def body() -> None:
        result: bytes | None = None
        error: BaseException | None = None
        try:
            result = respond_wsgi(app, data)
        except BaseException as e:  # run_wsgi answers 500 itself: this is the unexpected
            error = e
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # given up on, and the loop has ended since: nobody waits for it

    threading.Thread(target=body, name="summon-warm-up", daemon=True).start()
    return await done


async def warm_up(
    app: Callable[..., Any],
    interface: str,
    paths: Sequence[str],
    state: dict[str, Any] | None,
    tell: Callable[[str], None],
) -> None:
    """Ask `app` for each of `paths` in turn; say each status with `tell`."""
    for path in paths:
        data = request_bytes(path)
        try:
            if interface == "wsgi":
                out = await asyncio.wait_for(_wsgi(app, data), WARM_UP_TIMEOUT)
            else:
                out = await asyncio.wait_for(exchange_asgi(app, data, state=state), WARM_UP_TIMEOUT)
        except TimeoutError:
            tell(f"warm-up: GET {path} gave no answer within {WARM_UP_TIMEOUT:g} s; sealing anyway")
            continue
        except Exception as e:  # the app's failure is said, not fatal
            tell(f"warm-up: GET {path} failed ({type(e).__name__}: {e}); sealing anyway")
            continue
        tell(f"warm-up: GET {path} -> {status_of(out)}, before the seal")
