"""The wired interface: recorded Linux frames answered byte for byte, and two stacks talking
over in-memory links, clean and lossy, with every path asserted through its counter."""

from __future__ import annotations

import struct

import pytest

from summon.net.checksum import checksum
from summon.net.counters import Counters
from summon.net.errors import SanityError
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, EthernetFrame, parse_mac
from summon.net.icmp import DEST_UNREACHABLE, FRAGMENTATION_NEEDED, IcmpErrorEvent, IcmpMessage
from summon.net.interface import Interface
from summon.net.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    FragmentationNeeded,
    Ipv4Packet,
    NoRoute,
    fragment,
    parse_address,
)
from summon.net.links.memory import Faults, MemoryLink, memory_link_pair
from summon.net.udp import UdpDatagram, UdpReceived

# --- recorded frames: Linux (10.231.0.1, 02:5a:..:01) asking the stack (10.231.0.2) -----

LINUX_ARP_REQUEST = bytes.fromhex(
    "ffffffffffff025a0000000108060001080006040001025a000000010ae700010000000000000ae70002"
)
LINUX_ECHO_REQUEST = bytes.fromhex(
    "025a00000002025a00000001080045000054e2e64000400141f20ae700010ae700020800f1c6532500013f8e"
    "096b000000004c0a0f00000000005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
    "5a5a5a5a5a5a5a5a5a5a"
)
LINUX_UDP_HELLO = bytes.fromhex(
    "025a00000002025a00000001080045000021bfad40004011654e0ae700010ae700029c400007000d09ea68656c6c6f"
)
# What the stack sent back, as Linux received it (ping and the Python socket accepted these).
STACK_ARP_REPLY = bytes.fromhex(
    "025a00000001025a0000000208060001080006040002025a000000020ae70002025a000000010ae70001"
) + bytes(18)
STACK_ECHO_REPLY = bytes.fromhex(
    "025a00000001025a000000020800450000543af340004001e9e50ae700020ae700010000f9c6532500013f8e"
    "096b000000004c0a0f00000000005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
    "5a5a5a5a5a5a5a5a5a5a"
)
STACK_UDP_HELLO = bytes.fromhex(
    "025a00000001025a000000020800450000213af440004011ea070ae700020ae7000100079c40000d09ea68656c6c6f"
) + bytes(13)

STACK_MAC = parse_mac("02:5a:00:00:00:02")
STACK_IP = parse_address("10.231.0.2")
LINUX_MAC = parse_mac("02:5a:00:00:00:01")
LINUX_IP = parse_address("10.231.0.1")


def test_recorded_linux_exchange_is_answered_byte_for_byte() -> None:
    iface = Interface(STACK_MAC, STACK_IP, 24, first_identification=0x3AF3)
    echo = iface.udp_bind(7)
    iface.receive_frame(LINUX_ARP_REQUEST, 0.0)
    assert iface.frames_to_send() == [STACK_ARP_REPLY]
    iface.receive_frame(LINUX_ECHO_REQUEST, 0.1)
    assert iface.frames_to_send() == [STACK_ECHO_REPLY]
    iface.receive_frame(LINUX_UDP_HELLO, 0.2)
    (event,) = echo.events()
    assert event == UdpReceived(LINUX_IP, 40000, STACK_IP, 7, b"hello")
    assert isinstance(event, UdpReceived)
    echo.send_to(event.payload, event.src_ip, event.src_port)
    assert iface.frames_to_send() == [STACK_UDP_HELLO]
    assert iface.counters.snapshot() == {
        "arp__request__reply": 1,
        "icmp__echo_request__reply": 1,
        "udp__datagram__deliver": 1,
        "udp__datagram__send": 1,
    }


# --- two stacks on a memory link ---------------------------------------------------------

A_MAC, B_MAC, GW_MAC = (parse_mac(f"02:00:00:00:00:0{i}") for i in (1, 2, 9))
A_IP, B_IP, GW_IP = (parse_address(f"10.0.0.{i}") for i in (1, 2, 254))


