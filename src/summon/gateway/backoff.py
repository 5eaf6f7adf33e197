"""A service that keeps failing is not booted again at once, connection after connection.

A service whose app died on every request (or whose boot kept failing) was booted once per
connection: each client cost a whole boot. After the second failure in a row the next boot
waits FIRST seconds, doubling with each further failure up to MOST; meanwhile a connection
is answered 503 with Retry-After and closed (docs/gateway.md), and a DNS query boots
nothing. It ends with a success: a request the app answered, or an instance that lived
until the gateway stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket

from summon.gateway.sharing import budget

FIRST = 1.0  # seconds: the wait after the second failure in a row
MOST = 30.0  # seconds: the longest wait
DRAIN = 1.0  # seconds a refused client has to take the answer before it is closed


class Backoff:
    __slots__ = ("streak", "until")

    def __init__(self) -> None:
        self.streak = 0  # failures in a row
        self.until = 0.0  # (monotonic) no boot before this

    def failed(self, now: float) -> float:
        """A boot failed or the app died on its own: the wait before the next boot."""
        self.streak += 1
        wait = 0.0 if self.streak < 2 else min(FIRST * 2 ** (self.streak - 2), MOST)
        self.until = now + wait
        return wait

    def ok(self) -> None:
        self.streak = 0
        self.until = 0.0

    def left(self, now: float) -> float:
        """Seconds until a boot may be tried again (0: now)."""
        return max(self.until - now, 0.0)


def unavailable(name: str, wait: float) -> bytes:
    retry = max(math.ceil(wait), 1)
    body = f"service {name} keeps failing; next boot in {retry} s\n".encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        + f"Retry-After: {retry}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        + body
    )


async def refuse(conn: socket.socket, answer: bytes) -> None:
    """Answer conn and close it once the client has had it (or DRAIN seconds passed): closed
    at once with its request unread, the kernel would reset it, answer and all. It counts
    as a held connection meanwhile: a flood of them cannot take the files a boot needs."""
    loop = asyncio.get_running_loop()
    budget.held += 1
    try:
        conn.setblocking(False)
        conn.send(answer)  # small: the socket's buffer takes it whole
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN):
                while await loop.sock_recv(conn, 4096):
                    pass
    except OSError:
        pass
    finally:
        conn.close()
        budget.held -= 1
