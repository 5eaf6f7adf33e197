"""A TAP device as a Link: the sandbox target's direct mode hands the app one of these fds.

Opening by name needs CAP_NET_ADMIN (the device is created, and goes away when the fd is
closed); an instance without it adopts an fd it was given.
"""

from __future__ import annotations

import fcntl
import os
import struct

from summon.net.counters import Counters
from summon.net.links import Link

TUN_DEVICE = "/dev/net/tun"
# <linux/if_tun.h>: _IOW('T', 202, int), and the flags of struct ifreq's ifr_flags.
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
# struct ifreq is 40 bytes on 64-bit Linux: the name, then a 24-byte union.
_IFREQ = struct.Struct("16sH22x")
# A read returns one frame; a TAP can be given a large MTU, so take up to 64 KiB.
MAX_FRAME = 65536 + 14
# How many frames one receive() takes at most, so one busy link cannot starve a loop.
RECEIVE_BATCH = 256


class TapLink(Link):
    """Frames to and from a TAP device's fd (no packet-information header)."""

    __slots__ = ("counters", "fd", "name")

    def __init__(self, fd: int, name: str = "") -> None:
        """Adopt fd, an open TAP (IFF_TAP | IFF_NO_PI); it is made non-blocking."""
        self.fd = fd
        self.name = name
        self.counters = Counters()
        os.set_blocking(fd, False)

    @classmethod
    def open(cls, name: str) -> TapLink:
        """Create (or attach to) the TAP device `name` in this thread's network namespace."""
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ:
            raise ValueError(f"TAP name must be 1..{IFNAMSIZ - 1} bytes, not {name!r}")
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        try:
            result = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(encoded, IFF_TAP | IFF_NO_PI))
        except BaseException:
            os.close(fd)
            raise
        actual = _IFREQ.unpack(result)[0].rstrip(b"\0").decode()
        return cls(fd, actual)

    def fileno(self) -> int:
        return self.fd

    def send(self, frame: bytes) -> None:
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            self.counters.inc("link__tx_full__drop")
        except OSError:
            # EIO while the device is down: the kernel would drop it too.
            self.counters.inc("link__tx_error__drop")

    def receive(self) -> list[bytes]:
        frames: list[bytes] = []
        while len(frames) < RECEIVE_BATCH:
            try:
                frame = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                break
            if not frame:
                break
            frames.append(frame)
        return frames

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