class Pair:
    """Interfaces a and b joined by a memory link, on its virtual clock."""

    def __init__(self, faults: Faults | None = None, seed: int = 0, **kwargs: int) -> None:
        self.link_a, self.link_b, self.clock = memory_link_pair(seed, faults)
        self.a = Interface(A_MAC, A_IP, 24, GW_IP, **kwargs)  # type: ignore[arg-type]
        self.b = Interface(B_MAC, B_IP, 24, GW_IP, **kwargs)  # type: ignore[arg-type]

    def run(self, seconds: float = 0.5, step: float = 0.01) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.step()
            self.clock.advance(step)

    def step(self) -> None:
        now = self.clock.now
        for iface, link in ((self.a, self.link_a), (self.b, self.link_b)):
            for frame in link.receive():
                iface.receive_frame(frame, now)
            iface.timers(now)
        for iface, link in ((self.a, self.link_a), (self.b, self.link_b)):
            for frame in iface.frames_to_send():
                link.send(frame)


def test_udp_datagram_crosses_after_arp_resolution() -> None:
    pair = Pair()
    sa, sb = pair.a.udp_bind(5000), pair.b.udp_bind(6000)
    sa.send_to(b"hi", B_IP, 6000)
    pair.run()
    assert sb.events() == [UdpReceived(A_IP, 5000, B_IP, 6000, b"hi")]
    assert pair.a.counters["arp__request__send"] == 1
    assert pair.a.counters["arp__resolved__release"] == 1
    # b learned a from its request: its answer needs no ARP of its own.
    sb.send_to(b"ho", A_IP, 5000)
    pair.run()
    assert sa.events() == [UdpReceived(B_IP, 6000, A_IP, 5000, b"ho")]
    assert pair.b.counters["arp__request__send"] == 0


def test_large_datagram_is_fragmented_and_reassembled() -> None:
    pair = Pair()
    sa, sb = pair.a.udp_bind(5000), pair.b.udp_bind(6000)
    payload = bytes(i % 256 for i in range(20000))
    sa.send_to(payload, B_IP, 6000)
    pair.run()
    (event,) = sb.events()
    assert isinstance(event, UdpReceived)
    assert event.payload == payload
    assert pair.a.counters["ipv4__fragmented__send"] == 1
    assert pair.b.counters["ipv4__reassembled__deliver"] == 1


def test_dont_fragment_on_a_udp_send_raises_instead_of_cutting() -> None:
    pair = Pair()
    with pytest.raises(FragmentationNeeded):
        pair.a.udp_bind().send_to(bytes(1473), B_IP, 9, dont_fragment=True)


def test_closed_port_answers_port_unreachable_to_the_senders_socket() -> None:
    pair = Pair()
    sa = pair.a.udp_bind(5000)
    sa.send_to(b"anyone?", B_IP, 9999)
    pair.run()
    (event,) = sa.events()
    assert isinstance(event, IcmpErrorEvent)
    assert (event.kind, event.reporter, event.dst_ip) == ("port_unreachable", B_IP, B_IP)
    assert event.original[:4] == struct.pack("!HH", 5000, 9999)
    assert pair.b.counters["udp__no_socket__icmp_unreachable"] == 1
    assert pair.a.counters["icmp__error__deliver"] == 1


def test_icmp_errors_sent_are_rate_limited() -> None:
    pair = Pair()
    pair.b.icmp_errors.burst = 5
    pair.b.icmp_errors.rate = 1.0
    pair.b.icmp_errors._tokens = 5.0
    sa = pair.a.udp_bind(5000)
    for _ in range(8):
        sa.send_to(b"x", B_IP, 9999)
    pair.run(0.1)
    assert len(sa.events()) == 5
    assert pair.b.counters["udp__no_socket__icmp_unreachable"] == 5
    assert pair.b.counters["icmp__rate_limited__drop"] == 3
    assert pair.b.counters["udp__no_socket__drop"] == 3


def test_no_icmp_error_about_a_broadcast() -> None:
    pair = Pair()
    pair.a.udp_bind(5000).send_to(b"who is there", parse_address("10.0.0.255"), 9999)
    pair.run()
    assert pair.a.counters["arp__request__send"] == 0  # broadcast needs no resolution
    assert pair.b.counters["udp__no_socket__drop"] == 1
    assert pair.b.counters["udp__no_socket__icmp_unreachable"] == 0


