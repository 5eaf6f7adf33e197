"""WSGI and ASGI entries in a tab: the runtime's own HTTP server, fed bytes in memory.

summon.runtime.http serves these entries on other targets over the Stack, a WSGI app on
worker threads; a browser tab has no threads. Its in-memory exchange (respond_wsgi, which
calls the app synchronously; exchange_asgi, a coroutine for the running loop, Pyodide's
included) takes the request's bytes and gives the response's, through the same connection
object, limits and bridges as the served path. The bridge feeds it what encode_request
wrote and parses what comes back, as it does for a function entry's server.

Runs inside Pyodide (as summon_browser.served): imported only for such entries, so the
runtime's HTTP modules are in a site only when its app needs them.
"""

from __future__ import annotations

import os

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    Responder = Callable[[bytes, tuple[str, int]], Awaitable[bytes]]

CLIENT = ("127.0.0.1", 0)  # who a request comes from, as the app sees it: this tab


class ServedAppFailed(Exception):
    """A WSGI/ASGI app cannot be served: bad settings, or its lifespan startup failed."""


async def responder(kind: str, app: Any, log: Callable[[str], None]) -> Responder:
    """What answers request bytes for the `kind` ("wsgi" or "asgi") app `app`.

    An ASGI app's lifespan startup runs here, once, as the runtime runs it before serving.
    """
    from summon.runtime.http.exchange import exchange_asgi, respond_wsgi
    from summon.runtime.http.settings import Settings

    try:
        settings = Settings.from_environ(os.environ)
    except ValueError as e:
        raise ServedAppFailed(str(e)) from None
    if kind == "wsgi":

        async def wsgi(data: bytes, server: tuple[str, int]) -> bytes:
            return respond_wsgi(app, data, client=CLIENT, server=server, settings=settings, log=log)

        return wsgi
    from summon.runtime.http.asgi import Lifespan, LifespanFailed

    lifespan = Lifespan(app)
    try:
        await lifespan.startup()
    except LifespanFailed as e:
        raise ServedAppFailed(f"the app's lifespan startup failed: {e}") from None

    async def asgi(data: bytes, server: tuple[str, int]) -> bytes:
        return await exchange_asgi(
            app, data, client=CLIENT, server=server, settings=settings, state=lifespan.state,
            log=log,
        )  # fmt: skip

    return asgi
