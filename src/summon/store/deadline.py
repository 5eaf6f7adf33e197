"""A bound on the whole wait for a registry's reply, not just on each read of it.

httpx's read timeout is per read: a server that sends its status line and headers a byte at
a time, each within the timeout, holds the client for as long as it likes, and httpx has no
timeout for a request as a whole. So the registry client's connections go through a network
backend whose reads share one deadline, set (thread by thread) for as long as summon waits
for a reply: `with reply_deadline(120): ...`. A read past it fails as a read timeout, with
Expired as its message, for the client to say which bound it was. Writes are not bounded
here: an upload's time is the uplink's.
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing
from collections.abc import Iterable, Iterator

import httpcore
import httpx

EXPIRED = "the reply's deadline passed"
_now = threading.local()


@contextlib.contextmanager
def reply_deadline(seconds: float) -> Iterator[None]:
    """Reads on this thread's registry connections end after `seconds` from the first."""
    _now.seconds, _now.deadline = seconds, None
    try:
        yield
    finally:
        _now.seconds = _now.deadline = None


def expired(e: BaseException) -> bool:
    """Whether e is a read that ran past reply_deadline."""
    return isinstance(e, httpx.ReadTimeout) and str(e) == EXPIRED


def _cut(timeout: float | None) -> float | None:
    seconds = getattr(_now, "seconds", None)
    if seconds is None:
        return timeout
    if _now.deadline is None:  # from the first read: a request's upload is not the reply
        _now.deadline = time.monotonic() + seconds
    end: float = _now.deadline
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout(EXPIRED)
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, _cut(timeout))
        except httpcore.ReadTimeout:
            _cut(None)  # the deadline's, if it has passed: said as such
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound(client: httpx.Client) -> httpx.Client:
    """client, its connections (direct or through the environment's proxy) made through the
    deadline's backend. httpx offers no hook for a network backend: this sets the one of
    httpcore's pool that each of its transports holds."""
    # Looked up, not assumed: an httpx without them leaves the bound out (the tests of
    # test_reply_headers.py fail) rather than every registry command.
    mounts = getattr(client, "_mounts", {})
    for transport in (getattr(client, "_transport", None), *mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            pool._network_backend = _Backend(pool._network_backend)
    return client
