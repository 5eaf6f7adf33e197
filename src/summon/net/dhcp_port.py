"""The DHCP client on the wire: UDP port 68 of the link, before and after an address, sans-IO.

Before the first lease there is no Interface (it needs an address), so DHCP replies are
picked out of the raw frames here and what the client sends goes out as frames built here,
from 0.0.0.0 or to everyone. Once a lease is bound the stack attaches its Interface: replies
then arrive on the interface's UDP socket 68, and unicast renewals leave through it (ARP and
all); broadcasts are still built here, as no Interface sends to 255.255.255.255.

    port = DhcpPort(mac, DhcpClient(mac), counters)
    port.start(now)
    port.receive_frame(frame, now)           # while no interface is attached
    for lease in port.poll(now): ...         # configure it; then port.attach(iface) once
    for frame in port.frames_to_send(): ...  # to the link (the interface's go with its own)
    port.timers(now); port.next_deadline()

No I/O and no clock: the unit tests drive it with frames and a number for the time.
"""

from __future__ import annotations

from summon.net.errors import NetError, ParseError
from summon.net.ethernet import BROADCAST, ETHERTYPE_IPV4, EthernetFrame
from summon.net.ipv4 import LIMITED_BROADCAST, PROTO_UDP, Ipv4Packet
from summon.net.udp import UdpDatagram, UdpReceived

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.counters import Counters
    from summon.net.dhcp import DhcpClient, Lease
    from summon.net.interface import Interface

CLIENT_PORT = 68
SERVER_PORT = 67


class DhcpPort:
    """One DhcpClient on one link (see the module doc)."""

    __slots__ = ("client", "counters", "iface", "mac")

    def __init__(self, mac: bytes, client: DhcpClient, counters: Counters) -> None:
        self.mac = mac
        self.client = client
        self.counters = counters
        self.iface: Interface | None = None

    def start(self, now: float) -> None:
        self.client.start(now)

    def attach(self, iface: Interface) -> None:
        """The interface the first lease configured: DHCP goes through its UDP port 68 now."""
        self.iface = iface
        if iface.udp.lookup(CLIENT_PORT) is None:
            iface.udp_bind(CLIENT_PORT)

    def receive_frame(self, frame: bytes, now: float) -> None:
        """A frame from the link while there is no interface: a DHCP reply goes to the client,
        anything else is dropped and counted (stack__unconfigured__drop)."""
        counters = self.counters
        try:
            eth = EthernetFrame.parse(frame)
            if eth.ethertype != ETHERTYPE_IPV4 or eth.dst not in (self.mac, BROADCAST):
                counters.inc("stack__unconfigured__drop")
                return
            packet = Ipv4Packet.parse(eth.payload)
            if packet.protocol != PROTO_UDP or packet.more_fragments or packet.fragment_offset:
                counters.inc("stack__unconfigured__drop")
                return
            datagram = UdpDatagram.parse(packet.payload, packet.src, packet.dst)
        except ParseError as e:
            counters.inc(f"{e.layer}__{getattr(e, 'reason', 'invalid')}__drop")
            return
        if datagram.dst_port != CLIENT_PORT:
            counters.inc("stack__unconfigured__drop")
            return
        self.client.receive(datagram.payload, now)

    def poll(self, now: float) -> list[Lease]:
        """Take the replies that came on the interface's socket; the leases bound since the
        last call, each to be configured (and the interface attached) before frames_to_send."""
        client = self.client
        iface = self.iface
        if iface is not None:
            socket = iface.udp.lookup(CLIENT_PORT)
            if socket is not None:
                for event in socket.events():
                    if isinstance(event, UdpReceived) and event.src_port == SERVER_PORT:
                        client.receive(event.payload, now)
        return client.leases()

    def frames_to_send(self) -> list[bytes]:
        """The client's messages: frames for the link, built here (from 0.0.0.0, or
        broadcast); a unicast renewal goes to the interface's socket instead."""
        frames: list[bytes] = []
        iface = self.iface
        for message in self.client.messages_to_send():
            src_ip, dst_ip, payload = message.src_ip, message.dst_ip, message.payload
            if iface is not None and src_ip == iface.ip and dst_ip != LIMITED_BROADCAST:
                socket = iface.udp.lookup(CLIENT_PORT)
                if socket is not None:  # renewing: unicast to the server, ARP and all
                    try:
                        socket.send_to(payload, dst_ip, SERVER_PORT)
                    except NetError:
                        self.counters.inc("dhcp__send_failed__drop")
                    continue
            # From 0.0.0.0 (no address yet) or to everyone: a frame built here, as no
            # Interface can send from an address it does not have.
            udp = UdpDatagram(CLIENT_PORT, SERVER_PORT, payload).serialize(src_ip, dst_ip)
            ip = Ipv4Packet(src_ip, dst_ip, PROTO_UDP, udp, ttl=64).serialize()
            frames.append(EthernetFrame(BROADCAST, self.mac, ETHERTYPE_IPV4, ip).serialize_padded())
        return frames

    def timers(self, now: float) -> None:
        self.client.timers(now)

    def next_deadline(self) -> float | None:
        return self.client.next_deadline()
