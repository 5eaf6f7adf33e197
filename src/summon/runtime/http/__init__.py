"""summon's HTTP/1.1 server for apps whose entry is a WSGI or an ASGI callable.

The runtime (init.py) serves an entry of kind "wsgi" or "asgi" with `serve`, on the image's
Stack device; docs/http.md says what it does and how to tune it. Its parts:

- protocol: one connection, sans-IO, on h11 (state.py holds its state table);
- wsgi, asgi: the bridges from a request to the app's calling convention and back;
- connection: the loop serving one connection over any transport;
- server: the asyncio server on a Stack device (threads for WSGI, graceful stop);
- exchange: the same without a socket, request bytes in and response bytes out.

h11 is the one library here beyond the stdlib; the builder vendors it into images whose
entry is a WSGI or ASGI callable. Nothing is imported until a name is used (PEP 562), so that
`import summon.runtime.http.exchange` costs no asyncio.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.runtime.http.asgi import Lifespan, LifespanFailed
    from summon.runtime.http.exchange import exchange_asgi, respond_asgi, respond_wsgi
    from summon.runtime.http.protocol import HTTPConnection
    from summon.runtime.http.server import serve
    from summon.runtime.http.settings import Settings

__all__ = [
    "HTTPConnection",
    "Lifespan",
    "LifespanFailed",
    "Settings",
    "exchange_asgi",
    "respond_asgi",
    "respond_wsgi",
    "serve",
]

_HOMES = {
    "HTTPConnection": "protocol",
    "Lifespan": "asgi",
    "LifespanFailed": "asgi",
    "Settings": "settings",
    "exchange_asgi": "exchange",
    "respond_asgi": "exchange",
    "respond_wsgi": "exchange",
    "serve": "server",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{home}", fromlist=[name])
    return getattr(module, name)
