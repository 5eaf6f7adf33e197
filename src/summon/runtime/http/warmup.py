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

from summon.runtime.http.exchange import exchange_asgi, respond_wsgi

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
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


async def warm_up(
    app: Callable[..., Any],
    interface: str,
    paths: Sequence[str],
    state: dict[str, Any] | None,
    tell: Callable[[str], None],
    run_blocking: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
) -> None:
    """Ask `app` for each of `paths` in turn; say each status with `tell`.

    run_blocking: how the server runs a WSGI call off the loop (its worker pool), as it runs
    a served request; None where there are no threads (a browser tab): on the loop, unbounded.
    """
    for path in paths:
        data = request_bytes(path)
        try:
            if interface == "wsgi":
                got: list[bytes] = []

                def call(data: bytes = data, got: list[bytes] = got) -> None:
                    got.append(respond_wsgi(app, data))

                if run_blocking is None:
                    call()
                else:
                    await asyncio.wait_for(run_blocking(call), WARM_UP_TIMEOUT)
                out = got[0]
            else:
                out = await asyncio.wait_for(exchange_asgi(app, data, state=state), WARM_UP_TIMEOUT)
        except TimeoutError:
            tell(f"warm-up: GET {path} gave no answer within {WARM_UP_TIMEOUT:g} s; sealing anyway")
            continue
        except Exception as e:  # the app's failure is said, not fatal
            tell(f"warm-up: GET {path} failed ({type(e).__name__}: {e}); sealing anyway")
            continue
        tell(f"warm-up: GET {path} -> {status_of(out)}, before the seal")
