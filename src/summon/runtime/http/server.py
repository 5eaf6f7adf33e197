"""The HTTP/1.1 server for WSGI and ASGI entries, on the image's Stack device.

`serve` is what the runtime runs for an entry of kind "wsgi" or "asgi" (init.py): it
listens on one port through the Stack device (kernel sockets, summon.net's direct stack, the
same in a VM), serves each connection with connection.serve_connection, and stops gracefully
when its task is cancelled (init.run_async cancels it on SIGTERM or SIGINT):
1. stop accepting; connections waiting for a next request close at once;
2. requests under way have up to Settings.grace seconds to finish (their responses say
   `Connection: close`); what is left after that is cut off;
3. the ASGI lifespan shutdown runs in what remains of the grace (at least a second).

WSGI apps block, so each request runs on a worker thread, at most Settings.threads at once;
the threads are daemons, so one stuck in the app cannot keep the process alive after the
grace. ASGI apps run on the event loop, one task per connection.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque

from summon.runtime.http.asgi import HTTPCycle, Lifespan, LifespanFailed, build_scope
from summon.runtime.http.connection import ConnectionIO, flush, read_body, serve_connection
from summon.runtime.http.log import access_line, report_app_error
from summon.runtime.http.notice import say
from summon.runtime.http.protocol import ClientDisconnected, HTTPConnection, ResponseError
from summon.runtime.http.rules import wants_websocket
from summon.runtime.http.wsgi import ConnectionSink, build_environ, run_wsgi

# Said at the first WebSocket upgrade a WSGI app gets: it answers it as plain HTTP.
WSGI_UPGRADE = (
    "a WebSocket upgrade ({what}) reached a WSGI app, which answers it as plain HTTP: this "
    "server hands a WSGI app no socket to take over (werkzeug.socket, which flask-sock and "
    "Flask-SocketIO's threading mode need); serve WebSocket routes from an ASGI app "
    "(Quart, Starlette, python-socketio's ASGIApp) or from the app's own server in a script"
)

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from typing import Any

    from summon.devices import Stack
    from summon.runtime.http.protocol import Exchange, Request
    from summon.runtime.http.settings import Settings

READ_SIZE = 64 * 1024
requests = 0  # requests served since start (summon.runtime.stats reports it)
LINGER_SECONDS = 2.0  # reading on before closing a connection whose request was not all read
LINGER_BYTES = 256 * 1024
# Most bytes handed to the transport at once: what a client does not take yet waits in the
# transport's buffer as a copy, so a 4 MB response to a client that reads nothing cost 4 MB
# more per connection (nine such clients put a 128M Flask sandbox out of memory).
WRITE_SLICE = 64 * 1024


def _address(info: object) -> tuple[str, int] | None:
    """(host, port) of a sockname or peername; None for what is not an address."""
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class StreamIO(ConnectionIO):
    """A connection's transport over the asyncio streams a Stack device hands out."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settings: Settings
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.settings = settings
        self.loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    async def read(self, deadline: float | None, wake: asyncio.Event | None) -> bytes | None:
        timeout = None if deadline is None else max(0.0, deadline - self.loop.time())
        read = self.loop.create_task(self.reader.read(READ_SIZE))
        waits: set[asyncio.Future[Any]] = {read}
        woken = None
        if wake is not None:
            woken = self.loop.create_task(wake.wait())
            waits.add(woken)
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            # A StreamReader.read cancelled while waiting loses no bytes: they stay buffered.
            for task in waits:
                if not task.done():
                    task.cancel()
        if read not in done:
            return None
        try:
            return read.result()
        except (ConnectionError, OSError):
            return b""  # reset by the client: for us, it has left

    async def write(self, data: bytes) -> None:
        """Send `data`, WRITE_SLICE at a time, each waited for as _send_patience allows."""
        writer = self.writer
        view = memoryview(data)
        try:
            for start in range(0, max(len(data), 1), WRITE_SLICE):
                if writer.is_closing():
                    raise ClientDisconnected("the connection is closed")
                writer.write(view[start : start + WRITE_SLICE])
                pending = writer.transport.get_write_buffer_size()
                if pending == 0:
                    await writer.drain()  # only notices a lost connection
                else:
                    await asyncio.wait_for(writer.drain(), self._send_patience(pending))
        except (ConnectionError, OSError, TimeoutError) as e:
            raise ClientDisconnected(f"the client has gone: {e}") from None

    def _send_patience(self, pending: int) -> float:
        """How long the client may take to make room for `pending` bytes: at least a second,
        at most the read timeout, and no longer than min_send_rate allows. A client that
        reads a few bytes now and then would otherwise hold a WSGI thread for as long as it
        likes (each byte it takes restarting a silence timer)."""
        s = self.settings
        if s.min_send_rate <= 0:
            return s.read_timeout
        return min(s.read_timeout, max(1.0, pending / s.min_send_rate))

    async def close(self, linger: bool) -> None:
        """Close; first, if `linger`, read (and drop) what the client still sends, briefly,
        so that the kernel does not reset the connection under the last response."""
        writer = self.writer
        try:
            if linger and not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()
                deadline = self.loop.time() + LINGER_SECONDS
                left = LINGER_BYTES
                while left > 0:
                    data = await self.read(deadline, None)
                    if not data:
                        break
                    left -= len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class WorkerPool:
    """At most `size` daemon threads running blocking calls for the event loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: deque[tuple[Callable[[], None], asyncio.Future[None]]] = deque()
        self._ready = threading.Condition()
        self._threads = 0
        self._idle = 0
        self._stopped = False
        self._workers: list[threading.Thread] = []

    async def run(self, fn: Callable[[], None]) -> None:
        """Run `fn()` on a worker thread; return (or raise) when it has."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._ready:
            self._jobs.append((fn, future))
            if len(self._jobs) > self._idle and self._threads < self.size:
                self._threads += 1  # threads start on demand: none for an idle server
                worker = threading.Thread(target=self._work, name="wsgi", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._ready.notify()
        await future

    async def stop(self, timeout: float) -> None:
        """Let the threads end once the queue is empty; wait up to `timeout` for them.

        Waiting matters: a thread still ending while the interpreter shuts down is ended
        with pthread_exit, which aborts the process when glibc cannot load libgcc_s.
        """
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
        deadline = asyncio.get_running_loop().time() + timeout
        for worker in self._workers:
            while worker.is_alive() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._stopped:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                if not self._jobs:
                    self._threads -= 1
                    return
                fn, future = self._jobs.popleft()
            loop = future.get_loop()
            error: BaseException | None = None
            try:
                fn()
            except BaseException as e:
                error = e
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:
                pass  # the loop has ended meanwhile (a call past the grace): nobody waits


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return  # the request's task was cancelled meanwhile
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class ThreadSink(ConnectionSink):
    """A WSGI response written from a worker thread: each step runs on the event loop, and
    the thread waits for it (and for the client to take the bytes)."""

    def __init__(self, conn: HTTPConnection, io: StreamIO, log: Callable[[Exchange], None]):
        super().__init__(conn, io.now, log)
        self.io = io

    def body(self, data: bytes) -> None:
        self._call(self._write(data, False))

    def end(self) -> None:
        self._call(self._write(b"", True))

    def abort(self) -> None:
        self._call(self._stop())

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.io.loop).result()

    async def _write(self, data: bytes, last: bool) -> None:
        if self.head is not None and len(data) > WRITE_SLICE:
            await self._write(b"", False)  # the head alone: not joined to a large body (a copy)
        out = self.step(data, last)
        if out:
            try:
                await self.io.write(out)
            except ClientDisconnected:
                self.stop()  # the access log says what the client got before it left
                raise

    async def _stop(self) -> None:
        self.stop()


