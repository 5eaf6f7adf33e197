"""Fuzzing every parser with hypothesis: parse, or raise the layer's typed error, nothing else.

Inputs are arbitrary bytes and mutations of valid units (flipped bits, cut or grown ends,
overwritten bytes), with checksums optionally made right again after the mutation so the
sanity step is reached too. The interface, fed the same, must never raise at all.
Reassembly must give the same datagram whatever order (and duplication) fragments come in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.net.arp import ArpError, ArpPacket
from summon.net.checksum import checksum, pseudo_header_sum
from summon.net.counters import Counters
from summon.net.errors import ParseError
from summon.net.ethernet import EthernetError, EthernetFrame
from summon.net.icmp import IcmpError, IcmpMessage
from summon.net.interface import Interface
from summon.net.ipv4 import (
    PROTO_UDP,
    Ipv4Error,
    Ipv4Packet,
    Reassembler,
    fragment,
    parse_address,
)
from summon.net.udp import UdpDatagram, UdpError

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
US = parse_address("10.0.0.2")
PEER = parse_address("10.0.0.1")
US_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")


# --- valid units to start from -----------------------------------------------------------


def _udp(payload: bytes, sport: int = 1234, dport: int = 7) -> bytes:
    return UdpDatagram(sport, dport, payload).serialize(PEER, US)


def _ip(proto: int, payload: bytes, **kw: object) -> bytes:
    return Ipv4Packet(PEER, US, proto, payload, **kw).serialize()  # type: ignore[arg-type]


def _eth(ethertype: int, payload: bytes) -> bytes:
    return EthernetFrame(US_MAC, PEER_MAC, ethertype, payload).serialize()


_ECHO = IcmpMessage.echo_request(1, 2, b"ping data").serialize()
_ERROR = IcmpMessage.error(3, 3, Ipv4Packet(US, PEER, PROTO_UDP, _udp(b"x", 7, 9)).serialize())
SEEDS = {
    "ethernet": [_eth(0x0800, _ip(17, _udp(b"hello"))), _eth(0x0806, bytes(28))],
    "arp": [ArpPacket(1, PEER_MAC, PEER, bytes(6), US).serialize()],
    "ipv4": [
        _ip(17, _udp(b"hello")),
        _ip(17, bytes(64), more_fragments=True, fragment_offset=1480),
        _ip(1, _ECHO, options=b"\x94\x04\x00\x00\x01\x01\x01\x00"),
    ],
    "icmp": [_ECHO, _ERROR.serialize()],
    "udp": [_udp(b"hello"), _udp(b"")],
}


def fix_checksums(layer: str, data: bytearray) -> None:
    """Make the layer's checksum right again after a mutation, where the layout allows."""
    if layer == "ipv4" and len(data) >= 20:
        header_len = min(max((data[0] & 0x0F) * 4, 20), len(data))
        data[10:12] = b"\0\0"
        data[10:12] = checksum(data[:header_len]).to_bytes(2, "big")
    elif layer == "icmp" and len(data) >= 8:
        data[2:4] = b"\0\0"
        data[2:4] = checksum(data).to_bytes(2, "big")
    elif layer == "udp" and len(data) >= 8:
        length = min(struct.unpack_from("!H", data, 4)[0], len(data))
        data[6:8] = b"\0\0"
        value = checksum(data[:length], pseudo_header_sum(PEER, US, 17, length))
        data[6:8] = (value or 0xFFFF).to_bytes(2, "big")


@st.composite
def mutated(draw: st.DrawFn, layer: str) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS[layer])))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "cut", "grow", "insert"]))
        if how == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif how == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif how == "grow":
            data += draw(st.binary(max_size=64))
        elif how == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        fix_checksums(layer, data)
    return bytes(data)


def any_input(layer: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(layer))


PARSERS: dict[str, tuple[Callable[[bytes], object], type[ParseError]]] = {
    "ethernet": (EthernetFrame.parse, EthernetError),
    "arp": (ArpPacket.parse, ArpError),
    "ipv4": (Ipv4Packet.parse, Ipv4Error),
    "icmp": (IcmpMessage.parse, IcmpError),
    "udp": (lambda b: UdpDatagram.parse(b, PEER, US), UdpError),
}


def check(layer: str, data: bytes) -> None:
    """The fuzz rule: a record, or the layer's own error with its reason; nothing else."""
    parse, error = PARSERS[layer]
    try:
        parse(data)
    except error as e:
        assert e.layer == layer
        assert isinstance(e.reason, str) and e.reason  # type: ignore[attr-defined]
        assert str(e).startswith(f"{layer}: ")


