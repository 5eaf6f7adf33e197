"""A QMP client (QEMU's JSON machine protocol) over a socket QEMU was handed at start.

The instance makes a socketpair and gives QEMU one end (-chardev socket,fd=N): no path in
the file system, so nothing else can connect and no stale socket is left behind. Commands are
one JSON object a line; asynchronous events come between replies and are skipped. A file
descriptor travels with a command as SCM_RIGHTS (getfd), which is how a migration gets its
pipe without a shell.
"""

from __future__ import annotations

import array
import json
import socket
import threading
import time
from typing import Any

from summon.errors import SummonError

TIMEOUT = 10.0  # seconds for one reply; QEMU answers within milliseconds unless it is gone


class QmpError(SummonError):
    """QEMU refused a command, answered nonsense, or went away."""


class Qmp:
    """One QMP connection; commands from any thread, one at a time."""

    def __init__(self, sock: socket.socket, timeout: float = TIMEOUT) -> None:
        self._sock = sock
        self._timeout = timeout
        self._buffer = b""
        self._lock = threading.Lock()
        self._broken = ""
        self.greeting: dict[str, Any] = {}

    @staticmethod
    def argv(fd: int) -> list[str]:
        """QEMU's arguments for a QMP monitor on the inherited socket fd."""
        return ["-chardev", f"socket,id=qmp,fd={fd}", "-mon", "chardev=qmp,mode=control"]

    def handshake(self) -> None:
        """Read QEMU's greeting and leave capabilities negotiation (mandatory first step)."""
        with self._lock:
            self.greeting = self._read(time.monotonic() + self._timeout)
            if "QMP" not in self.greeting:
                raise QmpError(f"QEMU's monitor did not greet as QMP: {self.greeting!r}")
        self.command("qmp_capabilities")

    def command(
        self, name: str, arguments: dict[str, Any] | None = None, fds: tuple[int, ...] = ()
    ) -> Any:
        """Run a command; return its "return" value (QmpError for its "error").

        fds travel with it as SCM_RIGHTS (for getfd)."""
        message: dict[str, Any] = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        with self._lock:
            if self._broken:
                raise QmpError(self._broken)
            try:
                if fds:
                    rights = array.array("i", fds).tobytes()
                    self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
                else:
                    self._sock.sendall(data)
                deadline = time.monotonic() + self._timeout
                while True:
                    reply = self._read(deadline)
                    if "event" in reply:
                        continue
                    break
            except OSError as e:
                self._broken = f"QEMU's monitor is gone ({e.strerror or e})"
                raise QmpError(self._broken) from None
        if "error" in reply:
            error = reply["error"]
            raise QmpError(f"QEMU refused {name}: {error.get('desc', error)}")
        if "return" not in reply:
            raise QmpError(f"QEMU answered {name} with {reply!r}")
        return reply["return"]

    def hmp(self, command_line: str) -> str:
        """A human-monitor command (for those QMP lacks, such as hostfwd_add); its output."""
        out = self.command("human-monitor-command", {"command-line": command_line})
        return str(out or "").strip()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._broken = "QEMU's monitor did not answer in time"
                raise QmpError(self._broken)
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self._broken = "QEMU's monitor closed (QEMU exited)"
                raise QmpError(self._broken)
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            doc = json.loads(line)
        except ValueError:
            raise QmpError(f"QEMU's monitor sent a line that is not JSON: {line[:80]!r}") from None
        if not isinstance(doc, dict):
            raise QmpError(f"QEMU's monitor sent {doc!r}, not an object")
        return doc

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
