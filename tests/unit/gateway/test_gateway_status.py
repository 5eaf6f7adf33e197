"""The status server: the page, the JSON and the Prometheus text, over a real h11 exchange."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from typing import Any

from summon.gateway.status import StatusServer, metrics_text

SERVICE: dict[str, Any] = {
    "name": "web", "address": "127.1.2.3", "ports": [80], "image": "http:gw",
    "target": "sandbox", "state": "up", "error": "", "boots": 2, "failures": 1,
    "cold_requests": 3, "warm_requests": 4, "open_connections": 0,
    "last_boot_seconds": 0.31, "memory_bytes": 9_000_000,
    "bom": {"python": "3.11.2", "modules": 163, "packages": ["h11 0.16.0"]},
}  # fmt: skip


def test_metrics_text() -> None:
    down = {**SERVICE, "name": "db", "state": "down", "memory_bytes": None}
    text = metrics_text([SERVICE, down])
    assert "# TYPE summon_gateway_boots_total counter" in text
    assert 'summon_gateway_boots_total{service="web"} 2\n' in text
    assert 'summon_gateway_up{service="web"} 1\n' in text
    assert 'summon_gateway_up{service="db"} 0\n' in text
    assert 'summon_gateway_last_boot_seconds{service="web"} 0.31\n' in text
    assert 'summon_gateway_memory_bytes{service="db"}' not in text  # no instance: no sample


def test_served_over_http() -> None:
    async def snapshot() -> list[dict[str, Any]]:
        return [SERVICE]

    def get(port: int, path: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        out = (r.status, r.getheader("content-type") or "", r.read())
        # A second request on the same connection: keep-alive works.
        conn.request("GET", path)
        assert conn.getresponse().read() == out[2]
        conn.close()
        return out

    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = StatusServer(snapshot)
        await server.start("127.0.0.1", port)
        try:
            status, ctype, body = await asyncio.to_thread(get, port, "/")
            assert status == 200 and ctype.startswith("text/html")
            assert b"booted in 0.31 s" in body and b"Python 3.11.2" in body
            assert b"163 modules" in body and b"h11 0.16.0" in body
            status, _, body = await asyncio.to_thread(get, port, "/status.json")
            assert json.loads(body)["services"][0]["name"] == "web"
            status, ctype, body = await asyncio.to_thread(get, port, "/metrics")
            assert ctype.startswith("text/plain; version=0.0.4")
            status, _, _ = await asyncio.to_thread(get, port, "/nope")
            assert status == 404
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 20))