def test_broadcast_datagram_reaches_a_bound_socket() -> None:
    pair = Pair()
    sb = pair.b.udp_bind(67)
    pair.a.udp_bind(68).send_to(b"discover", b"\xff\xff\xff\xff", 67)
    pair.run()
    assert sb.events() == [UdpReceived(A_IP, 68, b"\xff\xff\xff\xff", 67, b"discover")]


def test_ping_between_stacks_is_answered_but_broadcast_ping_is_not() -> None:
    pair = Pair()
    request = IcmpMessage.echo_request(7, 1, b"are you there").serialize()
    pair.a.register_transport(PROTO_TCP, lambda *a: None)  # unrelated: must not interfere
    pair.a.send_ip(PROTO_TCP, B_IP, b"")  # resolve b first
    pair.run()
    frame = EthernetFrame(
        B_MAC, A_MAC, ETHERTYPE_IPV4, Ipv4Packet(A_IP, B_IP, PROTO_ICMP, request).serialize()
    ).serialize()
    pair.b.receive_frame(frame, 1.0)
    (reply_frame,) = pair.b.frames_to_send()
    reply = IcmpMessage.parse(Ipv4Packet.parse(EthernetFrame.parse(reply_frame).payload).payload)
    assert (reply.type, reply.identifier, reply.sequence, reply.data) == (0, 7, 1, b"are you there")
    broadcast = EthernetFrame(
        BROADCAST,
        A_MAC,
        ETHERTYPE_IPV4,
        Ipv4Packet(A_IP, parse_address("10.0.0.255"), PROTO_ICMP, request).serialize(),
    ).serialize()
    pair.b.receive_frame(broadcast, 1.0)
    assert pair.b.frames_to_send() == []
    assert pair.b.counters["icmp__echo_broadcast__ignore"] == 1


# --- the transport hook ------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, bytes, bytes, float]] = []
        self.errors: list[tuple[IcmpErrorEvent, float]] = []

    def handler(self, src_ip: bytes, dst_ip: bytes, payload: bytes, now: float) -> None:
        self.datagrams.append((src_ip, dst_ip, payload, now))

    def error_handler(self, event: IcmpErrorEvent, now: float) -> None:
        self.errors.append((event, now))


def test_transport_gets_each_whole_datagram_of_its_protocol() -> None:
    pair = Pair()
    tcp = Recorder()
    pair.b.register_transport(PROTO_TCP, tcp.handler, tcp.error_handler)
    segment = bytes(i % 256 for i in range(3000))  # fragmented on the way
    pair.a.send_ip(PROTO_TCP, B_IP, segment)
    pair.a.send_ip(PROTO_TCP, B_IP, b"second")
    pair.run()
    assert [(s, d, p) for s, d, p, _ in tcp.datagrams] == [
        (A_IP, B_IP, segment),
        (A_IP, B_IP, b"second"),
    ]
    # Stamped with the time of the receive_frame call that completed them.
    assert len({now for *_, now in tcp.datagrams}) == 1
    assert 0.0 < tcp.datagrams[0][3] <= pair.clock.now


def test_transport_can_answer_from_inside_its_handler() -> None:
    pair = Pair()
    got = Recorder()
    pair.a.register_transport(PROTO_TCP, got.handler)

    def echo(src_ip: bytes, dst_ip: bytes, payload: bytes, now: float) -> None:
        pair.b.send_ip(PROTO_TCP, src_ip, payload.upper())

    pair.b.register_transport(PROTO_TCP, echo)
    pair.a.send_ip(PROTO_TCP, B_IP, b"syn")
    pair.run()
    assert [p for _, _, p, _ in got.datagrams] == [b"SYN"]


def test_unregistered_protocol_gets_protocol_unreachable_to_the_senders_error_handler() -> None:
    pair = Pair()
    sender = Recorder()
    pair.a.register_transport(99, sender.handler, sender.error_handler)
    pair.a.send_ip(99, B_IP, b"12345678")
    pair.run()
    ((event, _),) = sender.errors
    assert (event.kind, event.protocol, event.original) == ("protocol_unreachable", 99, b"12345678")
    assert pair.b.counters["ipv4__unknown_protocol__icmp_unreachable"] == 1


