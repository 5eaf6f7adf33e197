"""The VM's two serial ports: the app's console (ttyS0), and the runtime's control port (ttyS1).

The console carries everything the app and the kernel print, shown to the user as it comes:
the app may print anything there, an ASCII record separator included, and none of it is read
as a message. The control port is a second UART only the runtime writes (summon.runtime.vm
opens it before the app runs), on a socketpair of the host's: lines starting with an ASCII
record separator, READY once the guest is set up, APP_UP at the snapshot point (what
listens), RESUMED once it has processed the host's resume message, the app's figures when
asked, the runtime's reason when it failed, and the exit status at the end. The host's resume
message goes the other way on it.

Why a guest ended (crash_reason) is the runtime's reason from the control port first. A
console line "summon: ..." counts only while no app code can have run (before READY, in a
guest not restored from a snapshot): after that, the app's output could say anything there,
and a line it printed replaced the real cause (an out-of-memory kill) in the host's error.

After the exit status the console shows all but the kernel's own "reboot: Restarting system"
(the runtime's reboot(2)): the app's last output, which may come after the status (the two
ports are read apart), is shown still.
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
# The longest console line kept for error messages, and the longest control line (the
# runtime's figures, what listens: about 200 bytes); a longer one is dropped.
MAX_LINE = 4096
KERNEL_RESTART = b"reboot: Restarting system"  # what the kernel says at the runtime's reboot


class SerialConsole:
    """What the user sees (feed: the console) and what the runtime tells the host (control).

    The guest's tty turns each newline into CR LF; the user gets plain newlines back.
    """

    MARK = guest.MARK.encode()

    def __init__(self) -> None:
        self.ready = False
        self.app_up: str | None = None  # "80/tcp": the guest waits at its snapshot point
        self.resumed = 0  # resume messages the guest has processed
        self.status: int | None = None
        self.failed = ""  # the runtime's own reason, from the control port (FAILED_PREFIX)
        # Restored from a snapshot: the app ran before, though this console saw no READY.
        self.restored = False
        self.lines: deque[str] = deque(maxlen=50)  # the last lines shown, for error messages
        self.figures: dict[str, float] = {}  # the app's own figures, as it last reported them
        self._carry = b""
        self._partial = b""
        self._pending = b""  # the control port's unfinished line
        self._overlong = False  # the control line under way passed MAX_LINE: dropped
        self._held = b""  # an unfinished line that may be KERNEL_RESTART
        self._restart_held = False  # a KERNEL_RESTART line, not shown yet

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the console; return those to show (CR LF as LF; all but the
        kernel's KERNEL_RESTART line at the end of a guest that sent its exit status)."""
        data = self._carry + data
        self._carry = b""
        if data.endswith(b"\r"):  # the LF of a CR LF may be in the next read
            data, self._carry = data[:-1], b"\r"
        out = data.replace(b"\r\n", b"\n")
        self._remember(out)
        # A KERNEL_RESTART line is held until a line follows it (then it was the app's) or
        # the console ends: the two ports are read apart, so the status the runtime sent
        # before its reboot may be read after the console's last bytes.
        *complete, held = (self._held + out).split(b"\n")
        shown = b""
        for line in complete:
            if self._restart_held and self.status is None:
                shown += KERNEL_RESTART + b"\n"
            self._restart_held = line == KERNEL_RESTART
            if not self._restart_held:
                shown += line + b"\n"
        if held and KERNEL_RESTART.startswith(held):
            self._held = held
        else:
            self._held, shown = b"", shown + held
        return shown

    def end(self) -> bytes:
        """The console is at its end (the control port read to its end too): what is left
        to show."""
        left, restart = self._held + self._carry, self._restart_held
        self._held = self._carry = b""
        self._restart_held = False
        if self.status is not None:  # the kernel's line at the runtime's reboot: not shown
            return b"" if left.rstrip(b"\r") == KERNEL_RESTART else left
        return (KERNEL_RESTART + b"\n" if restart else b"") + left

    def control(self, data: bytes) -> None:
        """Take bytes from the control port; act on each complete line the runtime wrote."""
        *complete, self._pending = (self._pending + data).split(b"\n")
        for line in complete:
            if self._overlong:  # the end of a line too long to be the runtime's
                self._overlong = False
                continue
            line = line.rstrip(b"\r")
            if line.startswith(self.MARK) and len(line) <= MAX_LINE:
                self._message(line[len(self.MARK) :].decode(errors="replace"))
        if len(self._pending) > MAX_LINE:
            self._pending, self._overlong = b"", True

    def _message(self, line: str) -> None:
        if line == guest.READY:
            self.ready = True
        elif line.startswith(guest.APP_UP):
            self.app_up = line[len(guest.APP_UP) :].strip()
        elif line == guest.RESUMED:
            self.resumed += 1
        elif line.startswith(app_stats.STATS_PREFIX):
            self.figures = app_stats.parse(line[len(app_stats.STATS_PREFIX) :])
        elif line.startswith(guest.FAILED_PREFIX):
            self.failed = line[len(guest.FAILED_PREFIX) :].strip()
        elif line.startswith(guest.STATUS_PREFIX):
            with contextlib.suppress(ValueError):
                self.status = int(line[len(guest.STATUS_PREFIX) :].strip())

    def _remember(self, out: bytes) -> None:
        # Each line's last MAX_LINE bytes: a line without end is not copied again at each read.
        text = self._partial + out
        *complete, partial = text.split(b"\n")
        self._partial = partial[-MAX_LINE:]
        for line in complete:
            self.lines.append(line[-MAX_LINE:].decode(errors="replace").rstrip("\r"))

    def crash_reason(self) -> str:
        """The line that says why the guest died (a cause before the panic it led to)."""
        if self.failed:  # the runtime's own reason, on the port only it writes
            return self.failed
        lines = [*self.lines, self._partial.decode(errors="replace")]
        runtime = [line for line in lines if line.startswith("summon: ")]
        if runtime and not self.ready and not self.restored:
            # Before the app: the runtime's line when it could not even open the control port.
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
