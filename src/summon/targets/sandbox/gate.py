"""The seccomp notification agent of a sandboxed instance: the exec gate, the recorder, the refuser.

runc hands summon the notify fd of the instance's filter (seccomp.py); every call the profile
marks SCMP_ACT_NOTIFY waits for an answer from here:
- execve: exactly one goes through (runc's exec of the app, from its init, before any app
  code exists); every later one is refused;
- socket() of a family the mode does not allow: refused, with a line naming the rule;
- in a recording (record=True): any other call is noted and let through (CONTINUE);
- otherwise: a call of the static list that the image's recording run never made is refused,
  with a line saying how to allow it.

Each refusal is answered EPERM and said once per call (or family) on the instance's console.
If summon goes away the kernel answers ENOSYS to whatever waits, so the gate fails closed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from summon.targets.sandbox import seccomp
from summon.threads import block_signals_in_thread

# <linux/seccomp.h>: struct seccomp_notif is 80 bytes (id, pid, flags, seccomp_data), the
# response 24 (id, val, error, flags). Both ioctls are _IOWR('!', n, struct).
_NOTIF = struct.Struct("=QIIiIQ6Q")
_RESP = struct.Struct("=QqiI")
_IOCTL_NOTIF_RECV = 0xC0000000 | (_NOTIF.size << 16) | (ord("!") << 8) | 0
_IOCTL_NOTIF_SEND = 0xC0000000 | (_RESP.size << 16) | (ord("!") << 8) | 1
# _IOW('!', 2, __u64); kernels before 5.17 only knew it under the wrong direction, _IOR.
_IOCTL_NOTIF_ID_VALID = 0x40000000 | (8 << 16) | (ord("!") << 8) | 2
_IOCTL_NOTIF_ID_VALID_OLD = 0x80000000 | (8 << 16) | (ord("!") << 8) | 2
_FLAG_CONTINUE = 1
_NR_EXECVE = 59  # x86_64
_NR_SOCKET = 41
_NR_CONNECT = 42
_NSCD_SOCKETS = (b"/var/run/nscd/socket", b"/run/nscd/socket")
_NSCD_ADDRESS_MAX = 110  # sizeof(struct sockaddr_un), what glibc passes
_POLL_SECONDS = 0.2
# A hostile app could make every call it can think of: the console hears about this many.
_MAX_LINES = 64
# Calls answered per second (refused, or a shutdown() the gate makes for the app) before the
# gate waits out the rest of that second. The gate
# runs in summon's monitor, outside the instance's cgroup: an app looping on a refused call
# had it burn most of a host CPU (27,000 answers a second, 21 us each); paced, it spends 4%.
# The calls wait meanwhile. An app's refusals that are no attack come once, or a few
# times, each (glibc's netlink socket to sort getaddrinfo's answers is the kernel filter's,
# never the gate's).
RULE_PACE = (
    "seccomp: at most 1000 calls a second answered by the gate (refused, or a shutdown made "
    "for the app); the app's next ones wait"
)
_REFUSALS_PER_SECOND = 1000

RULE_EXEC = "seccomp: one exec, runc's own, before the app"
RULE_FORK = (
    "seccomp: one process, so no fork (subprocess, multiprocessing, a pre-forking server); "
    "use threads or asyncio"
)
RULE_UNRECORDED = "seccomp: not among the calls this image's recording run made"
# The kernel's own call, not the app's: a sleep with a timeout (poll, select's selectors,
# nanosleep, clock_nanosleep, a timed futex wait) that a stop interrupts (the cgroup
# freezer, so a gateway's frozen tier; SIGSTOP) goes on through restart_syscall once the
# task runs again. It takes no arguments and only resumes the call the filter admitted: let
# through, never recorded. Refused, a plain script blocked in poll() (http.server's
# serve_forever) died of EPERM at its first thaw, and a thread in time.sleep() raised it.
RESUME = "restart_syscall"
RULE_OUTSIDE = "seccomp: not in the sandbox's allowlist"
RULE_SHUTDOWN = (
    "seccomp: an app given the host's listening sockets shuts a listening socket down for "
    "writing only (SHUT_WR): for reading it would stop the host's listener and free its port"
)
_NR_SHUTDOWN = 48
_NR_PIDFD_GETFD = 438  # x86_64; Linux 5.6


def family_name(number: int) -> str:
    """AF_VSOCK for 40, or the number itself when Python has no name for it."""
    try:
        return socket.AddressFamily(number).name
    except ValueError:
        return str(number)


class ExecGate:
    """Seccomp notification agent: the exec gate, and the recorder or refuser of gated calls.

    Listen on socket_path before `runc run`; runc connects and passes the notify fd with the
    container state. The gate runs in a daemon thread until the container's last process exits
    or close() is called. `recorded` holds the names of the calls let through in a recording.
    """

    def __init__(
        self,
        socket_path: Path,
        *,
        network: str = "socket",
        record: bool = False,
        outside: frozenset[str] = frozenset(),
        say: Callable[[str], None] | None = None,
        manifest: str = "the manifest",
    ) -> None:
        """outside: in a recording, the calls outside its ceiling, refused and reported;
        manifest: where the app's keys are written ("summon.toml"), for the hint."""
        self.socket_path = socket_path
        self._manifest = manifest
        self._outside = outside
        self.execs_allowed = 0
        self.execs_refused = 0
        self.record = record
        self.recorded: set[str] = set()
        self.refused: dict[str, int] = {}  # what was refused -> how many times
        self._families = frozenset(seccomp.socket_families(network).values())
        self._network = network
        # Gated while not recording: a call of the static list the recording never made
        # (RULE_UNRECORDED), or any call outside it (RULE_OUTSIDE). The conditional calls a
        # recording can notice are in it too, within their rules (a socket of an allowed
        # family): a handler's first socket() was said to be outside the sandbox's allowlist.
        self._static = frozenset(seccomp.allowed_syscalls(network)) | frozenset(
            seccomp.RECORDABLE_CONDITIONAL
        )
        self._names = seccomp.syscall_names()
        self._say = say
        self._lines = 0
        self._second, self._in_second = 0.0, 0  # _pace's count of refusals in this second
        self.paced = 0  # how often the gate waited out a second of refusals
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            self._listener.bind(str(socket_path))
            os.chmod(socket_path, 0o600)
            self._listener.listen(1)
            self._listener.settimeout(_POLL_SECONDS)
        except BaseException:
            self._listener.close()
            raise
        self._thread = threading.Thread(target=self._run, name="summon-exec-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the gate and release its socket. Idempotent."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _run(self) -> None:
        block_signals_in_thread()
        try:
            notify_fd, init_pid = self._receive()
        except OSError:
            return
        finally:
            self._listener.close()
        if notify_fd < 0:
            return
        try:
            self._serve(notify_fd, init_pid)
        finally:
            # Closing the fd is what unblocks (with ENOSYS) any call still waiting on us.
            os.close(notify_fd)

    def _receive(self) -> tuple[int, int]:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 4)
                try:
                    state = json.loads(msg)
                    index = state["fds"].index("seccompFd")
                    pid = int(state["pid"])
                    fd = fds[index]
                except (ValueError, KeyError, IndexError, TypeError):
                    for stray in fds:
                        os.close(stray)
                    continue
                for stray in fds:
                    if stray != fd:
                        os.close(stray)
                return fd, pid
        return -1, 0

    def _serve(self, notify_fd: int, init_pid: int) -> None:
        poller = select.poll()
        poller.register(notify_fd, select.POLLIN)
        while not self._stop.is_set():
            events = poller.poll(_POLL_SECONDS * 1000)
            if not events:
                continue
            _fd, mask = events[0]
            if mask & select.POLLIN:
                self._answer(notify_fd, init_pid)
            elif mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                return  # every process under the filter has exited

    def _answer(self, notify_fd: int, init_pid: int) -> None:
        buf = bytearray(_NOTIF.size)  # the kernel insists on a zeroed buffer
        try:
            fcntl.ioctl(notify_fd, _IOCTL_NOTIF_RECV, buf, True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):
                return  # the caller died or the call was interrupted before we read it
            raise
        notif_id, tid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buf)
        if nr == _NR_EXECVE:
            self._answer_exec(notify_fd, notif_id, tid, init_pid)
            return
        name = self._names.get(nr, f"syscall {nr}")
        if nr == _NR_CONNECT and _asks_nscd(tid, args[1], args[2]):
            # glibc asks nscd before it reads /etc/passwd and /etc/group (pwd.getpwuid at
            # request time: an FTP listing's owners, getpass.getuser): answered as on a host
            # without nscd, unrecorded and unsaid. It was a refusal line, or, recorded, a
            # profile that allows connect for a lookup that needs none.
            self._send(notify_fd, _RESP.pack(notif_id, 0, -errno.ENOENT, 0))
            return
        if nr == _NR_SHUTDOWN and not self.record:  # only what seccomp.shutdown_rules gates
            self._answer_shutdown(notify_fd, notif_id, tid, args[0], args[1])
            # The gate's work is summon's, outside the instance's cgroup: a loop of
            # shutdowns, made or refused, is paced as refusals are.
            self._pace()
            return
        refusal = self._judge(nr, name, args[0], args[2])
        if refusal is None:
            self._send(notify_fd, _RESP.pack(notif_id, 0, 0, _FLAG_CONTINUE))
            if name != RESUME:  # (the kernel's, not the app's: it widens no profile)
                self.recorded.add(name)
            return
        what, rule = refusal
        self._send(notify_fd, _deny(notif_id))
        self._refuse(what, rule)
        self._pace()

    def _pace(self) -> None:
        """Count a refusal in this second; past _REFUSALS_PER_SECOND, wait the second out
        (the waiting calls with it), saying so once."""
        now = time.monotonic()
        if now - self._second >= 1.0:
            self._second, self._in_second = now, 0
        self._in_second += 1
        if self._in_second > _REFUSALS_PER_SECOND:
            if not self.paced:
                self._refuse("a flood of gated calls", RULE_PACE)
            self.paced += 1
            self._stop.wait(self._second + 1.0 - now)

    def _judge(self, nr: int, name: str, arg0: int, arg2: int = -1) -> tuple[str, str] | None:
        """None to let the call through, else (what, rule) to refuse it with."""
        if name == RESUME:
            return None
        if name in seccomp.PROCESS_CALLS or (name == "clone" and not arg0 & seccomp.CLONE_THREAD):
            return "fork", RULE_FORK  # never, recording or not
        if nr == _NR_SOCKET:
            route = (arg0, arg2) == (seccomp.AF_NETLINK, seccomp.NETLINK_ROUTE)
            if self._network == "direct" and route:
                # getifaddrs would list the kernel's lo, not the address the app serves on.
                return "socket(AF_NETLINK)", (
                    "seccomp: direct mode has no kernel sockets, only its TAP device, so no "
                    "interface list: the app's address is its Stack's (network = \"socket\" "
                    "lists the instance's own interfaces)"
                )
            if self._network == "direct":
                return "socket()", "seccomp: direct mode has no kernel sockets, only its TAP device"
            if route and self.record:
                # The interface query (seccomp._route_action): recorded with its calls.
                return None
            if arg0 not in self._families:
                allowed = ", ".join(family_name(f) for f in sorted(self._families))
                return (
                    f"socket({family_name(arg0)})",
                    f"seccomp: {self._network} mode allows socket families {allowed} only",
                )
        if self.record:
            if name in self._outside:
                return name, (
                    f'{RULE_OUTSIDE}; if the app needs it, add syscalls = ["{name}"] to '
                    f"{self._manifest} and rebuild"
                )
            return None
        rule = RULE_UNRECORDED if name in self._static else RULE_OUTSIDE
        return name, (
            f'{rule}; if the app needs it, add syscalls = ["{name}"] to {self._manifest} '
            "and rebuild"
        )

    def _answer_exec(self, notify_fd: int, notif_id: int, tid: int, init_pid: int) -> None:
        # Only runc's own exec of the app may pass: from the init process, before app code.
        allow = not self.execs_allowed and _tgid(tid) == init_pid
        if allow and not _still_waiting(notify_fd, notif_id):
            return  # the caller went away while we looked it up; tid may be another's now
        resp = _RESP.pack(notif_id, 0, 0, _FLAG_CONTINUE) if allow else _deny(notif_id)
        if not self._send(notify_fd, resp):
            # A signal (the Go runtime in runc init sends itself plenty) interrupted the call
            # before our answer: the kernel restarts it as a new notification, so the one
            # allowance is still unspent.
            return
        if allow:
            self.execs_allowed += 1
        else:
            self.execs_refused += 1
            self._refuse("execve", RULE_EXEC)
            self._pace()

    def _answer_shutdown(self, notify_fd: int, notif_id: int, tid: int, fd: int, how: int) -> None:
        """shutdown(fd, how) for reading: made here, on the app's own socket, unless that
        socket is listening (RULE_SHUTDOWN). The socket is taken from the caller with
        pidfd_getfd, so the one looked at is the one shut down: answering CONTINUE after a
        look at /proc would let another thread of the app swap the listener in between."""
        taken = _take_fd(notify_fd, notif_id, tid, fd)
        if isinstance(taken, OSError):
            if taken.errno != errno.ESRCH:  # ESRCH: the caller is gone, nobody to answer
                self._send(notify_fd, _RESP.pack(notif_id, 0, -(taken.errno or errno.EBADF), 0))
            return
        try:
            sock = socket.socket(fileno=taken)
        except OSError as e:  # not a socket: as the kernel answers
            os.close(taken)
            self._send(notify_fd, _RESP.pack(notif_id, 0, -(e.errno or errno.ENOTSOCK), 0))
            return
        with sock:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                self._send(notify_fd, _deny(notif_id))
                self._refuse("shutdown() of a listening socket for reading", RULE_SHUTDOWN)
                return
            error = 0
            if how not in (socket.SHUT_RD, socket.SHUT_RDWR):  # SHUT_WR never gets here
                error = errno.EINVAL
            else:
                try:
                    sock.shutdown(how)
                except OSError as e:  # ENOTCONN, as the app's own call would have had
                    error = e.errno or errno.EINVAL
            self._send(notify_fd, _RESP.pack(notif_id, 0, -error, 0))

    def _send(self, notify_fd: int, resp: bytes) -> bool:
        try:
            fcntl.ioctl(notify_fd, _IOCTL_NOTIF_SEND, bytearray(resp), True)
        except FileNotFoundError:
            return False  # the caller is gone, or was interrupted and will ask again
        return True

    def _refuse(self, what: str, rule: str) -> None:
        """Count a refusal; say it once on the instance's console."""
        seen = what in self.refused
        self.refused[what] = self.refused.get(what, 0) + 1
        if seen or self._say is None or self._lines > _MAX_LINES:
            return
        self._lines += 1
        if self._lines > _MAX_LINES:
            self._say(f"summon: sandbox: over {_MAX_LINES} kinds of calls refused; no more said")
            return
        with contextlib.suppress(Exception):  # a log line is not worth the gate
            self._say(f"summon: sandbox: refused {what} ({rule})")


