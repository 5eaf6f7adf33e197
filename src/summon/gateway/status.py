"""The gateway's status server (h11): an HTML page, /status.json and Prometheus /metrics.

The page is the seed's Jitsu page: per service its state (the idle tier), "booted in X s,
N s ago", the app's own figures from inside the instance (summon.runtime.stats: GC
collections per generation, allocated blocks, resident memory, connections, requests), the
image's bill of materials with every vendored package and its version, and a small graph of
its last boots and thaws (inline SVG: no script, the page refreshes itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11

from summon.gateway import sharing

Snapshot = Callable[[], Awaitable[list[dict[str, Any]]]]
READ_TIMEOUT = 10.0  # seconds a client has to send a whole request's head
# Clients served at a time (as the DNS server's TCP ones): the next waits in the listener's
# backlog, not in one of the gateway's files: a flood of slow clients took every file
# descriptor, and the services' listeners could accept nothing (EMFILE).
MAX_CLIENTS = 64
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn

# (metric suffix, snapshot key, type, help): the gateway's own figures per service.
METRICS = (
    ("boots_total", "boots", "counter", "Instances booted."),
    ("thaws_total", "thaws", "counter", "Frozen instances thawed by a connection."),
    ("boot_failures_total", "failures", "counter", "Boots that failed or apps that died."),
    ("cold_requests_total", "cold_requests", "counter", "Connections that arrived while not up."),
    ("warm_requests_total", "warm_requests", "counter", "Connections that arrived while up."),
    ("up", "up", "gauge", "1 when the service has a running, unfrozen instance."),
    ("last_boot_seconds", "last_boot_seconds", "gauge", "Boot start to the app serving."),
    ("last_thaw_seconds", "last_thaw_seconds", "gauge", "How long the last thaw took."),
    ("memory_bytes", "memory_bytes", "gauge", "Resident memory of the service's instance."),
    ("open_connections", "open_connections", "gauge", "Connections the gateway holds now."),
)
# (metric, the app's figure (summon.runtime.stats), type, help): from inside the instance.
APP_METRICS = (
    ("summon_app_allocated_blocks", "blocks", "gauge", "Memory blocks the interpreter holds."),
    ("summon_app_resident_bytes", "rss", "gauge", "Resident memory of the app's process."),
    ("summon_app_uptime_seconds", "uptime", "gauge", "Seconds since the app's process started."),
    ("summon_app_connections_total", "accepted", "counter", "Connections the app took."),
    ("summon_app_connections_open", "active", "gauge", "Connections the app is serving."),
    ("summon_app_requests_total", "requests", "counter", "HTTP requests the runtime answered."),
)
GENERATIONS = 3
# html.escape's replacements, "&" first. Not the html module: it loads html.entities, a table
# of 2,000 names (~0.4 MB of the gateway's memory at rest) this page never looks up.
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"))


def escape(text: str) -> str:
    """text with & < > " ' as HTML entities (as html.escape): safe in content and attributes."""
    for char, entity in _ESCAPES:
        text = text.replace(char, entity)
    return text


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(services: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for suffix, key, kind, text in METRICS:
        name = f"summon_gateway_{suffix}"
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for s in services:
            value = int(s["state"] == "up") if key == "up" else s.get(key)
            if value is None:
                continue
            lines.append(f'{name}{{service="{_label(s["name"])}"}} {value}')
    name = "summon_gateway_state"
    lines += [f"# HELP {name} 1 for the service's state (its idle tier).", f"# TYPE {name} gauge"]
    for s in services:
        lines.append(f'{name}{{service="{_label(s["name"])}",state="{_label(s["state"])}"}} 1')
    name = "summon_app_gc_collections_total"
    lines += [f"# HELP {name} Garbage collections per generation.", f"# TYPE {name} counter"]
    for s in services:
        runtime = s.get("runtime") or {}
        for gen in range(GENERATIONS):
            if f"gc{gen}" in runtime:
                label = f'service="{_label(s["name"])}",generation="{gen}"'
                lines.append(f"{name}{{{label}}} {runtime[f'gc{gen}']}")
    for name, key, kind, text in APP_METRICS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for s in services:
            runtime = s.get("runtime") or {}
            if key in runtime:
                lines.append(f'{name}{{service="{_label(s["name"])}"}} {runtime[key]}')
    return "\n".join(lines) + "\n"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _boot_line(s: dict[str, Any], now: float) -> str:
    if s.get("last_boot_seconds") is None:
        return "not booted yet"
    starts = [h for h in s.get("boot_history") or () if h.get("how") in ("boot", "restore")]
    verb = "restored" if starts and starts[-1]["how"] == "restore" else "booted"
    line = f"{verb} in {s['last_boot_seconds']:.2f} s"
    if s.get("booted_at"):
        line += f", {_ago(max(0.0, now - s['booted_at']))}"
    if s.get("last_thaw_seconds") is not None:
        line += f"; thawed in {s['last_thaw_seconds'] * 1000:.1f} ms"
    return line


def _runtime_line(runtime: dict[str, Any]) -> str:
    if not runtime:
        return ""
    parts = []
    if all(f"gc{g}" in runtime for g in range(GENERATIONS)):
        counts = "/".join(str(runtime[f"gc{g}"]) for g in range(GENERATIONS))
        parts.append(f"GC {counts} (gen 0/1/2)")
    if "blocks" in runtime:
        parts.append(f"{runtime['blocks']:,} blocks")
    if "rss" in runtime:
        parts.append(f"RSS {runtime['rss'] / 1e6:.1f} MB")
    if "accepted" in runtime:
        parts.append(f"{runtime.get('active', 0)} open / {runtime['accepted']} connections")
    if "requests" in runtime:
        parts.append(f"{runtime['requests']} requests")
    return ", ".join(parts)


def _bom(bom: dict[str, Any]) -> str:
    if not bom:
        return "no bill of materials"
    parts = []
    if bom.get("python"):
        parts.append(f"Python {escape(str(bom['python']))}")
    if bom.get("modules") is not None:
        parts.append(f"{bom['modules']} modules")
    head = "; ".join(parts)
    packages = bom.get("packages") or []
    if not packages:
        return head + "; no vendored packages"
    items = "".join(f"<li>{escape(str(p))}</li>" for p in packages)
    return f"{head}<ul class='bom'>{items}</ul>"


def status_json(services: list[dict[str, Any]]) -> bytes:
    """{"services": [...]}, a service a line: json's C encoder, which indent= would not use
    (its Python one holds every piece of the whole document at once, ~1 MB for 200)."""
    lines = ",\n".join(json.dumps(s, separators=(", ", ": ")) for s in services)
    return ('{"services": [' + (f"\n{lines}\n" if lines else "") + "]}\n").encode()


def history_svg(history: list[dict[str, Any]], width: int = 160, height: int = 36) -> str:
    """Bars of the last boots (blue), restores from a snapshot (purple) and thaws (green),
    height by duration, newest right."""
    if not history:
        return ""
    top = max(float(h["seconds"]) for h in history) or 1.0
    step = width / max(len(history), 1)
    bars = []
    for i, h in enumerate(history):
        seconds = float(h["seconds"])
        tall = max(1.0, seconds / top * (height - 2))
        colour = {"boot": "#3a7bd5", "restore": "#8e44ad"}.get(h["how"], "#2e9d57")
        what = (
            f"{h['how']} {seconds * 1000:.1f} ms" if seconds < 1 else f"{h['how']} {seconds:.2f} s"
        )
        bars.append(
            f"<rect x='{i * step:.1f}' y='{height - tall:.1f}' width='{max(step - 1, 1):.1f}' "
            f"height='{tall:.1f}' fill='{colour}'><title>{what}</title></rect>"
        )
    label = f"longest {top * 1000:.0f} ms" if top < 1 else f"longest {top:.2f} s"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='boot, restore and thaw times, {label}'>{''.join(bars)}</svg>"
        f"<br><small>{label}</small>"
    )


