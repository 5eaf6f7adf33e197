"""The VM's serial console: what the user sees, and the runtime's lines for the host.

The runtime (summon.runtime.vm) writes lines starting with an ASCII record separator: READY
once the guest is set up, APP_UP at the snapshot point (what listens), RESUMED once it has
processed the host's resume message, and the exit status at the end. Everything else is the
app's console.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque

from summon.runtime import stats as app_stats
from summon.runtime import vm as guest

# Console lines that say why a guest died, the cause first, and what to do about some.
CRASH_CAUSES = ("Initramfs unpacking failed", "Out of memory", "Kernel panic")
_MORE_MEMORY = " (too little memory for the image: give the VM more with -m)"
CRASH_HINTS = {"Initramfs unpacking failed": _MORE_MEMORY, "Out of memory": _MORE_MEMORY}
# The longest line the runtime marks (its figures, what listens: about 200 bytes). A MARK the
# app printed and never ended was held whole, waiting for its newline: every later byte of
# the console kept in the host's memory, copied again at each read, and shown to no one.
MAX_MARKED = 4096


class SerialConsole:
    """Splits the serial output into what the user sees and the runtime's lines for the host.

    The guest's tty turns each newline into CR LF; the user gets plain newlines back.
    """

    MARK = guest.MARK.encode()

    def __init__(self) -> None:
        self.ready = False
        self.app_up: str | None = None  # "80/tcp": the guest waits at its snapshot point
        self.resumed = 0  # resume messages the guest has processed
        self.status: int | None = None
        self.lines: deque[str] = deque(maxlen=50)  # the last lines shown, for error messages
        self.figures: dict[str, float] = {}  # the app's own figures, as it last reported them
        self._carry = b""
        self._partial = b""
        self._showing = True

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the serial port; return those to show."""
        data = self._carry + data
        self._carry = b""
        shown: list[bytes] = []
        self._showing = self.status is None  # after the status: the kernel's "reboot: ..."
        while data:
            at = data.find(self.MARK)
            if at < 0:
                if data.endswith(b"\r"):  # the LF of a CR LF may be in the next read
                    data, self._carry = data[:-1], b"\r"
                shown.append(data)
                break
            shown.append(data[:at])
            end = data.find(b"\n", at, at + MAX_MARKED)
            if end < 0:
                if len(data) - at < MAX_MARKED:
                    self._carry = data[at:]  # the newline may be in the next read
                    break
                # No line of the runtime's is this long: the app's output, shown as such.
                shown.append(data[at : at + MAX_MARKED])
                data = data[at + MAX_MARKED :]
                continue
            self._message(data[at + len(self.MARK) : end].rstrip(b"\r").decode(errors="replace"))
            data = data[end + 1 :]
            if self.status is not None:
                break
        out = b"".join(shown).replace(b"\r\n", b"\n")
        self._remember(out)
        return out if self._showing else b""

    def _message(self, line: str) -> None:
        if line == guest.READY:
            self.ready = True
        elif line.startswith(guest.APP_UP):
            self.app_up = line[len(guest.APP_UP) :].strip()
        elif line == guest.RESUMED:
            self.resumed += 1
        elif line.startswith(app_stats.STATS_PREFIX):
            self.figures = app_stats.parse(line[len(app_stats.STATS_PREFIX) :])
        elif line.startswith(guest.STATUS_PREFIX):
            with contextlib.suppress(ValueError):
                self.status = int(line[len(guest.STATUS_PREFIX) :].strip())

    def _remember(self, out: bytes) -> None:
        # Each line's last MAX_MARKED bytes: a line without end was kept whole and copied
        # again at each read, as a marked one was.
        text = self._partial + out
        *complete, partial = text.split(b"\n")
        self._partial = partial[-MAX_MARKED:]
        for line in complete:
            self.lines.append(line[-MAX_MARKED:].decode(errors="replace").rstrip("\r"))

    def crash_reason(self) -> str:
        """The line that says why the guest died (a cause before the panic it led to)."""
        lines = [*self.lines, self._partial.decode(errors="replace")]
        runtime = [line for line in lines if line.startswith("summon: ")]
        if runtime:  # the runtime's own one-line reason (it could not set the guest up)
            return runtime[-1].removeprefix("summon: ")
        for cause in CRASH_CAUSES:
            for line in lines:
                if cause in line:
                    said = line.strip().lstrip("[]0123456789. ").strip()
                    return said + CRASH_HINTS.get(cause, "")
        for line in reversed(lines):
            if line.strip():
                return f"last console line: {line.strip()}"
        return "the guest printed nothing"


def resume_message() -> bytes:
    """The line that runs a guest on from its snapshot point: the host's clock and entropy."""
    entropy = os.urandom(guest.RESUME_ENTROPY).hex()
    return f"{guest.MARK}{guest.RESUME_PREFIX}{time.time_ns()} {entropy}\n".encode()


def parse_exit_status(log: bytes) -> int | None:
    """The exit status a console log ends with, if the runtime got to write one."""
    console = SerialConsole()
    console.feed(log)
    return console.status