def test_fragmentation_needed_from_a_router_reaches_the_transport() -> None:
    iface = Interface(A_MAC, A_IP, 24, GW_IP)
    tcp = Recorder()
    iface.register_transport(PROTO_TCP, tcp.handler, tcp.error_handler)
    far = parse_address("192.0.2.80")
    # What we sent: a 1500-byte segment to a far host (via the gateway).
    sent = Ipv4Packet(A_IP, far, PROTO_TCP, struct.pack("!HHI", 40000, 443, 12345) + bytes(1468))
    error = IcmpMessage.error(DEST_UNREACHABLE, FRAGMENTATION_NEEDED, sent.serialize(), mtu=1400)
    frame = EthernetFrame(
        A_MAC,
        GW_MAC,
        ETHERTYPE_IPV4,
        Ipv4Packet(GW_IP, A_IP, PROTO_ICMP, error.serialize()).serialize(),
    ).serialize()
    iface.receive_frame(frame, 5.0)
    ((event, now),) = tcp.errors
    assert now == 5.0
    assert (event.kind, event.next_hop_mtu, event.reporter) == ("fragmentation_needed", 1400, GW_IP)
    assert (event.src_ip, event.dst_ip) == (A_IP, far)
    assert event.original[:8] == struct.pack("!HHI", 40000, 443, 12345)


def test_icmp_error_about_someone_elses_datagram_is_dropped() -> None:
    iface = Interface(A_MAC, A_IP, 24)
    tcp = Recorder()
    iface.register_transport(PROTO_TCP, tcp.handler, tcp.error_handler)
    sent = Ipv4Packet(B_IP, GW_IP, PROTO_TCP, bytes(20))
    error = IcmpMessage.error(DEST_UNREACHABLE, 1, sent.serialize())
    packet = Ipv4Packet(GW_IP, A_IP, PROTO_ICMP, error.serialize())
    iface.receive_frame(EthernetFrame(A_MAC, GW_MAC, 0x0800, packet.serialize()).serialize(), 0.0)
    assert tcp.errors == []
    assert iface.counters["icmp__error_not_ours__drop"] == 1


def test_arp_giving_up_tells_the_transport_host_unreachable() -> None:
    pair = Pair()
    tcp = Recorder()
    pair.a.register_transport(PROTO_TCP, tcp.handler, tcp.error_handler)
    udp = pair.a.udp_bind(5000)
    nobody = parse_address("10.0.0.77")
    pair.a.send_ip(PROTO_TCP, nobody, struct.pack("!HH", 40000, 80) + bytes(16))
    udp.send_to(b"hello?", nobody, 53)
    pair.run(5.0)
    ((event, _),) = tcp.errors
    assert (event.kind, event.reporter, event.dst_ip) == ("host_unreachable", A_IP, nobody)
    (udp_event,) = udp.events()
    assert isinstance(udp_event, IcmpErrorEvent)
    assert udp_event.kind == "host_unreachable"
    assert pair.a.counters["arp__request__retransmit"] == 2
    assert pair.a.counters["arp__unresolved__drop"] == 2


def test_transports_own_parse_errors_are_counted_in_the_same_scheme() -> None:
    class TcpSanityError(SanityError):
        layer = "tcp"

        def __init__(self, reason: str, message: str) -> None:
            super().__init__(message)
            self.reason = reason

    def reject(src_ip: bytes, dst_ip: bytes, payload: bytes, now: float) -> None:
        raise TcpSanityError("syn_fin", "SYN and FIN both set")

    pair = Pair()
    pair.b.register_transport(PROTO_TCP, reject)
    pair.a.send_ip(PROTO_TCP, B_IP, b"x" * 20)
    pair.run()
    assert pair.b.counters["tcp__syn_fin__drop"] == 1


@pytest.mark.parametrize("proto", [PROTO_ICMP, PROTO_UDP, 256, -1])
def test_interface_protocols_cannot_be_taken_over(proto: int) -> None:
    with pytest.raises(ValueError):
        Interface(A_MAC, A_IP).register_transport(proto, Recorder().handler)


# --- routing -----------------------------------------------------------------------------


def test_off_link_destinations_go_through_the_gateway() -> None:
    iface = Interface(A_MAC, A_IP, 24, GW_IP)
    iface.send_ip(PROTO_TCP, parse_address("192.0.2.1"), b"x")
    (frame,) = iface.frames_to_send()
    request = EthernetFrame.parse(frame)
    assert request.ethertype == ETHERTYPE_ARP
    assert request.payload[24:28] == GW_IP  # who has the gateway?


