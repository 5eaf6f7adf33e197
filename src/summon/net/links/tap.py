"""A TAP device as a Link: the sandbox target's direct mode hands the app one of these fds.

Opening by name needs CAP_NET_ADMIN (the device is created, and goes away when the fd is
closed); an instance without it adopts an fd it was given.

With a virtio-net header (IFF_VNET_HDR, what QEMU's virtio NIC uses), every frame carries a
10-byte header in front. We use it for one thing: TCP checksum offload on send. Frames of a
TCP layer configured with `checksum_offload` go out marked NEEDS_CSUM with only the
pseudo-header sum in the field, and the kernel completes (or, delivering locally, trusts)
them. We never enable offloads the other way (TUNSETOFFLOAD), so what the kernel sends us
has whole checksums, and the stack verifies them as always.
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
TUNGETIFF = 0x800454D2
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
# <linux/virtio_net.h>: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset; the
# legacy header is in the host's byte order (little-endian on x86).
VNET_HDR = struct.Struct("<BBHHHH")
VNET_NEEDS_CSUM = 1
_PLAIN = VNET_HDR.pack(0, 0, 0, 0, 0, 0)
_TCP_CSUM_OFFSET = 16  # where TCP's checksum field sits in its header
IFNAMSIZ = 16
# struct ifreq is 40 bytes on 64-bit Linux: the name, then a 24-byte union.
_IFREQ = struct.Struct("16sH22x")
# A read returns one frame; a TAP can be given a large MTU, so take up to 64 KiB.
MAX_FRAME = 65536 + 14 + VNET_HDR.size
# How many frames one receive() takes at most, so one busy link cannot starve a loop.
RECEIVE_BATCH = 256


class TapLink(Link):
    """Frames to and from a TAP device's fd (no packet-information header)."""

    __slots__ = ("checksum_offload", "counters", "fd", "name")

    COUNTERS = ("link__tx_full__drop", "link__tx_error__drop")

    def __init__(self, fd: int, name: str = "", *, vnet_hdr: bool | None = None) -> None:
        """Adopt fd, an open TAP (IFF_TAP | IFF_NO_PI); it is made non-blocking.

        vnet_hdr: whether the fd was opened with IFF_VNET_HDR; None asks the device.
        """
        self.fd = fd
        self.name = name
        self.counters = Counters()
        if vnet_hdr is None:
            flags = _IFREQ.unpack(fcntl.ioctl(fd, TUNGETIFF, bytes(_IFREQ.size)))[1]
            vnet_hdr = bool(flags & IFF_VNET_HDR)
        # With the header, TCP may leave its checksums to the kernel (TCPConfig).
        self.checksum_offload = vnet_hdr
        os.set_blocking(fd, False)

    def count_into(self, counters: Counters) -> None:
        self.counters = counters

    @classmethod
    def open(cls, name: str, *, vnet_hdr: bool = False) -> TapLink:
        """Create (or attach to) the TAP device `name` in this thread's network namespace."""
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ:
            raise ValueError(f"TAP name must be 1..{IFNAMSIZ - 1} bytes, not {name!r}")
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        try:
            result = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(encoded, flags))
        except BaseException:
            os.close(fd)
            raise
        actual = _IFREQ.unpack(result)[0].rstrip(b"\0").decode()
        return cls(fd, actual, vnet_hdr=vnet_hdr)

    def fileno(self) -> int:
        return self.fd

    def send(self, frame: bytes) -> None:
        try:
            if not self.checksum_offload:
                os.write(self.fd, frame)
            else:
                os.writev(self.fd, (_vnet_header(frame), frame))
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
            if self.checksum_offload:
                frame = frame[VNET_HDR.size :]
            frames.append(frame)
        return frames

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _vnet_header(frame: bytes) -> bytes:
    """The header for a frame we send: NEEDS_CSUM for whole IPv4 TCP segments (their
    checksum field holds the pseudo-header sum), nothing asked for anything else."""
    # Ethernet type IPv4, IP protocol 6, and not a fragment (flags MF and offset all zero).
    if (
        len(frame) >= 54
        and frame[12] == 0x08
        and frame[13] == 0x00
        and frame[23] == 6
        and not (frame[20] & 0x3F or frame[21])
    ):
        return VNET_HDR.pack(
            VNET_NEEDS_CSUM, 0, 0, 0, 14 + (frame[14] & 0x0F) * 4, _TCP_CSUM_OFFSET
        )
    return _PLAIN
