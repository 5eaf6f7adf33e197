"""An AF_PACKET raw socket bound to one NIC as a Link: the qemu target's virtio NIC.

The kernel must not also run IP on that NIC (give it no address), or both stacks answer.
Frames the NIC receives come up whole; frames we send go out as given. Checksums must be
complete on receive: a peer using checksum offload on a virtual link (veth) hands over
partial ones, which the stack rightly drops as bad (turn offload off on that peer).
"""

from __future__ import annotations

import socket

from summon.net.counters import Counters
from summon.net.links import Link

ETH_P_ALL = 0x0003
# <linux/if_packet.h>: sll_pkttype of frames this host itself sent.
PACKET_OUTGOING = 4
MAX_FRAME = 65536 + 14
RECEIVE_BATCH = 256


class PacketLink(Link):
    """Frames to and from one interface through an AF_PACKET socket (needs CAP_NET_RAW)."""

    __slots__ = ("counters", "interface", "sock")

    COUNTERS = ("link__tx_full__drop", "link__tx_error__drop")

    def __init__(self, sock: socket.socket, interface: str) -> None:
        """Adopt sock, an AF_PACKET SOCK_RAW socket bound to `interface`."""
        self.sock = sock
        self.interface = interface
        self.counters = Counters()
        sock.setblocking(False)

    def count_into(self, counters: Counters) -> None:
        self.counters = counters

    @classmethod
    def open(cls, interface: str) -> PacketLink:
        """Bind a raw socket to `interface` in this thread's network namespace."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((interface, ETH_P_ALL))
        except BaseException:
            sock.close()
            raise
        return cls(sock, interface)

    @property
    def mac(self) -> bytes:
        """The NIC's hardware address: the stack's own MAC on this link."""
        address: bytes = self.sock.getsockname()[4]
        return address

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
        except BlockingIOError:
            self.counters.inc("link__tx_full__drop")
        except OSError:
            self.counters.inc("link__tx_error__drop")

    def receive(self) -> list[bytes]:
        frames: list[bytes] = []
        while len(frames) < RECEIVE_BATCH:
            try:
                frame, address = self.sock.recvfrom(MAX_FRAME)
            except BlockingIOError:
                break
            # An AF_PACKET socket also sees what goes out of the NIC, our own frames included.
            if address[2] != PACKET_OUTGOING:
                frames.append(frame)
        return frames

    def close(self) -> None:
        self.sock.close()