@pytest.mark.parametrize(
    ("dst", "message"),
    [
        ("192.0.2.1", "off-link and there is no gateway"),
        ("127.0.0.1", "no loopback here"),
        ("10.0.0.1", "no loopback here"),
        ("0.0.0.0", "no route to 0.0.0.0"),
    ],
)
def test_unroutable_destinations_raise_no_route(dst: str, message: str) -> None:
    with pytest.raises(NoRoute, match=message):
        Interface(A_MAC, A_IP, 24).send_ip(PROTO_TCP, parse_address(dst), b"x")


def test_multicast_goes_to_the_mapped_group_mac_without_arp() -> None:
    iface = Interface(A_MAC, A_IP, 24)
    iface.send_ip(PROTO_UDP, parse_address("224.0.0.251"), bytes(8))
    (frame,) = iface.frames_to_send()
    assert frame[:6] == bytes.fromhex("01005e0000fb")


# --- what is dropped on the way in, and why ----------------------------------------------


def _ip_frame(dst_mac: bytes, dst_ip: bytes, proto: int = PROTO_UDP) -> bytes:
    payload = UdpDatagram(1, 7, b"x").serialize(B_IP, dst_ip)
    packet = Ipv4Packet(B_IP, dst_ip, proto, payload)
    return EthernetFrame(dst_mac, B_MAC, ETHERTYPE_IPV4, packet.serialize()).serialize()


def _corrupt_ip_checksum(frame: bytes) -> bytes:
    return frame[:24] + bytes([frame[24] ^ 0xFF]) + frame[25:]


@pytest.mark.parametrize(
    ("frame", "counter"),
    [
        (b"\x02" * 10, "ethernet__too_short__drop"),
        (_ip_frame(B_MAC, A_IP), "ethernet__not_for_us__drop"),
        (_ip_frame(A_MAC, B_IP), "ipv4__not_for_us__drop"),
        (_ip_frame(BROADCAST, A_IP), "ipv4__unicast_in_link_broadcast__drop"),
        (
            EthernetFrame(
                A_MAC, B_MAC, ETHERTYPE_IPV4, Ipv4Packet(A_IP, A_IP, 17, bytes(8)).serialize()
            ).serialize(),
            "ipv4__own_source__drop",
        ),
        (A_MAC + B_MAC + b"\x81\x00" + bytes(50), "ethernet__vlan_tagged__drop"),
        (A_MAC + B_MAC + b"\x86\xdd" + bytes(50), "ethernet__unknown_ethertype__drop"),
        (A_MAC + B_MAC + b"\x08\x06" + bytes(10), "arp__too_short__drop"),
        (_corrupt_ip_checksum(_ip_frame(A_MAC, A_IP)), "ipv4__bad_checksum__drop"),
        (_ip_frame(A_MAC, A_IP)[:-1] + b"y", "udp__bad_checksum__drop"),
        (
            A_MAC + B_MAC + b"\x08\x00" + Ipv4Packet(B_IP, A_IP, PROTO_ICMP, b"\x08").serialize(),
            "icmp__too_short__drop",
        ),
    ],
)
def test_bad_or_foreign_frames_are_dropped_and_counted(frame: bytes, counter: str) -> None:
    iface = Interface(A_MAC, A_IP, 24)
    iface.udp_bind(7)
    iface.receive_frame(frame, 0.0)
    assert iface.counters.snapshot() == {counter: 1}
    assert iface.frames_to_send() == []


def test_full_socket_queue_drops_and_counts() -> None:
    iface = Interface(A_MAC, A_IP, 24)
    socket = iface.udp_bind(7)
    iface.udp.queue_len = 2
    for _ in range(3):
        iface.receive_frame(_ip_frame(A_MAC, A_IP), 0.0)
    assert len(socket.events()) == 2
    assert iface.counters["udp__socket_queue_full__drop"] == 1


