"""One running QEMU: its process, the serial console reader, stopping, readiness, stats.

The console is the VM's first serial port, on QEMU's stdin and stdout: its output is the
instance's log (<state>/console.log) and goes on to the spec's stdout (or summon's). The
runtime's lines for the host (up, at its snapshot point, resumed, figures, the exit status)
come on the second, the control port, a socketpair only the runtime writes to (serial.py):
nothing the app prints is taken for one of them. Stopping
writes Ctrl-C (0x03) to the serial line: the runtime has made ttyS0 its controlling
terminal, so the guest's tty layer turns that byte into SIGINT for PID 1, which the runtime
treats like SIGTERM; the app shuts down cleanly and the VM resets (reboot=t, -no-reboot: QEMU
exits). microvm has no ACPI power button and no keyboard, and this needs no extra device or
driver. After the grace period QEMU is killed. QEMU also dies with summon (PR_SET_PDEATHSIG).

QEMU also has a QMP monitor on a socketpair (qmp.py): for snapshots (boot() stops at the
guest's snapshot point and hands it to the target's save; restore() loads one), for `cont`,
and for the port forwards that a snapshotted guest gets only after it resumed.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from summon.errors import SummonError, UserError
from summon.instances.console import ConsoleLog
from summon.targets.base import Instance, NotReady, NotSupported, RunSpec, Stats, process_stats
from summon.targets.qemu.cmdline import CONTROL_CHARDEV
from summon.targets.qemu.migration import FeedThread, load_argv, wait_loaded
from summon.targets.qemu.qmp import Qmp, QmpError
from summon.targets.qemu.serial import SerialConsole, resume_message

if TYPE_CHECKING:
    from summon.targets.qemu.outbound import Outbound

STOP_RESEND = 1.0  # seconds between Ctrl-Cs while stopping (early in boot one may be lost)
_PR_SET_PDEATHSIG = 1
_CTRL_C = b"\x03"
# ^\\ (VQUIT): the guest's tty turns it into SIGQUIT for PID 1, the runtime's cue to print
# its figures on the control port (summon.runtime.stats).
_CTRL_BACKSLASH = b"\x1c"
# Readiness: a connection the guest has not closed after PROBE_HOLD is accepted by the app;
# slirp accepts on the host port before the guest listens, then closes within a millisecond
# or two when the guest refuses.
PROBE_HOLD = 0.15
PROBE_RETRY = 0.02


class ForwardRefused(UserError):
    """QEMU could not add a port forward (the host port was taken meanwhile)."""


class QemuInstance(Instance):
    """One QEMU process, its console reader, and its per-run files."""

    def __init__(
        self,
        spec: RunSpec,
        argv: list[str],
        output: IO[bytes] | None,
        forwards_later: bool = False,
    ) -> None:
        """forwards_later: argv has no port forwards; they are added once the guest resumed."""
        self.spec = spec
        self.argv = argv
        self.qmp: Qmp | None = None
        self._control: socket.socket | None = None  # the control port's host end
        self.snapshot_key = ""  # the snapshot this instance was restored from or saved into
        self.restored = False
        self.console = SerialConsole()
        self.log_path = spec.state_dir / "console.log"
        self.error_path = spec.state_dir / "qemu.err"
        self._output = output
        # Our own copy of the spec's stdout fd: the caller may close its copy once start()
        # returns (the gateway does), and a number written to after that could be anyone's
        # by then (a client's socket). Closed at release.
        self._stdout: int | None = None
        if output is None and spec.stdout is not None:
            with contextlib.suppress(OSError):
                self._stdout = os.dup(spec.stdout)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._killed = False
        self._released = False
        self._reported = False
        self._changed = threading.Condition()
        self._started = time.monotonic()
        self._forwards_later = forwards_later
        self._listening: set[int] = set()  # guest ports the guest said it listens on
        self._auto_resume = False
        self._resumed_late = False
        self.outbound: Outbound | None = None  # egress: QEMU's namespace, released with it
        self.leases: list[Any] = []  # holds on its volumes (targets.volumes): closed at release

    # --- starting ---

    def _launch(self, extra: list[str] | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        """Start QEMU with a QMP monitor and the control port on socketpairs; read its
        console and control port; greet its QMP."""
        ours, theirs = socket.socketpair()
        self._control, control = socket.socketpair()
        self.argv = [
            *self.argv,
            *Qmp.argv(theirs.fileno()),
            "-chardev",
            f"socket,id={CONTROL_CHARDEV},fd={control.fileno()}",
            *(extra or []),
        ]
        command, preexec = _with_parent_death(self.argv)
        try:
            with self.error_path.open("wb") as err:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    # Its own session: a Ctrl-C at the terminal reaches summon, which decides.
                    start_new_session=True,
                    preexec_fn=preexec,
                    pass_fds=(theirs.fileno(), control.fileno(), *pass_fds),
                )
        finally:
            theirs.close()
            control.close()
        self.qmp = Qmp(ours)
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        try:
            self.qmp.handshake()
        except QmpError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)  # QEMU exiting on a bad argument says why on stderr
            self._reported = True
            raise SummonError(f"QEMU did not start: {self._failure()}") from None

    def boot(self, boot_timeout: float, take: Callable[[QemuInstance], None] | None) -> None:
        """Boot the guest; return once it is up (READY), or, with take, past its snapshot point.

        take(self) saves the guest waiting at its snapshot point (the app listens); the guest
        is then resumed either way, and the port forwards (held back until then, so that no
        TCP packet reaches the guest before its snapshot) are added. An app that does not
        reach the point within the boot bound runs on without a snapshot.
        """
        deadline = time.monotonic() + boot_timeout
        self._launch()
        up = "did not come up"
        self._wait(lambda: self.console.ready, deadline, up, "before the app started")
        if take is None:
            return
        at_point = self._wait(
            lambda: self.console.app_up is not None or self.console.status is not None,
            deadline,
            "",
            "before the app listened",
        )
        with self._lock:
            late = not at_point or self.console.app_up is None
            self._auto_resume = late  # a point reached later is resumed at once, unsaved
        if late:
            self._resume_if_waiting()
        else:
            self._at_point()
            try:
                take(self)
            finally:
                self._resume(deadline)
        self._add_forwards()

    def restore(self, feeder: FeedThread, timeout: float) -> None:
        """Start QEMU loading a snapshot (fed verified by feeder), resume the guest, forward.

        Raises CorruptSnapshot (a chunk did not match: the guest never ran) or
        MigrationFailed/SummonError; the caller stops this instance and boots instead.
        """
        deadline = time.monotonic() + timeout
        self.console.restored = True  # no READY comes: the app ran before the snapshot
        feeder.prefetch()
        try:
            self._launch(load_argv(feeder.read_fd), (feeder.read_fd,))
            feeder.start()
            feeder.join(timeout)
        finally:
            feeder.cancel()
        wait_loaded(self._qmp(), deadline)
        self.restored = True
        self._resume(deadline)
        self._add_forwards()

    def _qmp(self) -> Qmp:
        assert self.qmp is not None
        return self.qmp

    def _wait(self, done: Callable[[], bool], deadline: float, late: str, died: str) -> bool:
        """Wait until done(); SummonError if QEMU exits first, or, with a `late` phrase, at
        the deadline (without one, return False then)."""
        assert self._proc is not None and self._reader is not None
        with self._changed:
            while not done():
                if self._proc.poll() is not None:
                    self._reader.join(5)
                    if done():
                        break
                    self._reported = True  # this error says it; wait() must not again
                    raise SummonError(
                        f"the VM of {self.spec.image} stopped {died}: "
                        f"{self._failure()} (console log: {self.log_path})"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    if not late:
                        return False
                    self._reported = True
                    raise SummonError(
                        f"the VM of {self.spec.image} {late} within "
                        f"{self._bound(deadline):.0f}s: {self.console.crash_reason()} "
                        f"(console log: {self.log_path})"
                    )
                self._changed.wait(min(left, 0.1))
        return True

    def _bound(self, deadline: float) -> float:
        """The bound a deadline stands for, from this instance's start."""
        return max(0.0, deadline - self._started)

    def _at_point(self) -> None:
        self.mark_listening(self.console.app_up or "")

    @property
    def listening(self) -> frozenset[int]:
        """Guest ports the guest itself said it listens on (wait_ready does not probe them)."""
        return frozenset(self._listening)

    def mark_listening(self, what: str) -> None:
        """The guest listens on `what` ("80/tcp", its snapshot point): wait_ready need not
        probe that port (a restored guest said so before its snapshot was taken)."""
        port = what.partition("/")[0]
        if port.isdigit():
            self._listening.add(int(port))

    def _resume(self, deadline: float) -> None:
        """Run the paused or waiting guest on: cont, the resume message, its acknowledgement."""
        qmp = self._qmp()
        if not qmp.command("query-status").get("running"):
            qmp.command("cont")
        with self._lock:
            seen = self.console.resumed
            self._send_control(resume_message())
        self._wait(
            lambda: self.console.resumed > seen,
            deadline,
            "did not take its resume message",
            "while resuming",
        )

    def _resume_if_waiting(self) -> None:
        """A guest at a snapshot point nobody saves is resumed at once (reader thread too)."""
        with self._lock:
            if self._auto_resume and self.console.app_up is not None and not self._resumed_late:
                self._resumed_late = True
                self._at_point()
                self._send_control(resume_message())

    def _add_forwards(self) -> None:
        """The spec's port forwards, held back until the guest has resumed (QMP hostfwd_add)."""
        if not self._forwards_later:
            return
        for f in self.spec.ports:
            said = self._qmp().hmp(
                f"hostfwd_add net0 {f.protocol}:{f.host_addr}:{f.host_port}-:{f.guest_port}"
            )
            if said:
                self._reported = True
                raise ForwardRefused(
                    f"-p {f.host_addr}:{f.host_port}: QEMU cannot forward it ({said.strip()}); "
                    "is the port taken by now?"
                )

    def _read_console(self) -> None:
        """Read the console and the control port until QEMU is gone (both at their end)."""
        assert self._proc is not None and self._proc.stdout is not None
        assert self._control is not None
        console, control = self._proc.stdout.fileno(), self._control.fileno()
        # Bounded as every console log (instances/console.py): a guest printing without end
        # filled the host's disk through this file, which grew with every byte of the boot.
        for old in (self.log_path, self.log_path.with_name(self.log_path.name + ".1")):
            old.unlink(missing_ok=True)  # this boot's log only, as before
        log = ConsoleLog(self.log_path.parent, name=self.log_path.name)
        poller = select.poll()
        open_fds = {console, control}
        for fd in open_fds:
            poller.register(fd, select.POLLIN)
        try:
            while console in open_fds:
                # The control port first: an exit status read with the console's last bytes
                # is known before them, which tells the kernel's restart line from the app's.
                for fd, _ in sorted(poller.poll(), key=lambda event: event[0] != control):
                    data = _read(fd)
                    if not data:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == console:
                        log.write(data)
                        self._show(self.console.feed(data))
                    else:
                        self.console.control(data)
                if self._auto_resume:
                    self._resume_if_waiting()
                with self._changed:
                    self._changed.notify_all()
            # QEMU closed its stdout: its control port's last line may still be unread, and
            # the console's end shows the kernel's restart line only if no status came.
            while control in open_fds and _ready(control, 1.0):
                data = _read(control)
                if not data:
                    break
                self.console.control(data)
            self._show(self.console.end())
        finally:
            log.close()
        with self._changed:
            self._changed.notify_all()

    def _show(self, data: bytes) -> None:
        """Pass console output on: to the output stream, else to the spec's stdout fd."""
        if not data:
            return
        with contextlib.suppress(OSError, ValueError):
            if self._output is not None:
                self._output.write(data)
                self._output.flush()
            elif self._stdout is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._stdout, view) :]

    def qemu_said(self) -> str:
        """QEMU's last line on stderr ("" if none)."""
        try:
            lines = self.error_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _failure(self) -> str:
        """Why the VM ended without an exit status, in one phrase."""
        assert self._proc is not None
        reason = self.console.crash_reason()
        code = self._proc.returncode
        if code not in (0, None) and not self._killed:
            qemu_said = self.qemu_said()
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
        """Bytes to the console's serial line (Ctrl-C, Ctrl-\\: signals for the app)."""
        assert self._proc is not None
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _send_control(self, data: bytes) -> None:
        """A line to the runtime on the control port (the resume message)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.sendall(data)

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
            if self.qmp is not None:
                self.qmp.close()
            if self._control is not None:
                self._control.close()
            if self._stdout is not None:
                with contextlib.suppress(OSError):
                    os.close(self._stdout)
                self._stdout = None
            (self.spec.state_dir / "initrd").unlink(missing_ok=True)
            if self.outbound is not None:
                self.outbound.stop()
            for held in self.leases:  # QEMU is gone: its disks are free
                held.close()

    def stats(self) -> Stats:
        return process_stats(self.pid)

    def snapshot(self) -> str:
        """The key of the snapshot a start restores this guest from; NotSupported if there
        is none, or none any more (removed or evicted since: the next start would boot, so
        a gateway's service must not go "snapshotted" and drop its memory for that)."""
        from summon.targets.snapshots import CorruptSnapshot, SnapshotCache

        key = self.snapshot_key
        if not key:
            raise NotSupported(
                f"no snapshot of {self.spec.image} exists: it has volumes, its app has not "
                "listened, snapshots are off (--no-snapshot, snapshot_cache_size = 0), or "
                "saving failed"
            )
        try:
            found = SnapshotCache().find(key)
        except CorruptSnapshot as e:
            raise NotSupported(f"{e}: the next start would boot") from None
        if found is None:
            raise NotSupported(
                f"snapshot {key[:12]} of {self.spec.image} is gone (summon snapshot rm, or "
                "evicted past snapshot_cache_size): the next start would boot"
            )
        return key

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
            if port not in host or port in self._listening:
                continue  # not forwarded, or the guest said it listens (its snapshot point)
            while not _holds_connection(host[port]):
                if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                    raise NotReady(f"the guest did not listen on port {port} within {timeout:g}s")
                time.sleep(PROBE_RETRY)


def _read(fd: int) -> bytes:
    """What is there on fd (b"" at its end or on an error)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _ready(fd: int, timeout: float) -> bool:
    """Whether fd has data or its end within timeout seconds (poll: fds past 1024 too)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def _with_parent_death(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(command, preexec_fn) that start argv with SIGKILL as its parent-death signal.

    QEMU dies when the thread that started it dies, even by SIGKILL. util-linux's setpriv sets
    the signal and execs QEMU, which lets Python start it with vfork; a preexec_fn would make
    it fork the whole summon process instead (5-10 ms here, on every start and restore).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_parent() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return argv, die_with_parent


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
