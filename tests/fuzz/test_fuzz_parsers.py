"""Fuzzing every parser with hypothesis: parse, or raise the layer's typed error, nothing else.

Inputs are arbitrary bytes and mutations of valid units (flipped bits, cut or grown ends,
overwritten bytes), with checksums optionally made right again after the mutation so the
sanity step is reached too: the seeds, the mutation and the fixers are corpus.py's, shared
with benchmarks/fuzz_parsers.py, with hypothesis drawing the mutation's choices. The
interface, fed the same, must never raise at all.
Reassembly must give the same datagram whatever order (and duplication) fragments come in.
"""

from __future__ import annotations

from corpus import PARSERS, PEER, SEEDS, US, US_MAC, eth, ip, mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.net.counters import Counters
from summon.net.ethernet import EthernetFrame
from summon.net.interface import Interface
from summon.net.ipv4 import Ipv4Packet, Reassembler, fragment, parse_address
from summon.net.udp import UdpDatagram

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class DrawnChoices:
    """The corpus mutation's choices drawn by hypothesis, so failures shrink."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def below(self, n: int) -> int:
        return self.draw(st.integers(0, n - 1))

    def blob(self, low: int, high: int) -> bytes:
        return self.draw(st.binary(min_size=low, max_size=high - 1))

    def chance(self, p: float) -> bool:
        return self.draw(st.floats(0.0, 1.0)) < p


@st.composite
def mutated(draw: st.DrawFn, layer: str) -> bytes:
    return mutate(DrawnChoices(draw), SEEDS[layer], layer)


def any_input(layer: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(layer))


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
@given(any_input("dhcp"))
def test_dhcp_parses_or_raises_its_error(data: bytes) -> None:
    check("dhcp", data)


@FUZZ
@given(any_input("dns"))
def test_dns_parses_or_raises_its_error(data: bytes) -> None:
    check("dns", data)


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
        st.tuples(st.just(0x0800), mutated("udp").map(lambda u: ip(17, u))),
        st.tuples(st.just(0x0800), mutated("icmp").map(lambda m: ip(1, m))),
    )
    return st.one_of(
        st.binary(max_size=200), mutated("ethernet"), inner.map(lambda t: eth(t[0], t[1]))
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
        iface.receive_frame(eth(0x0800, piece.serialize()), 0.0)
    assert got
    assert all(p == payload for p in got)
