"""The app inside a browser tab: start it with its devices, then answer the service worker.

The page's worker (site/worker.js) unpacks the site's app bundle at / in Pyodide's file
system (the image's own paths: /etc/summon/app.json, /app, /usr/lib/summon, /data), then:

    app = BrowserApp("/")
    await app.start()              # the entry runs as a task until it listens on its port
    await app.exchange_for_js(...) # once per fetch the service worker forwards

The devices are the image runtime's own (summon.runtime.injection.Devices: Console to stdout,
which the worker sends to the page and the browser console; Clock and Random on time and
os.urandom, which Pyodide maps to the browser's clock and crypto.getRandomValues; KV_RO on the
bundled /data folders), except the Stack: a MemoryStack, whose connections the bridge makes
one per request. So an app written against summon.devices runs unchanged.

Runs inside Pyodide (copied into the site as summon_browser) and under CPython in the unit
tests: stdlib only, plus the image's summon.runtime; nothing Pyodide-specific here.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import warnings

from summon.runtime import config as app_config
from summon.runtime import hints, init, injection
from summon.runtime.config import Fail, host_path

from . import content
from .cookies import CookieJar
from .http1 import BadRequest, BadResponse, Response, ResponseParser, encode_request
from .stack import MemoryStack

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from summon.devices import Console

    from .served import Responder

READ_SIZE = 64 * 1024
ENTRY_KINDS = ("function", "wsgi", "asgi")
ANSWER_TIMEOUT = 60.0  # seconds an app may take to answer one request before it is a 504


class AppFailed(Exception):
    """The app could not start, or stopped: the message is what the page shows."""


class _Devices(injection.Devices):
    """The image runtime's devices, with the Stack swapped for the in-memory one."""

    def __init__(self, cfg: app_config.AppConfig, root: str, stack: MemoryStack) -> None:
        super().__init__(cfg, root)
        self._memory_stack = stack

    def get(self, kind: str, param: str) -> object:
        if kind == "Stack":
            return self._memory_stack
        return super().get(kind, param)


def plain(status: int, reason: str, text: str) -> Response:
    """A short text response made by the bridge itself (not by the app)."""
    body = (text.rstrip("\n") + "\n").encode("utf-8", "replace")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Summon-Bridge", "1"),  # tells an error of the bridge from one of the app
    ]
    return Response(status, reason, headers, body)


# summon.kv's RuntimeWarning where it cannot flock its store (kv/backend.py), as Pyodide has
# no fcntl; shown on the page's error panel at every start of a KV_RW app, while the tab
# already is the store's one opener.
NO_FLOCK_WARNING = r".*: no exclusive lock \(this platform has no fcntl\)"


