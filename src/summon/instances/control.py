"""The monitor's control socket: `stop` and `stats` ask the monitor, which owns the instance.

One JSON object per line each way, one request per connection, on a unix socket in the
instance folder (mode 0600, in a 0700 folder: only its owner reaches it).

    {"op": "stats"}             -> {"ok": true, "running": true, "memory_bytes": N,
                                    "memory_limit": N|null (the target's cap on it),
                                    "cpu_seconds": F, "network": {counter: N},
                                    "clock": F (the monitor's monotonic)}
    {"op": "stop", "grace": F}  -> {"ok": true, "exit_code": N|null}, once it has exited
    anything else               -> {"ok": false, "error": "..."}
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from summon.threads import block_signals_in_thread

SOCKET_NAME = "control.sock"
# sun_path holds 108 bytes; deeper folders are reached through /proc/self/fd/N/.
_SUN_PATH_MAX = 100

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves requests on folder/control.sock, each on a thread of its own."""

    def __init__(self, folder: Path, handle: Handler) -> None:
        self.path = folder / SOCKET_NAME
        self._handle = handle
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with _short_path(self.path) as where:
            self._sock.bind(where)
        os.chmod(self.path, 0o600)
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, name="summon-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        block_signals_in_thread()
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        block_signals_in_thread()
        with conn:
            try:
                conn.settimeout(5)
                request = json.loads(_read_line(conn))
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as e:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {e}"}
            else:
                conn.settimeout(None)
                try:
                    reply = self._handle(request)
                except Exception as e:  # one bad request must not take the monitor down
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(folder: Path, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the monitor of the instance in folder; OSError if unreachable."""
    path = folder / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        with _short_path(path) as where:
            sock.connect(where)
        sock.sendall(json.dumps(message).encode() + b"\n")
        line = _read_line(sock)
    try:
        reply = json.loads(line)
    except ValueError:
        raise OSError(f"the monitor answered {line[:80]!r}") from None
    if not isinstance(reply, dict):
        raise OSError(f"the monitor answered {line[:80]!r}")
    return reply


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            if not data:
                raise ConnectionError("the monitor closed the connection")
            break
        data += chunk
    return data.decode()


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """path itself if it fits in sun_path, else the same file through /proc/self/fd/N."""
    if len(os.fsencode(path)) < _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