def page(services: list[dict[str, Any]], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = []
    for s in services:
        memory = f"{s['memory_bytes'] / 1e6:.1f} MB" if s.get("memory_bytes") is not None else "-"
        runtime = _runtime_line(s.get("runtime") or {})
        state = escape(s["state"]) + (
            f"<br><small>{escape(s['error'])}</small>" if s["error"] else ""
        )
        if wait := s.get("backoff_seconds"):  # failing again and again (backoff.py)
            state += f"<br><small>backing off: next boot in {wait:.1f} s (503 meanwhile)</small>"
        cells = [
            f"<b>{escape(s['name'])}</b><br><small>{s['address']}:"
            f"{','.join(map(str, s['ports']))}</small>",
            state,
            _boot_line(s, now) + "<br>" + history_svg(s.get("boot_history") or []),
            f"{s['cold_requests']} cold / {s['warm_requests']} warm<br><small>{s['boots']} "
            f"boots, {s.get('thaws', 0)} thaws, {s['failures']} failures</small>",
            memory + (f"<br><small>{escape(runtime)}</small>" if runtime else ""),
            f"{escape(s['image'])} ({escape(s['target'])})<br><small>"
            + _bom(s.get("bom") or {})
            + "</small>",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("service", "state", "last boot", "requests", "memory and runtime", "image")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>summon gateway</title>"
        "<meta http-equiv='refresh' content='2'>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left;"
        "vertical-align:top;border-bottom:1px solid #ddd}ul.bom{margin:2px 0;padding-left:16px;"
        "columns:2}</style></head><body>"
        f"<h1>summon gateway</h1><table><tr>{head}</tr>{''.join(rows)}</table></body></html>\n"
    )


def origin_path(target: str) -> str:
    """The path of a request target, without its query: an absolute-form target's too
    (`GET http://host/metrics`, as a proxy sends it; RFC 9112 3.2.2: a server must accept
    it), which got 404."""
    if target[:7].lower() == "http://" or target[:8].lower() == "https://":
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return target.split("?", 1)[0]


class StatusServer:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Future[None] | None = None
        self._clients: set[asyncio.Future[None]] = set()
        self.served = 0  # pages answered: the gateway trims its heap after them at rest

    async def start(self, host: str, port: int) -> None:
        sock = sharing.listen(host, port, BACKLOG)
        self._listener = sock
        self._accepting = asyncio.ensure_future(self._accept(sock))

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        for client in list(self._clients):
            client.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _accept(self, listener: socket.socket) -> None:
        """Accept while fewer than MAX_CLIENTS are served; the next wait in the backlog."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(MAX_CLIENTS)
        while True:
            await slots.acquire()
            try:
                sock, _addr = await loop.sock_accept(listener)
            except OSError:  # out of files (EMFILE) or the client gone: try again shortly
                slots.release()
                await asyncio.sleep(0.1)
                continue
            client = asyncio.ensure_future(self._client(sock, slots))
            self._clients.add(client)
            client.add_done_callback(self._clients.discard)

    async def _client(self, sock: socket.socket, slots: asyncio.Semaphore) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            slots.release()
            return
        try:
            await self._serve(reader, writer)
        finally:
            slots.release()

    async def respond(self, target: str) -> tuple[int, str, bytes]:
        self.served += 1
        path = origin_path(target)
        if path == "/":
            return 200, "text/html; charset=utf-8", page(await self.snapshot()).encode()
        if path == "/status.json":
            return 200, "application/json", status_json(await self.snapshot())
        if path == "/metrics":
            text = metrics_text(await self.snapshot())
            return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        loop = asyncio.get_running_loop()
        # A request's head must come whole within READ_TIMEOUT of its start: a client that
        # sent a byte every few seconds (slowloris) held its connection, and its file, forever.
        deadline = loop.time() + READ_TIMEOUT
        try:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as e:  # not HTTP/1.1: say so, then close
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        hint = e.error_status_hint
                        await self._answer(conn, writer, hint, b"bad request\n", close=True)
                    break
                if event is h11.NEED_DATA:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    method = event.method
                    if event.http_version != b"1.1" and event.http_version != b"1.0":
                        # h11 parses any HTTP/d.d: an HTTP/2.0 request line got the page
                        await self._answer(conn, writer, 505, b"HTTP/1.x only\n", close=True)
                        break
                    if method not in (b"GET", b"HEAD"):
                        # its body is not read: the connection ends with this answer
                        await self._answer(conn, writer, 405, b"only GET and HEAD\n", close=True)
                        break
                    status, ctype, body = await self.respond(event.target.decode("latin-1"))
                    await self._answer(conn, writer, status, body, ctype, method == b"HEAD")
                    if conn.our_state is h11.MUST_CLOSE:  # HTTP/1.0, or Connection: close
                        break  # close now: the client may wait for the close to see the end
                    continue
                if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                        deadline = loop.time() + READ_TIMEOUT  # the next request's own
                        continue
                    if event is h11.PAUSED:
                        break
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    break
        except (h11.RemoteProtocolError, h11.LocalProtocolError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _answer(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        head: bool = False,
        close: bool = False,
    ) -> None:
        """One response; a HEAD request's has the headers of the GET's and no body."""
        headers = [("content-type", ctype), ("content-length", str(len(body)))]
        if status == 405:
            headers.append(("allow", "GET, HEAD"))
        if close:
            headers.append(("connection", "close"))
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        if not head:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        async with asyncio.timeout(READ_TIMEOUT):  # a client that never reads held its slot
            await writer.drain()
