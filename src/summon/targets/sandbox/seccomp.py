"""The sandbox's seccomp profile (OCI linux.seccomp) and the agent that gates its one execve.

The allowlist lives in seccomp-allowlist.json beside this module, as reviewable data; the few
rules that look at arguments are written out below. Everything not allowed gets EPERM.

execve cannot simply be denied: runc installs the filter inside its own init process and then
execs the app through it, so a denied execve would stop the app from ever starting. Instead
execve is handed to summon through a seccomp user notification: ExecGate lets exactly one
through (runc's exec of the app, before any app code exists) and answers EPERM to every later
one. If summon goes away the kernel answers ENOSYS, so the gate fails closed.
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
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from summon.threads import block_signals_in_thread

NETWORK_MODES = ("socket", "direct", "none")

# clone flags (linux/sched.h). A thread is a clone with CLONE_THREAD and no new namespace;
# fork() in glibc is clone(SIGCHLD | ...) without CLONE_THREAD.
CLONE_THREAD = 0x00010000
_CLONE_NEW_ANY = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
# TIOCSTI pushes bytes into a terminal's input queue. The app's stdio may be the caller's
# terminal, so it could type commands into the host shell. The kernel already refuses it on a
# terminal that is not the caller's controlling one (runc makes the app a session leader with
# none); this rule does not rely on that.
TIOCSTI = 0x5412

_DATA = "seccomp-allowlist.json"


@cache
def _data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(_DATA).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def allowed_syscalls(network: str) -> list[str]:
    """Every syscall allowed unconditionally in this network mode, sorted."""
    if network not in NETWORK_MODES:
        raise ValueError(f"unknown network mode {network!r}; expected one of {NETWORK_MODES}")
    data = _data()
    names = {name for group in data["allow"].values() for name in group["syscalls"]}
    if network != "direct":
        names.update(data["kernel-sockets"]["syscalls"])
    return sorted(names)


def denied_syscalls() -> dict[str, str]:
    """The syscalls denied on purpose, each with the reason."""
    denied: dict[str, str] = _data()["deny"]["syscalls"]
    return dict(denied)


# Syscalls with argument rules or non-default answers; they must not appear in the plain lists.
CONDITIONAL = ("clone", "clone3", "execve", "ioctl")


def profile(network: str, listener_path: str) -> dict[str, Any]:
    """The OCI `linux.seccomp` object for an app in this network mode.

    listener_path is the unix socket an ExecGate listens on; runc hands it the notify fd.
    """
    allowed = allowed_syscalls(network)
    denied = denied_syscalls()
    overlap = (set(allowed) & set(denied)) | (set(allowed) & set(CONDITIONAL))
    if overlap:
        # A data edit that lets a denied call in must fail loudly, never widen the sandbox.
        raise ValueError(f"seccomp allowlist overlaps denied/conditional calls: {sorted(overlap)}")
    if network == "direct":
        denied = {**denied, "socket": "direct mode: the app's network is its TAP device"}
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        # Only native x86_64: libseccomp then refuses i386 (int 0x80) and x32 calls outright,
        # which would otherwise reach syscalls under numbers this filter never names.
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": listener_path,
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_THREAD | _CLONE_NEW_ANY,
                        "valueTwo": CLONE_THREAD,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
            # clone3 passes its flags in memory, out of the filter's sight. ENOSYS makes glibc
            # fall back to clone, where the rule above sees them.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            {"names": ["execve"], "action": "SCMP_ACT_NOTIFY"},
            *_ioctl_rules(),
            {"names": sorted(denied), **eperm},
        ],
    }


def _ioctl_rules() -> list[dict[str, Any]]:
    """Allow ioctl for every request whose low 32 bits differ from TIOCSTI's.

    Each rule allows the requests that differ from TIOCSTI in one bit, so together they allow
    all others. Simpler spellings fail: libseccomp lets an unconditional allow, or an allow on
    `!= TIOCSTI`, win over a masked deny, and `!= TIOCSTI` alone lets TIOCSTI with junk in the
    high half through (the kernel drops those bits). The integration tests try both spellings.
    """
    return [
        {
            "names": ["ioctl"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": 1,
                    "value": 1 << bit,
                    "valueTwo": ~TIOCSTI & (1 << bit),
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        }
        for bit in range(32)
    ]


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
_POLL_SECONDS = 0.2


class ExecGate:
    """Seccomp notification agent: lets the container's first execve through, refuses the rest.

    Listen on socket_path before `runc run`; runc connects and passes the notify fd with the
    container state. The gate runs in a daemon thread until the container's last process exits
    or close() is called.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.execs_allowed = 0
        self.execs_refused = 0
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
        notif_id, tid, _flags, nr, _arch, _ip, *_args = _NOTIF.unpack(buf)
        # Only runc's own exec of the app may pass: from the init process, before app code.
        allow = nr == _NR_EXECVE and not self.execs_allowed and _tgid(tid) == init_pid
        if allow and not _still_waiting(notify_fd, notif_id):
            return  # the caller went away while we looked it up; tid may be another's now
        resp = _RESP.pack(notif_id, 0, 0, _FLAG_CONTINUE) if allow else _deny(notif_id)
        try:
            fcntl.ioctl(notify_fd, _IOCTL_NOTIF_SEND, bytearray(resp), True)
        except FileNotFoundError:
            # A signal (the Go runtime in runc init sends itself plenty) interrupted the call
            # before our answer: the kernel restarts it as a new notification, so the one
            # allowance is still unspent.
            return
        if allow:
            self.execs_allowed += 1
        else:
            self.execs_refused += 1


def _deny(notif_id: int) -> bytes:
    return _RESP.pack(notif_id, 0, -errno.EPERM, 0)


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
