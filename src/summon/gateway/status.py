"""The gateway's status server (h11): an HTML page, /status.json and Prometheus /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import Awaitable, Callable
from typing import Any

import h11

Snapshot = Callable[[], Awaitable[list[dict[str, Any]]]]
READ_TIMEOUT = 10.0

# (metric suffix, snapshot key, type, help)
METRICS = (
    ("boots_total", "boots", "counter", "Instances booted."),
    ("boot_failures_total", "failures", "counter", "Boots that failed or apps that died."),
    ("cold_requests_total", "cold_requests", "counter", "Connections that arrived while down."),
    ("warm_requests_total", "warm_requests", "counter", "Connections that arrived while up."),
    ("up", "up", "gauge", "1 when the service has a running instance."),
    ("last_boot_seconds", "last_boot_seconds", "gauge", "Boot start to first byte, last boot."),
    ("memory_bytes", "memory_bytes", "gauge", "Resident memory of the service's instance."),
    ("open_connections", "open_connections", "gauge", "Client connections open now."),
)


def metrics_text(services: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for suffix, key, kind, text in METRICS:
        name = f"summon_gateway_{suffix}"
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for s in services:
            value = int(s["state"] == "up") if key == "up" else s.get(key)
            if value is None:
                continue
            label = s["name"].replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name}{{service="{label}"}} {value}')
    return "\n".join(lines) + "\n"


def _bom_line(bom: dict[str, Any]) -> str:
    if not bom:
        return "no bill of materials"
    parts = []
    if bom.get("python"):
        parts.append(f"Python {bom['python']}")
    if bom.get("modules") is not None:
        parts.append(f"{bom['modules']} modules")
    pkgs = bom.get("packages") or []
    if pkgs:
        parts.append("packages: " + ", ".join(pkgs))
    return "; ".join(parts)


def page(services: list[dict[str, Any]]) -> str:
    rows = []
    for s in services:
        if s.get("last_boot_seconds") is not None:
            boot = f"booted in {s['last_boot_seconds']:.2f} s"
        else:
            boot = "not booted yet"
        mem = f"{s['memory_bytes'] / 1e6:.1f} MB" if s.get("memory_bytes") is not None else "-"
        cells = [
            f"{s['name']}<br><small>{s['address']}:{','.join(map(str, s['ports']))}</small>",
            s["state"] + (f"<br><small>{html.escape(s['error'])}</small>" if s["error"] else ""),
            boot,
            f"{s['cold_requests']} cold / {s['warm_requests']} warm",
            f"{s['boots']} boots, {s['failures']} failures",
            mem,
            f"{html.escape(s['image'])} ({s['target']})<br><small>"
            + html.escape(_bom_line(s.get("bom") or {}))
            + "</small>",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("service", "state", "last boot", "requests", "boots", "memory", "image")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>summon gateway</title>"
        "<meta http-equiv='refresh' content='2'>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;text-align:left;"
        "vertical-align:top;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>summon gateway</h1><table><tr>{head}</tr>{''.join(rows)}</table></body></html>\n"
    )


class StatusServer:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def respond(self, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if path == "/":
            return 200, "text/html; charset=utf-8", page(await self.snapshot()).encode()
        if path == "/status.json":
            doc = {"services": await self.snapshot()}
            return 200, "application/json", json.dumps(doc, indent=1).encode() + b"\n"
        if path == "/metrics":
            text = metrics_text(await self.snapshot())
            return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    status, ctype, body = await self.respond(event.target.decode("latin-1"))
                    headers = [("content-type", ctype), ("content-length", str(len(body)))]
                    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=body)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    continue
                if isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
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