def test_incomplete_datagram_times_out_with_icmp_time_exceeded_to_the_sender() -> None:
    pair = Pair()
    sa = pair.a.udp_bind(5000)
    pair.b.udp_bind(6000)
    sa.send_to(b"warm up arp", B_IP, 6000)
    pair.run()
    # Cut a datagram by hand and lose its last fragment.
    udp = UdpDatagram(5000, 6000, bytes(3000)).serialize(A_IP, B_IP)
    pieces = fragment(Ipv4Packet(A_IP, B_IP, PROTO_UDP, udp, identification=4242), 1500)
    for piece in pieces[:-1]:
        frame = EthernetFrame(B_MAC, A_MAC, ETHERTYPE_IPV4, piece.serialize()).serialize()
        pair.link_a.send(frame)
    pair.run(0.1)
    assert pair.b.next_deadline() is not None
    # RFC 791's timer: raised to the fragments' TTL of 64 s, capped at 60 s.
    pair.run(59.0, step=1.0)
    assert pair.b.counters["ipv4__reassembly_timeout__drop"] == 0
    pair.run(5.0, step=0.5)  # the error needs ARP again: the cache entries aged out
    assert pair.b.counters["ipv4__reassembly_timeout__drop"] == 1
    assert pair.b.counters["ipv4__reassembly_timeout__icmp_time_exceeded"] == 1
    (event,) = sa.events()
    assert isinstance(event, IcmpErrorEvent)
    assert event.kind == "reassembly_exceeded"
    assert pair.b.next_deadline() is None


def test_counters_can_be_shared_with_the_caller() -> None:
    counters = Counters()
    iface = Interface(A_MAC, A_IP, counters=counters)
    iface.receive_frame(b"", 0.0)
    assert counters["ethernet__too_short__drop"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mac": b"\x01\0\0\0\0\x01"}, "MAC must be 6 bytes and unicast"),
        ({"ip": parse_address("224.0.0.1")}, "must be unicast IPv4"),
        ({"prefix_len": 0}, "prefix length 0"),
        ({"mtu": 67}, "MTU 67 outside 68..65535"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"mac": A_MAC, "ip": A_IP, "prefix_len": 24, **kwargs}
    with pytest.raises(ValueError, match=message):
        Interface(**args)  # type: ignore[arg-type]


# --- over a lossy link -------------------------------------------------------------------


def lossy_exchange(seed: int) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    faults = Faults(drop=0.1, duplicate=0.1, reorder=0.2, delay=0.1, corrupt=0.05, latency=0.001)
    pair = Pair(faults, seed=seed)
    sa, sb = pair.a.udp_bind(5000), pair.b.udp_bind(6000)
    sent = [bytes([i]) * (100 + 700 * (i % 7)) for i in range(60)]  # some cut in 3 pieces
    for payload in sent:
        sa.send_to(payload, B_IP, 6000)
        pair.run(0.02)
    pair.run(3.0)
    got = [e.payload for e in sb.events() if isinstance(e, UdpReceived)]
    return sent, got, pair.b.counters.snapshot()


def test_lossy_link_delivers_datagrams_whole_or_not_at_all() -> None:
    sent, got, counters = lossy_exchange(seed=7)
    assert got, counters
    # Duplicates may arrive twice (UDP does not dedupe) but never damaged or spliced.
    assert set(got) <= set(sent)
    assert len(set(got)) > len(sent) // 2
    # Corruption was caught by a checksum somewhere on the way up.
    assert any("checksum" in name or "not_for_us" in name for name in counters), counters


def test_lossy_link_replays_exactly_from_its_seed() -> None:
    assert lossy_exchange(seed=3) == lossy_exchange(seed=3)
    assert lossy_exchange(seed=3) != lossy_exchange(seed=4)


def test_next_deadline_tracks_arp_retries() -> None:
    iface = Interface(A_MAC, A_IP, 24)
    assert iface.next_deadline() is None
    iface.timers(10.0)
    iface.send_ip(PROTO_TCP, B_IP, b"x")
    assert iface.next_deadline() == 11.0


def test_memory_link_is_a_link() -> None:
    a, b, _ = memory_link_pair()
    assert isinstance(a, MemoryLink)
    assert a.fileno() == -1
    a.send(b"frame")
    assert b.receive() == [b"frame"]
    a.close()
    a.send(b"lost")
    assert b.receive() == []


def test_checksum_helper_agrees_with_a_recorded_header() -> None:
    # Guard for the recorded frames above: their IP checksums are what checksum() makes.
    header = bytearray(STACK_ECHO_REPLY[14:34])
    header[10:12] = b"\0\0"
    assert checksum(header) == 0xE9E5