@FUZZ
@given(any_input("ethernet"))
def test_ethernet_parses_or_raises_its_error(data: bytes) -> None:
    check("ethernet", data)


@FUZZ
@given(any_input("arp"))
def test_arp_parses_or_raises_its_error(data: bytes) -> None:
    check("arp", data)


@FUZZ
@given(any_input("ipv4"))
def test_ipv4_parses_or_raises_its_error(data: bytes) -> None:
    check("ipv4", data)


@FUZZ
@given(any_input("icmp"))
def test_icmp_parses_or_raises_its_error(data: bytes) -> None:
    check("icmp", data)


@FUZZ
@given(any_input("udp"))
def test_udp_parses_or_raises_its_error(data: bytes) -> None:
    check("udp", data)


@FUZZ
@given(
    st.sampled_from(["ipv4", "icmp", "udp", "arp"]).flatmap(
        lambda layer: st.tuples(st.just(layer), mutated(layer))
    )
)
def test_what_parses_reserializes_to_a_unit_that_parses_equal(case: tuple[str, bytes]) -> None:
    layer, data = case
    parse, error = PARSERS[layer]
    try:
        record = parse(data)
    except error:
        return
    if layer == "udp":
        assert isinstance(record, UdpDatagram)
        assert UdpDatagram.parse(record.serialize(PEER, US), PEER, US) == record
    else:
        assert parse(record.serialize()) == record  # type: ignore[attr-defined]


# --- the whole interface -----------------------------------------------------------------


def _frame_inputs() -> st.SearchStrategy[bytes]:
    inner = st.one_of(
        st.tuples(st.just(0x0800), mutated("ipv4")),
        st.tuples(st.just(0x0806), mutated("arp")),
        st.tuples(st.just(0x0800), mutated("udp").map(lambda u: _ip(17, u))),
        st.tuples(st.just(0x0800), mutated("icmp").map(lambda m: _ip(1, m))),
    )
    return st.one_of(
        st.binary(max_size=200), mutated("ethernet"), inner.map(lambda t: _eth(t[0], t[1]))
    )


@FUZZ
@given(st.lists(_frame_inputs(), min_size=1, max_size=8))
def test_interface_never_raises_on_any_frames(frames: list[bytes]) -> None:
    iface = Interface(US_MAC, US, 24, parse_address("10.0.0.254"))
    iface.udp_bind(7)
    iface.register_transport(6, lambda *a: None, lambda *a: None)
    for i, frame in enumerate(frames):
        iface.receive_frame(frame, float(i))
        iface.timers(float(i))
        for out in iface.frames_to_send():
            EthernetFrame.parse(out)  # what we send parses
    iface.timers(1000.0)


# --- reassembly: same datagram whatever the order ----------------------------------------


@st.composite
def fragment_orders(draw: st.DrawFn) -> tuple[bytes, list[Ipv4Packet]]:
    mtu = draw(st.integers(68, 1500))
    # Larger than one packet can carry, so it is always cut.
    payload = draw(st.binary(min_size=mtu - 19, max_size=9000))
    pieces = fragment(Ipv4Packet(PEER, US, 17, payload, identification=99), mtu)
    arriving = [Ipv4Packet.parse(p.serialize()) for p in pieces]
    # Some duplicates, then any order: as a link that duplicates and reorders delivers them.
    arriving += draw(st.lists(st.sampled_from(arriving), max_size=3))
    return payload, draw(st.permutations(arriving))


@FUZZ
@given(fragment_orders())
def test_reassembly_gives_the_same_datagram_in_any_order(
    case: tuple[bytes, list[Ipv4Packet]],
) -> None:
    payload, arriving = case
    reassembler = Reassembler(Counters())
    done = [d for p in arriving if (d := reassembler.add(p, 0.0)) is not None]
    # Duplicates arriving after completion start a new attempt: it completes again only
    # when a whole second set came (as on Linux), and never into anything else.
    assert done
    assert all(d == Ipv4Packet(PEER, US, 17, payload, identification=99) for d in done)
    reassembler.expire(1e9)
    assert reassembler.bytes_held == 0


@FUZZ
@given(fragment_orders())
def test_interface_delivers_one_datagram_whatever_the_fragment_order(
    case: tuple[bytes, list[Ipv4Packet]],
) -> None:
    payload, arriving = case
    iface = Interface(US_MAC, US, 24)
    got: list[bytes] = []
    iface.register_transport(17 + 200, lambda s, d, p, n: got.append(p))
    for piece in arriving:
        piece.protocol = 217
        iface.receive_frame(_eth(0x0800, piece.serialize()), 0.0)
    assert got
    assert all(p == payload for p in got)
