"""What the Piñata counts, and the page on port 8080 that shows it.

Every attempt ends in one outcome per port: "gave the secret", "refused: <reason>" (the TLS
error's fixed reason: "no certificate", "unknown CA", "expired", "hostname mismatch",
"protocol version refused", "handshake timeout"...), "lost" (the peer went away), "no
answer" (a connect-back found no one), or "busy". GET / is a plain-text table, GET
/status.json the same as JSON; anything else is 404 or 405. One request per connection.
"""

from __future__ import annotations

import asyncio
import json
import time

import h11

STATUS_PORT = 8080
MAX_REQUEST_BYTES = 8 * 1024
REQUEST_TIMEOUT = 5.0


class Tally:
    """Attempts by port and outcome, since start."""

    def __init__(self) -> None:
        self.started = time.time()
        self.by_port: dict[int, dict[str, int]] = {}

    def count(self, port: int, outcome: str) -> None:
        outcomes = self.by_port.setdefault(port, {})
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    def as_json(self) -> dict[str, object]:
        return {
            "since": int(self.started),
            "attempts": sum(sum(o.values()) for o in self.by_port.values()),
            "secrets_given": sum(o.get("gave the secret", 0) for o in self.by_port.values()),
            "ports": {str(p): dict(sorted(o.items())) for p, o in sorted(self.by_port.items())},
        }

    def as_text(self) -> str:
        summary = self.as_json()
        lines = [
            "The Piñata: a secret for whoever presents a certificate from a CA whose key is gone.",
            f"attempts: {summary['attempts']}   secrets given: {summary['secrets_given']}",
            "",
        ]
        for port, outcomes in sorted(self.by_port.items()):
            for outcome, n in sorted(outcomes.items(), key=lambda item: (-item[1], item[0])):
                lines.append(f"{port:>6}  {n:>8}  {outcome}")
        return "\n".join(lines) + "\n"


async def serve_status(stack: Stack, tally: Tally) -> Server:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(_answer(reader, writer, tally), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    return await stack.start_server(on_connection, STATUS_PORT)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tally: Tally) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(4096)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request) or event is h11.PAUSED:
            break
        if isinstance(event, h11.ConnectionClosed):
            return
    assert isinstance(event, h11.Request)
    target = event.target.split(b"?", 1)[0]
    if event.method not in (b"GET", b"HEAD"):
        status, kind, body = 405, b"text/plain", b"only GET and HEAD\n"
    elif target == b"/":
        status, kind, body = 200, b"text/plain; charset=utf-8", tally.as_text().encode()
    elif target == b"/status.json":
        status, kind, body = 200, b"application/json", json.dumps(tally.as_json()).encode()
    else:
        status, kind, body = 404, b"text/plain", b"not found\n"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    out = conn.send(h11.Response(status_code=status, headers=headers))
    if event.method != b"HEAD":
        out += conn.send(h11.Data(data=body))  # type: ignore[operator]
    out += conn.send(h11.EndOfMessage())  # type: ignore[operator]
    writer.write(out)  # type: ignore[arg-type]
    await writer.drain()


# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.devices import Server, Stack
