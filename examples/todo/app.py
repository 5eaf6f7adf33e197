"""A CueKeeper-like task manager whose whole state is a KV_RW store: every change a commit.

The entry asks for its network, its store and its console; the runtime's HTTP server (h11,
summon.runtime.http) serves the WSGI app in web.py on port 80, and the store lives on the
volume mounted at /data (`summon run -v todo:/data todo`), apart from the sealed image: the
tasks and their history survive restarts, image upgrades and moves between targets.
"""

from __future__ import annotations

import os

from tasks import Tasks
from web import TodoApp

from summon.devices import KV_RW, Console, Stack
from summon.runtime.http.server import serve
from summon.runtime.http.settings import Settings

PORT = 80


async def main(stack: Stack, todo: KV_RW, log: Console) -> int:
    settings = Settings.from_environ(os.environ)
    return await serve(TodoApp(Tasks(todo)), "wsgi", stack, PORT, settings, log.write, "todo")


def probe() -> None:
    """Warm-up before the seal: every page and change once, on a store in memory."""
    import io

    from summon import kv

    app = TodoApp(Tasks(kv.open_memory()))

    def call(method: str, path: str, body: bytes = b"", kind: str = "") -> None:
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
            "CONTENT_TYPE": kind, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        }  # fmt: skip
        app(environ, lambda status, headers: None)

    call("POST", "/tasks", b"title=milk&project=Home&context=shop")
    call("POST", "/tasks", b'{"title": "bread"}', "application/json")
    call("GET", "/")
    call("GET", "/tasks")
    call("GET", "/history")
    call("GET", "/nope")
