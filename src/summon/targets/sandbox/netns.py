"""A named network namespace per sandbox instance: created with lo up, always removed.

The namespace holds nothing but its loopback interface (made with the syscalls iproute2's
`ip netns add` uses, without pyroute2 and its import time). Port forwards reach the app by making
their sockets inside it (see portfwd.py); no address is ever added to the host's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from summon.threads import block_signals_in_thread

NETNS_DIR = Path("/run/netns")
# The app runs with no capabilities and must still be able to listen on port 80 or 53.
UNPRIVILEGED_PORT_START = 0
_CLONE_NEWNET = 0x40000000
_NAME_OK = re.compile(r"[A-Za-z0-9_.-]{1,64}")

T = TypeVar("T")


_LIBC = ctypes.CDLL(None, use_errno=True)  # the libc python itself runs on


def setns(fd: int) -> None:
    """Move the calling thread (only it) into the network namespace fd refers to."""
    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_inside(path: Path, func: Callable[[], T]) -> T:
    """Call func on a short-lived thread that sits in the namespace at path.

    Namespaces belong to threads, and a thread that failed to come back would leave the
    caller somewhere unexpected; a throwaway thread keeps the caller's thread untouched.
    Sockets made by func stay in that namespace after the thread ends.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        block_signals_in_thread()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(fd)
            finally:
                os.close(fd)
            result.append(func())
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=body, name="summon-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class NetNamespace:
    """An instance's network namespace at /run/netns/NAME.

    Use as a context manager, or call create() and then remove() in a finally: remove() is
    idempotent and safe after a half-finished create().
    """

    def __init__(self, name: str) -> None:
        if not _NAME_OK.fullmatch(name):
            raise ValueError(f"bad network namespace name {name!r}")
        self.name = name
        self.path = NETNS_DIR / name
        self._created = False

    def __enter__(self) -> NetNamespace:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        """Create the namespace, bring lo up and let unprivileged apps bind low ports."""
        if self.exists():
            # A leftover from a summon that was killed outright: it holds nothing of value.
            # (Callers make sure no live instance of theirs still uses this name.)
            _remove(self.name)
        self._created = True
        try:
            _create(self.name)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove the namespace if this object made it. Idempotent.

        The kernel frees it once no process or open fd is left inside.
        """
        if not self._created:
            return
        self._created = False
        _remove(self.name)

    def __repr__(self) -> str:
        return f"NetNamespace({self.name!r})"


# As iproute2's `ip netns add` does it, with the syscalls themselves: pyroute2 did this
# before, and importing it cost every sandboxed start 130 ms (in the monitor, a fresh
# process each time). From <sys/mount.h> and <linux/if.h>, <linux/sockios.h>.
_MS_BIND, _MS_REC, _MS_SHARED, _MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union


def _libc_call(name: str, *args: object) -> None:
    if getattr(_LIBC, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _create(name: str) -> None:
    """Make the namespace at NETNS_DIR/name, lo up and low ports open, on a thread of its
    own (a network namespace is a thread's: the caller's stays where it is)."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    folder = bytes(NETNS_DIR)
    # Shared, so that the bind mounts below show in mount namespaces made from this one.
    if _LIBC.mount(b"", folder, b"none", _MS_SHARED | _MS_REC, None) != 0:
        _libc_call("mount", folder, folder, b"none", _MS_BIND | _MS_REC, None)
        _libc_call("mount", b"", folder, b"none", _MS_SHARED | _MS_REC, None)
    path = NETNS_DIR / name
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    def inside() -> None:
        block_signals_in_thread()
        _libc_call("unshare", _CLONE_NEWNET)
        _libc_call("mount", b"/proc/thread-self/ns/net", bytes(path), b"none", _MS_BIND, None)
        _set_up()

    error: list[BaseException] = []

    def body() -> None:
        try:
            inside()
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=body, name="summon-netns-create", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]


def _remove(name: str) -> None:
    path = bytes(NETNS_DIR / name)
    _LIBC.umount2(path, _MNT_DETACH)  # not mounted (a half-made one): nothing to undo
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _set_up() -> None:
    """Bring lo up and open low ports to all; runs on a thread inside the namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    # /proc/sys/net shows the namespace of the thread that opens it.
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
        f.write(str(UNPRIVILEGED_PORT_START))


def list_namespaces() -> list[str]:
    """Names of the namespaces under /run/netns."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def network_namespace(name: str) -> Iterator[NetNamespace]:
    """A network namespace that lives for the with block."""
    ns = NetNamespace(name)
    ns.create()
    try:
        yield ns
    finally:
        ns.remove()