class HTTPServer:
    """A WSGI or ASGI app served over a Stack device (see the module docstring)."""

    def __init__(
        self,
        app: Callable[..., Any],
        interface: str,
        settings: Settings,
        console: Callable[[str], None] | None = None,
    ) -> None:
        if interface not in ("wsgi", "asgi"):
            raise ValueError(f"interface {interface!r} is not wsgi or asgi")
        self.app = app
        self.interface = interface
        self.settings = settings
        self.console = console
        # No threads in a browser tab (Pyodide): there a WSGI app runs on the event loop.
        threads = interface == "wsgi" and sys.platform != "emscripten"
        self.pool = WorkerPool(settings.threads) if threads else None
        self.lifespan: Lifespan | None = None
        self.stopping = asyncio.Event()
        self._connections: dict[asyncio.Task[Any], HTTPConnection] = {}
        self._told_no_websocket = False
        self._told_wsgi_upgrade = False

    def log(self, client: str, exchange: Exchange) -> None:
        if self.console is not None and self.settings.access_log:
            self.console(access_line(client, exchange))

    async def serve(
        self, stack: Stack, port: int, label: str = "", warm: Sequence[str] = ()
    ) -> int:
        """Serve on `port` until cancelled, then stop gracefully; return the exit status.

        warm: paths the app is asked for first, in-process (warmup.py), before it listens:
        listening closes the seal, and what a framework builds at its first request (a
        router compiled to code) must be built by then.
        """
        if self.interface == "asgi":
            self.lifespan = Lifespan(self.app)
            try:
                await self.lifespan.startup()
            except LifespanFailed as e:
                say(f"the app's lifespan startup failed: {e}")
                return 1
        if warm:
            from summon.runtime.http.warmup import warm_up

            state = self.lifespan.state if self.lifespan is not None else None
            console = self.console
            tell = say if console is None else (lambda line: console(f"summon: {line}"))
            run = self.pool.run if self.pool is not None else None
            await warm_up(self.app, self.interface, warm, state, tell, run)
        server = await stack.start_server(self._on_connection, port)
        if self.console is not None:
            what = f" {label}" if label else ""
            self.console(
                f"summon: serving the {self.interface.upper()} app{what} on port "
                f"{server.port} (HTTP/1.1)"
            )
        try:
            # Not server.serve_forever(): on cancellation it awaits wait_closed(), which from
            # Python 3.12 waits for every connection, idle keep-alive ones included.
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the stop request, handled here: what follows must run
        finally:
            server.close()
        status = await self._stop()
        await server.wait_closed()  # every connection is closed by now
        return status

    async def _stop(self) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.grace
        self.stopping.set()
        for conn in self._connections.values():
            conn.shutdown(loop.time())
        tasks = set(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.grace)
            if late:
                say(f"{len(late)} request(s) still under way after the {self.settings.grace:g} "
                    "s grace; cutting them off")  # fmt: skip
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
        if self.pool is not None:
            await self.pool.stop(max(0.5, deadline - loop.time()))
        status = 0
        if self.lifespan is not None:
            try:
                await self.lifespan.shutdown(max(1.0, deadline - loop.time()))
            except LifespanFailed as e:
                say(f"the app's lifespan shutdown failed: {e}")
                status = 1
        return status

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        io = StreamIO(reader, writer, self.settings)
        conn = HTTPConnection(self.settings, io.now())
        if self.stopping.is_set():
            writer.close()
            return
        self._connections[task] = conn
        peer = _address(writer.get_extra_info("peername"))
        client = peer[0] if peer is not None else "-"
        local = _address(writer.get_extra_info("sockname")) or ("0.0.0.0", 0)

        def log(exchange: Exchange) -> None:
            self.log(client, exchange)

        if self.interface == "asgi":

            async def handle(request: Request) -> None:
                global requests
                requests += 1
                state = self.lifespan.state if self.lifespan is not None else None
                scope = build_scope(request, client=peer, server=local, state=state)
                if wants_websocket(request.method, request.headers):
                    await self._websocket(conn, io, request, scope, log)
                    return
                await HTTPCycle(conn, io, scope, log).run(self.app)

        else:

            async def handle(request: Request) -> None:
                global requests
                requests += 1
                body = await read_body(conn, io, log)
                if body is None:
                    return
                threaded = self.pool is not None
                environ = build_environ(
                    request, body, client=peer, server=local, multithread=threaded
                )
                what = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
                if not self._told_wsgi_upgrade and wants_websocket(request.method, request.headers):
                    self._told_wsgi_upgrade = True
                    say(WSGI_UPGRADE.format(what=what))
                if self.pool is not None:
                    sink = ThreadSink(conn, io, log)
                    await self.pool.run(lambda: run_wsgi(self.app, environ, sink, what))
                    return
                # On the loop: the response piles up, then goes out whole.
                inline = ConnectionSink(conn, io.now, log)
                run_wsgi(self.app, environ, inline, what)
                data = b"".join(inline.out)
                if data:
                    await io.write(data)

        try:
            await serve_connection(conn, io, handle, log, self.stopping)
            await io.close(conn.linger)
        except (ResponseError, ClientDisconnected):
            writer.close()
        except Exception as e:
            report_app_error("the server failed on a connection (a bug in summon):", e)
            writer.close()
        except asyncio.CancelledError:
            # Cut off after the grace. Not re-raised: this task is the connection's root
            # (nobody awaits it), and the stream's done-callback would log a cancelled one.
            writer.close()
        finally:
            self._connections.pop(task, None)

    async def _websocket(
        self,
        conn: HTTPConnection,
        io: StreamIO,
        request: Request,
        scope: dict[str, Any],
        log: Callable[[Exchange], None],
    ) -> None:
        """An upgrade to WebSocket: websocket.py (and wsproto) imported at the first one."""
        try:
            from summon.runtime.http.websocket import serve_websocket
        except ImportError as e:  # an image built without wsproto
            if not self._told_no_websocket:
                self._told_no_websocket = True
                say(f"WebSocket requests are answered 501: {e} (rebuild the image)")
            body = b"501 Not Implemented: no WebSocket in this image\n"
            log(conn.respond(501, [(b"content-type", b"text/plain")], body, io.now()))
            await flush(conn, io, log)
            return
        await serve_websocket(self.app, conn, io, request, scope, log, self.stopping)


async def serve(
    app: Callable[..., Any],
    interface: str,
    stack: Stack,
    port: int,
    settings: Settings,
    console: Callable[[str], None] | None = None,
    label: str = "",
    warm: Sequence[str] = (),
) -> int:
    """Serve the WSGI or ASGI `app` on `port` of `stack` until cancelled; the exit status.

    `console` takes the access log and the "serving" line (the Console device's write);
    `label` names the app in that line ("module:attr"); `warm`: paths asked for first.
    """
    return await HTTPServer(app, interface, settings, console).serve(stack, port, label, warm)
