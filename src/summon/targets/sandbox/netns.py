"""A named network namespace per sandbox instance: created with lo up, always removed.

The namespace holds nothing but its loopback interface. Port forwards reach the app by making
their sockets inside it (see portfwd.py); no address is ever added to the host's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
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
            # pyroute2 takes a fifth of a second to import: only pay for it when used.
            from pyroute2 import netns as pr_netns

            pr_netns.create(self.name)
            run_inside(self.path, _set_up)
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
    from pyroute2 import netns as pr_netns

    with contextlib.suppress(FileNotFoundError):
        pr_netns.remove(name)


def _set_up() -> None:
    """Bring lo up and open low ports to all; runs on a thread inside the namespace."""
    from pyroute2 import IPRoute

    # An IPRoute made on this thread talks to this namespace; IPRoute(netns=...) would fork
    # a helper process to get there, which costs more than the rest of this together.
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=index, state="up")
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
