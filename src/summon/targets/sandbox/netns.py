"""A named network namespace per sandbox instance: created with lo up, always removed.

The namespace holds nothing but its loopback interface. Port forwards reach the app by making
their sockets inside it (see portfwd.py); no address is ever added to the host's namespace.

Made as `ip netns add` makes one, with system calls only: a throwaway thread unshares a
network namespace of its own, the namespace is bind-mounted on /run/netns/NAME (which keeps it
alive after the thread ends), and on that same thread lo goes up with one ioctl. pyroute2
would do the same in a forked helper, and takes ~185 ms to import: most of `summon run`.
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
# <sys/mount.h> and <linux/sockios.h>, <net/if.h>
_MS_BIND, _MS_REC, _MS_SHARED, _MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_NAME_OK = re.compile(r"[A-Za-z0-9_.-]{1,64}")

T = TypeVar("T")


_LIBC = ctypes.CDLL(None, use_errno=True)  # the libc python itself runs on


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    """Move the calling thread (only it) into the network namespace fd refers to."""
    _check(_LIBC.setns(fd, _CLONE_NEWNET), "setns")


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
            _share_netns_dir()
            # The mount point: an empty file the namespace is bound onto.
            os.close(os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
            _on_thread(lambda: _make(self.path))
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


def _remove(name: str) -> None:
    """Detach the namespace's bind mount and delete its mount point (as `ip netns del`)."""
    path = os.fsencode(NETNS_DIR / name)
    _LIBC.umount2(path, _MNT_DETACH)  # fails (EINVAL) when nothing is mounted: fine
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount of its own, as iproute2 does, so that namespaces
    bound under it reach the mount namespaces that see it (and leave with it)."""
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = os.fsencode(NETNS_DIR)
    if _LIBC.mount(b"none", target, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    # Not a mount point yet: bind it onto itself, then share it.
    _check(_LIBC.mount(target, target, b"none", _MS_BIND | _MS_REC, None), "mount --bind")
    _check(_LIBC.mount(b"none", target, None, _MS_SHARED | _MS_REC, None), "mount --make-shared")


def _make(path: Path) -> None:
    """On a throwaway thread: a new network namespace, bound at path, lo up, low ports open.

    unshare(CLONE_NEWNET) moves only the calling thread; the bind mount keeps the namespace
    alive once that thread is gone.
    """
    _check(_LIBC.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    own = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
    _check(_LIBC.mount(own, os.fsencode(path), b"none", _MS_BIND, None), f"mount {path}")
    # A socket takes the interface ioctls; it belongs to this thread's (the new) namespace.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    # /proc/sys/net shows the namespace of the thread that opens it.
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
        f.write(str(UNPRIVILEGED_PORT_START))


def _on_thread(func: Callable[[], None]) -> None:
    """Run func on a thread of its own (its namespace changes die with it); raise its error."""
    error: list[BaseException] = []

    def body() -> None:
        block_signals_in_thread()
        try:
            func()
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=body, name="summon-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]


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
