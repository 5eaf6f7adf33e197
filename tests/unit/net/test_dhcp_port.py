"""DHCP on the wire (dhcp_port.py), without asyncio: frames in, frames out, a number for time.

Before a lease there is no Interface, so the port builds DISCOVER/REQUEST frames itself and
picks OFFER/ACK out of raw frames; once attached to the Interface the lease configured,
replies come through its UDP socket 68 and a unicast renewal leaves through it (ARP first).
"""

from __future__ import annotations

import random

from summon.net.arp import OP_REPLY, ArpPacket
from summon.net.counters import Counters
from summon.net.dhcp import ACK, BOOTREPLY, OFFER, DhcpClient, DhcpMessage
from summon.net.dhcp_port import CLIENT_PORT, SERVER_PORT, DhcpPort
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, EthernetFrame
from summon.net.interface import Interface
from summon.net.ipv4 import ANY, LIMITED_BROADCAST, PROTO_UDP, Ipv4Packet
from summon.net.udp import UdpDatagram

MAC = b"\x02\x00\x00\x00\x00\x07"
SERVER_MAC = b"\x02\x00\x00\x00\x00\x01"
SERVER = bytes((192, 0, 2, 1))
OFFERED = bytes((192, 0, 2, 50))


def new_port() -> DhcpPort:
    counters = Counters()
    rng = random.Random(1)
    client = DhcpClient(MAC, random_bytes=rng.randbytes, counters=counters)
    return DhcpPort(MAC, client, counters)


def unwrap(frame: bytes) -> tuple[EthernetFrame, Ipv4Packet, UdpDatagram, DhcpMessage]:
    eth = EthernetFrame.parse(frame)
    ip = Ipv4Packet.parse(eth.payload)
    udp = UdpDatagram.parse(ip.payload, ip.src, ip.dst)
    return eth, ip, udp, DhcpMessage.parse(udp.payload)


def server_frame(
    request: DhcpMessage, kind: int, *, dst_mac: bytes = MAC, lease: int = 600
) -> bytes:
    options = {
        53: bytes((kind,)),
        54: SERVER,
        51: lease.to_bytes(4, "big"),
        1: bytes((255, 255, 255, 0)),
        3: SERVER,
        6: SERVER,
    }
    payload = DhcpMessage(
        BOOTREPLY, request.xid, request.chaddr, options, yiaddr=OFFERED, siaddr=SERVER
    ).serialize()
    udp = UdpDatagram(SERVER_PORT, CLIENT_PORT, payload).serialize(SERVER, OFFERED)
    ip = Ipv4Packet(SERVER, OFFERED, PROTO_UDP, udp, ttl=64).serialize()
    return EthernetFrame(dst_mac, SERVER_MAC, ETHERTYPE_IPV4, ip).serialize_padded()


def test_discover_offer_request_ack_as_frames_before_there_is_an_address() -> None:
    port = new_port()
    port.start(0.0)
    (frame,) = port.frames_to_send()
    eth, ip, udp, discover = unwrap(frame)
    assert (eth.dst, eth.src, eth.ethertype) == (BROADCAST, MAC, ETHERTYPE_IPV4)
    assert (ip.src, ip.dst, ip.protocol) == (ANY, LIMITED_BROADCAST, PROTO_UDP)
    assert (udp.src_port, udp.dst_port) == (CLIENT_PORT, SERVER_PORT)
    assert discover.message_type == 1
    assert port.frames_to_send() == []

    port.receive_frame(server_frame(discover, OFFER), 0.5)
    assert port.poll(0.5) == []
    (frame,) = port.frames_to_send()
    _, ip, _, request = unwrap(frame)
    assert request.message_type == 3 and ip.dst == LIMITED_BROADCAST  # REQUESTs are broadcast

    port.receive_frame(server_frame(request, ACK), 0.6)
    (lease,) = port.poll(0.6)
    assert (lease.address, lease.prefix_len, lease.gateway) == (OFFERED, 24, SERVER)
    assert lease.nameservers == (SERVER,)
    assert port.next_deadline() == 0.6 + 300  # T1 is half the lease


def test_frames_that_are_not_dhcp_for_us_are_counted_and_dropped() -> None:
    port = new_port()
    port.start(0.0)
    (frame,) = port.frames_to_send()
    discover = unwrap(frame)[3]
    offer = server_frame(discover, OFFER)
    port.receive_frame(server_frame(discover, OFFER, dst_mac=b"\x02\0\0\0\0\x99"), 0.1)
    arp = EthernetFrame(BROADCAST, SERVER_MAC, ETHERTYPE_ARP, bytes(28)).serialize_padded()
    port.receive_frame(arp, 0.1)
    port.receive_frame(offer[:30], 0.1)  # cut inside the IPv4 header
    assert port.counters["stack__unconfigured__drop"] == 2
    assert port.counters.matching("ipv4__") != {}
    assert port.frames_to_send() == []  # nothing above reached the client
    port.receive_frame(offer, 0.2)
    assert unwrap(port.frames_to_send()[0])[3].message_type == 3


def test_after_attach_the_renewal_goes_unicast_through_the_interface() -> None:
    port = new_port()
    port.start(0.0)
    discover = unwrap(port.frames_to_send()[0])[3]
    port.receive_frame(server_frame(discover, OFFER), 0.0)
    port.poll(0.0)
    request = unwrap(port.frames_to_send()[0])[3]
    port.receive_frame(server_frame(request, ACK), 0.0)
    (lease,) = port.poll(0.0)
    iface = Interface(MAC, lease.address, lease.prefix_len, lease.gateway, counters=port.counters)
    port.attach(iface)
    assert iface.udp.lookup(CLIENT_PORT) is not None

    t1 = port.next_deadline()
    assert t1 is not None
    iface.timers(t1)
    port.timers(t1)
    assert port.poll(t1) == []
    assert port.frames_to_send() == []  # unicast: not a hand-built frame...
    (arp,) = iface.frames_to_send()  # ...but the interface's, which first asks for the server
    assert EthernetFrame.parse(arp).ethertype == ETHERTYPE_ARP
    reply = ArpPacket(OP_REPLY, SERVER_MAC, SERVER, MAC, OFFERED).serialize()
    iface.receive_frame(EthernetFrame(MAC, SERVER_MAC, ETHERTYPE_ARP, reply).serialize_padded(), t1)
    (frame,) = iface.frames_to_send()
    eth, ip, _, renewal = unwrap(frame)
    assert (eth.dst, ip.src, ip.dst, renewal.message_type) == (SERVER_MAC, OFFERED, SERVER, 3)
    # The server's ACK reaches the client through the interface's socket 68.
    iface.receive_frame(server_frame(renewal, ACK, lease=1200), t1 + 0.1)
    (renewed,) = port.poll(t1 + 0.1)
    assert renewed.address == OFFERED and port.next_deadline() == t1 + 0.1 + 600
