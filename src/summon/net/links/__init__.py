"""Frame I/O backends: a Link moves whole Ethernet frames between the stack and a wire.

- memory.py: a pair of in-memory links with seeded faults, on virtual time (tests);
- tap.py:    a TAP device (the sandbox target's direct mode);
- packet.py: an AF_PACKET socket bound to a NIC (the qemu target's virtio NIC).

Only the module a program uses is imported: each pulls in what it needs (random, fcntl,
socket) and nothing here does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.counters import Counters


class Link:
    """A full-duplex frame link. Frames are bytes without preamble or FCS.

    send(frame)      queue one frame for the wire; never blocks (a frame the wire cannot take
                     now is dropped and counted, as a full NIC ring would)
    receive()        every frame that arrived since the last call, oldest first; [] if none
    fileno()         an fd that polls readable when receive() has frames, or -1 (memory links)
    close()          release the device; idempotent

    What the stack may rely on is declared here, not probed:

    COUNTERS         the counter names the link increments (e.g. "link__tx_full__drop")
    count_into(c)    count them into `c`, the stack's one bag, from now on
    checksum_offload frames out may carry a partial TCP checksum that the device completes
                     (TCPConfig.checksum_offload follows it); False unless a link says so
    """

    __slots__ = ()

    COUNTERS: tuple[str, ...] = ()
    checksum_offload: bool = False

    def count_into(self, counters: Counters) -> None:
        """Increment `counters` from now on. A link that counts nothing keeps nothing."""

    def send(self, frame: bytes) -> None:
        raise NotImplementedError

    def receive(self) -> list[bytes]:
        raise NotImplementedError

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass
