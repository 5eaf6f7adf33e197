"""One running QEMU: its process, the serial console reader, stopping, readiness, stats.

The console is the VM's one serial port, on QEMU's stdin and stdout: its output is the
instance's log (<state>/console.log) and goes on to the spec's stdout (or summon's). Stopping
writes Ctrl-C (0x03) to the serial line: the runtime has made ttyS0 its controlling
terminal, so the guest's tty layer turns that byte into SIGINT for PID 1, which the runtime
treats like SIGTERM; the app shuts down cleanly and the VM resets (reboot=t, -no-reboot: QEMU
exits). microvm has no ACPI power button and no keyboard, and this needs no extra device or
driver. After the grace period QEMU is killed. QEMU also dies with summon (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO

from summon.errors import SummonError
from summon.targets.base import Instance, NotReady, RunSpec, Stats, process_stats
from summon.targets.qemu.serial import SerialConsole

STOP_RESEND = 1.0  # seconds between Ctrl-Cs while stopping (early in boot one may be lost)
_PR_SET_PDEATHSIG = 1
_CTRL_C = b"\x03"
# ^\\ (VQUIT): the guest's tty turns it into SIGQUIT for PID 1, the runtime's cue to print
# its figures on the console (summon.runtime.stats).
_CTRL_BACKSLASH = b"\x1c"
# Readiness: a connection the guest has not closed after PROBE_HOLD is accepted by the app;
# slirp accepts on the host port before the guest listens, then closes within a millisecond
# or two when the guest refuses.
PROBE_HOLD = 0.15
PROBE_RETRY = 0.02


class QemuInstance(Instance):
    """One QEMU process, its console reader, and its per-run files."""

    def __init__(self, spec: RunSpec, argv: list[str], output: IO[bytes] | None) -> None:
        self.spec = spec
        self.argv = argv
        self.console = SerialConsole()
        self.log_path = spec.state_dir / "console.log"
        self.error_path = spec.state_dir / "qemu.err"
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._killed = False
        self._released = False
        self._reported = False
        self._changed = threading.Condition()

    # --- starting ---

    def _start(self, boot_timeout: float) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent() -> None:
            # SIGKILL QEMU when the thread that started it dies, even by SIGKILL.
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

        with self.error_path.open("wb") as err:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                # Its own session: a Ctrl-C at the terminal reaches summon, which decides.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + boot_timeout
        with self._changed:
            while not self.console.ready:
                if self._proc.poll() is not None:
                    self._reader.join(5)
                    if self.console.ready:
                        break
                    self._reported = True  # this error says it; wait() must not again
                    raise SummonError(
                        f"the VM of {self.spec.image} stopped before the app started: "
                        f"{self._failure()} (console log: {self.log_path})"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    self._reported = True
                    raise SummonError(
                        f"the VM of {self.spec.image} did not come up within "
                        f"{boot_timeout:.0f}s: {self.console.crash_reason()} "
                        f"(console log: {self.log_path})"
                    )
                self._changed.wait(min(left, 0.1))

    def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with self.log_path.open("wb") as log:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write(data)
                log.flush()
                shown = self.console.feed(data)
                if shown:
                    self._show(shown)
                with self._changed:
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _show(self, data: bytes) -> None:
        """Pass console output on: to the output stream, else to the spec's stdout fd."""
        with contextlib.suppress(OSError, ValueError):
            if self._output is not None:
                self._output.write(data)
                self._output.flush()
            elif self.spec.stdout is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.spec.stdout, view) :]

    def _failure(self) -> str:
        """Why the VM ended without an exit status, in one phrase."""
        assert self._proc is not None
        reason = self.console.crash_reason()
        code = self._proc.returncode
        if code not in (0, None) and not self._killed:
            try:
                lines = self.error_path.read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            qemu_said = lines[-1] if lines else ""
            return f"QEMU exited with status {code}" + (f": {qemu_said}" if qemu_said else "")
        return reason

    # --- Instance ---

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def wait(self, timeout: float | None = None) -> int | None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._release()
        return self._status()

    def _status(self) -> int:
        status = self.console.status
        if status is not None:
            return status
        if self._killed:
            return 128 + signal.SIGKILL
        if not self._reported:
            self._reported = True
            sys.stderr.write(
                f"summon: the VM of {self.spec.image} stopped without an exit status: "
                f"{self._failure()} (console log: {self.log_path})\n"
            )
            sys.stderr.flush()
        return 1

    def stop(self, grace: float = 10.0) -> int:
        with self._lock:
            proc = self._proc
            try:
                if proc is not None and proc.poll() is None:
                    deadline = time.monotonic() + grace
                    while proc.poll() is None and time.monotonic() < deadline:
                        self._send(_CTRL_C)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(min(STOP_RESEND, max(0.0, deadline - time.monotonic())))
            finally:
                self._kill()
                self._release()
            if proc is None:
                return 128 + signal.SIGKILL
            return self._status()

    def _send(self, data: bytes) -> None:
        assert self._proc is not None
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()

    def _release(self) -> None:
        """Close the pipes, finish reading the console, drop per-run files. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._kill()
            if self._reader is not None:
                self._reader.join(10)
            if self._proc is not None:
                for pipe in (self._proc.stdin, self._proc.stdout):
                    with contextlib.suppress(OSError, ValueError):
                        if pipe is not None:
                            pipe.close()
            (self.spec.state_dir / "initrd").unlink(missing_ok=True)

    def stats(self) -> Stats:
        return process_stats(self.pid)

    def freeze(self) -> None:
        """The whole VM stops (SIGSTOP to QEMU): no guest CPU, its memory kept."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def runtime_stats(self, timeout: float = 0.5) -> dict[str, float]:
        """Ask the guest's runtime over the serial line; wait for its marked line."""
        if self._proc is None or self._proc.poll() is not None:
            return {}
        with self._changed:
            before = self.console.figures.get("seq")
            self._send(_CTRL_BACKSLASH)
            deadline = time.monotonic() + timeout
            while self.console.figures.get("seq") == before:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {}
                self._changed.wait(left)
            return dict(self.console.figures)

    def wait_ready(self, ports: tuple[int, ...], timeout: float) -> None:
        """Wait until the guest's app holds a connection open on each forwarded port."""
        deadline = time.monotonic() + timeout
        host = {f.guest_port: (f.host_addr, f.host_port) for f in self.spec.ports}
        for port in ports:
            if port not in host:
                continue
            while not _holds_connection(host[port]):
                if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                    raise NotReady(f"the guest did not listen on port {port} within {timeout:g}s")
                time.sleep(PROBE_RETRY)


def _holds_connection(addr: tuple[str, int]) -> bool:
    """Whether a connection to addr stays open (or gets data) for PROBE_HOLD seconds."""
    try:
        sock = socket.create_connection(addr, timeout=PROBE_HOLD)
    except OSError:
        return False
    with sock:
        sock.settimeout(PROBE_HOLD)
        try:
            return bool(sock.recv(1))  # data: the app spoke first
        except TimeoutError:
            return True  # accepted and waiting for a request: the app is up
        except OSError:
            return False