class BrowserApp:
    """One app in a page: its config, its entry's task, and the stack its server listens on."""

    def __init__(
        self, root: str = "/", answer_timeout: float = ANSWER_TIMEOUT, volumes_held: bool = False
    ) -> None:
        self.root = root
        # The worker holds the volumes under a Web Lock (worker.js): this tab is their one
        # opener, so summon.kv's warning that it cannot flock (no fcntl) is no news.
        self.volumes_held = volumes_held
        self.stack = MemoryStack()
        self.answer_timeout = answer_timeout
        self.port = 0  # the port requests go to, once start() has returned
        self.name = ""
        self._task: asyncio.Future[Any] | None = None
        self._respond: Responder | None = None  # a WSGI or ASGI entry's (served.py)
        self.cookies = CookieJar()  # what a browser keeps of Set-Cookie (cookies.py)

    # --- starting -----------------------------------------------------------------------------

    def _config(self) -> app_config.AppConfig:
        try:
            return app_config.load(host_path(self.root, app_config.APP_JSON))
        except app_config.ConfigError as e:
            raise AppFailed(str(e)) from None

    async def start(self) -> None:
        """Run the entry until it listens; AppFailed (with the traceback) if it cannot."""
        cfg = self._config()
        self.name = cfg.name
        if cfg.entry_kind not in ENTRY_KINDS:
            raise AppFailed(
                f"entry {cfg.entry} is a {cfg.entry_kind}: in a browser an app's entry must be "
                "a function that asks for a Stack device (summon.devices), or a WSGI or ASGI app"
            )
        for path in reversed(cfg.path):
            folder = host_path(self.root, path)
            if folder not in sys.path:
                sys.path.insert(0, folder)
        for key, value in cfg.env.items():
            os.environ.setdefault(key, value)
        # The worker mounted every volume of the image on IndexedDB (IDBFS) before this ran
        # (worker.js): a KV_RW store finds its volume there, saved after each request.
        os.environ.setdefault(injection.VOLUMES_ENV, ":".join(cfg.volumes))
        if self.volumes_held:
            warnings.filterwarnings("ignore", NO_FLOCK_WARNING, RuntimeWarning)
        sys.argv = [cfg.entry, *cfg.args]
        try:
            # The one import by a name known only at run time: the app's entry (app.json).
            module = importlib.import_module(cfg.entry_module)
        except BaseException as e:
            raise AppFailed(describe(e, f"importing the entry module {cfg.entry_module!r}")) from e
        fn = getattr(module, cfg.entry_function, None)
        if fn is None or not callable(fn):
            raise AppFailed(
                f"entry {cfg.entry}: module {cfg.entry_module!r} has no callable "
                f"{cfg.entry_function!r}"
            )
        devices = _Devices(cfg, self.root, self.stack)
        if cfg.entry_kind != "function":
            if cfg.entry_call is not None:  # an app factory: it returns the app
                try:
                    fn = fn(*cfg.entry_call[0], **cfg.entry_call[1])
                except BaseException as e:
                    raise AppFailed(describe(e, f"calling {cfg.entry}")) from e
            await self._serve(cfg, fn, devices)
            return
        try:
            args, kwargs, _ = injection.resolve_devices(fn, devices, cfg.entry)
        except Fail as e:
            raise AppFailed(str(e)) from None
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            raise AppFailed(describe(e, f"calling {cfg.entry}")) from e
        if not hasattr(result, "__await__"):
            raise AppFailed(
                f"entry {cfg.entry} returned (exit status {init.exit_status(result)}) without "
                "listening on a port: in a browser the app must serve HTTP over its Stack"
            )
        self._task = asyncio.ensure_future(result)
        listening = asyncio.ensure_future(self.stack.wait_listening(http_port(cfg)))
        await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if listening.done():
            self.port = listening.result()
            self._task.add_done_callback(_report_end)
            return
        listening.cancel()
        raise AppFailed(self._ending(cfg.entry))

    async def _serve(self, cfg: app_config.AppConfig, app: Any, devices: _Devices) -> None:
        """A WSGI or ASGI entry: the runtime's server answers each request's bytes."""
        from .served import ServedAppFailed, responder

        console: Console = devices.get("Console", "log")  # type: ignore[assignment]
        try:
            self._respond = await responder(cfg.entry_kind, app, console.write)
        except ServedAppFailed as e:
            raise AppFailed(f"entry {cfg.entry}: {e}") from None
        except BaseException as e:
            raise AppFailed(describe(e, f"starting the {cfg.entry_kind.upper()} app")) from e
        self.port = http_port(cfg) or 0
        self._task = asyncio.get_running_loop().create_future()  # served until the page goes

    def _ending(self, entry: str) -> str:
        task = self._task
        assert task is not None and task.done()
        if task.cancelled():
            return f"entry {entry} was cancelled before it listened on a port"
        exc = task.exception()
        if exc is None:
            status = init.exit_status(task.result())
            return f"entry {entry} returned (exit status {status}) before it listened on a port"
        if isinstance(exc, SystemExit):
            return f"entry {entry} exited (status {init.exit_status(exc.code)}) before listening"
        return describe(exc, f"running {entry}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- answering ----------------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        host: str = "localhost",
    ) -> Response:
        """The app's response to one request: a new in-memory connection, bytes both ways.

        Errors of the bridge are responses too, marked X-Summon-Bridge: 400 for a fetch that
        cannot be written as HTTP/1.1, 502 for an answer that is not HTTP/1.1, 503 when the
        app is not running, 504 when it does not answer within answer_timeout.

        The tab's cookie jar does the browser's part: its cookies go with the request, and
        the response's Set-Cookie fields go into it (a service worker could pass neither).
        Framing refusals allow the page shell's frame (framable).
        """
        if not self.running:
            return plain(503, "Service Unavailable", "the app is not running (see the page's log)")
        try:
            request = encode_request(
                method, target, self.cookies.add_to(target, headers), body, host
            )
        except BadRequest as e:
            return plain(400, "Bad Request", f"summon: this request cannot reach the app: {e}")
        parser = ResponseParser(head=method.upper() == "HEAD")
        try:
            await asyncio.wait_for(self._answer(request, parser, host), self.answer_timeout)
        except ConnectionRefusedError:
            return plain(503, "Service Unavailable", f"the app no longer listens on {self.port}")
        except BadResponse as e:
            return plain(502, "Bad Gateway", f"summon: the app's answer is not HTTP/1.1: {e}")
        except TimeoutError:
            return plain(
                504, "Gateway Timeout", f"the app did not answer in {self.answer_timeout:g} s"
            )
        try:
            response = content.decode(parser.response, head=method.upper() == "HEAD")
        except BadResponse as e:
            return plain(502, "Bad Gateway", f"summon: {e}")
        response.headers = framable(self.cookies.take(target, response.headers))
        return response

    async def _answer(self, request: bytes, parser: ResponseParser, host: str) -> None:
        """Send request to the app, feed parser its answer until the response is complete."""
        if self._respond is not None:
            name, _, port = host.rpartition(":")
            server = (name, int(port)) if port.isdigit() else (host, 80)
            parser.feed(await self._respond(request, server))
            parser.feed_eof()
            return
        reader, writer = self.stack.connect(self.port)
        try:
            writer.write(request)
            while not parser.complete:
                data = await reader.read(READ_SIZE)
                if not data:
                    parser.feed_eof()
                    return
                parser.feed(data)
        finally:
            writer.close()

    async def exchange_for_js(
        self, method: str, target: str, headers: Any, body: Any, host: str
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """exchange() with what the page's JavaScript passes (proxies of arrays), returning a
        tuple that Pyodide's toJs() turns into [status, reason, [[name, value]...], bytes]."""
        response = await self.exchange(method, target, _as_pairs(headers), _as_bytes(body), host)
        return response.status, response.reason, response.headers, response.body

    def saved_cookies(self) -> list[list[object]] | None:
        """The jar's rows when it changed since last asked (the worker then saves them), else
        None."""
        return self.cookies.rows() if self.cookies.changed else None

    def load_cookies(self, rows: Any) -> None:
        """What the worker saved (a Pyodide JsProxy of the rows, or the rows)."""
        self.cookies.load(rows.to_py() if hasattr(rows, "to_py") else rows)


def http_port(cfg: app_config.AppConfig) -> int | None:
    """The port requests go to: the manifest's first TCP port (None: the first one served)."""
    for spec in cfg.ports:
        number, _, proto = spec.partition("/")
        if (proto or "tcp") == "tcp" and number.isdigit():
            return int(number)
    return None


def describe(exc: BaseException, doing: str) -> str:
    """What the page shows for an exception: where, then the traceback as Python prints it."""
    import traceback  # Pyodide has it loaded already; only errors pay for it under CPython

    text = "".join(traceback.format_exception(exc)).rstrip()
    hint = hints.missing_module_hint(exc)
    return f"{doing} failed:\n{text}" + (f"\n{hint}" if hint else "")


def _report_end(task: asyncio.Future[Any]) -> None:
    """Say on stderr (which the page shows) why the app stopped serving."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        message = f"the app returned (exit status {init.exit_status(task.result())})"
    else:
        message = describe(exc, "the app")
    print(f"summon: {message}; it no longer answers requests", file=sys.stderr, flush=True)


def _as_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return bytes(body.to_bytes())  # a Pyodide JsProxy of a Uint8Array


def _as_pairs(headers: Any) -> list[tuple[str, str]]:
    if hasattr(headers, "to_py"):  # a Pyodide JsProxy of an array of [name, value] arrays
        headers = headers.to_py()
    return [(str(name), str(value)) for name, value in headers]


def framable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """headers, with the app's refusal to be framed narrowed to other origins.

    The app's pages show in a frame of the page shell, at the same origin. An app saying
    X-Frame-Options: DENY (Django's default middleware) or CSP frame-ancestors 'none' would
    get a blank frame; as SAMEORIGIN and 'self' it keeps every other site from framing it.
    """
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower == "x-frame-options" and value.strip().lower() == "deny":
            value = "SAMEORIGIN"
        elif lower in ("content-security-policy", "content-security-policy-report-only"):
            value = ";".join(_frame_ancestors_self(d) for d in value.split(";"))
        out.append((name, value))
    return out


def _frame_ancestors_self(directive: str) -> str:
    words = directive.split()
    if not words or words[0].lower() != "frame-ancestors":
        return directive
    sources = [w for w in words[1:] if w.lower() != "'none'"]
    if "'self'" not in (w.lower() for w in sources):
        sources.insert(0, "'self'")
    return " ".join([words[0], *sources])