def _deny(notif_id: int) -> bytes:
    return _RESP.pack(notif_id, 0, -errno.EPERM, 0)


def _asks_nscd(tid: int, address: int, length: int) -> bool:
    """Whether a connect() names glibc's nscd socket: read from the caller's memory, which
    only decides that the call is answered ENOENT rather than EPERM (it is refused alike)."""
    if not 0 < length <= _NSCD_ADDRESS_MAX:
        return False
    try:
        with open(f"/proc/{tid}/mem", "rb", buffering=0) as mem:
            raw = os.pread(mem.fileno(), length, address)
    except (OSError, OverflowError, ValueError):
        return False
    family, path = int.from_bytes(raw[:2], "little"), raw[2:].partition(b"\0")[0]
    return family == socket.AF_UNIX and path in _NSCD_SOCKETS


def _tgid(tid: int) -> int:
    """The process a thread belongs to (the notification names the calling thread)."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def _take_fd(notify_fd: int, notif_id: int, tid: int, fd: int) -> int | OSError:
    """A copy of the calling process's fd (pidfd_getfd), or the error to answer with (ESRCH
    once the caller is gone: the notification is dead, nobody to answer)."""
    import ctypes  # only here: the gate's other answers need none of it

    if not 0 <= fd < 1 << 31:
        return OSError(errno.EBADF, "no such descriptor")
    try:
        pidfd = os.pidfd_open(_tgid(tid))
    except (OSError, ValueError):
        return OSError(errno.ESRCH, "caller gone")
    try:
        # The pidfd is the caller's only if the notification is still live: its pid
        # cannot have been reused while the caller waits on us.
        if not _still_waiting(notify_fd, notif_id):
            return OSError(errno.ESRCH, "caller gone")
        libc = ctypes.CDLL(None, use_errno=True)
        got = int(libc.syscall(_NR_PIDFD_GETFD, pidfd, fd, 0))
        if got < 0:
            code = ctypes.get_errno()
            return OSError(code, os.strerror(code))
        os.set_inheritable(got, False)
        return got
    finally:
        os.close(pidfd)


def _still_waiting(notify_fd: int, notif_id: int) -> bool:
    """Whether the notification is still live, so the tid read from /proc was the caller's."""
    arg = bytearray(struct.pack("=Q", notif_id))
    for request in (_IOCTL_NOTIF_ID_VALID, _IOCTL_NOTIF_ID_VALID_OLD):
        try:
            fcntl.ioctl(notify_fd, request, arg, False)
            return True
        except OSError as e:
            if e.errno != errno.EINVAL:
                return False
    return False
