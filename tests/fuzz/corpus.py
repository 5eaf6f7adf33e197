"""The fuzzers' shared corpus: seed units for every summon.net parser, the mutation, and the
checksum fixers. One module, two drivers:

- tests/fuzz/*.py (pytest + hypothesis) draw the mutation's choices with hypothesis, so a
  failure shrinks to a small input;
- benchmarks/fuzz_parsers.py and benchmarks/fuzz_tcp.py (a million inputs, and the parse
  rates) draw them with random.Random, and import this module by putting tests/fuzz on
  sys.path.

Why here and not under summon.net: it is test data (seed frames, a mutator), which images
must not carry; and why not two copies: a seed or a fixer added to one fuzzer reaches the
other. `mutate` makes its random.Random draws in the order the benchmark always did, so a
seed replays the same inputs as before the move.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

from summon.net.arp import ArpError, ArpPacket
from summon.net.checksum import checksum, pseudo_header_sum
from summon.net.dhcp import DhcpError, DhcpMessage, Lease
from summon.net.dns import DnsError, build_query, parse_response
from summon.net.errors import ParseError
from summon.net.ethernet import EthernetError, EthernetFrame
from summon.net.icmp import IcmpError, IcmpMessage
from summon.net.ipv4 import Ipv4Error, Ipv4Packet, fragment, parse_address
from summon.net.udp import UdpDatagram, UdpError

US = parse_address("10.0.0.2")
PEER = parse_address("10.0.0.1")
US_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
# TCP's fuzzers: segments from TCP_PEER to TCP_LOCAL.
TCP_LOCAL = bytes((192, 0, 2, 1))
TCP_PEER = bytes((192, 0, 2, 2))


def udp(payload: bytes, sport: int = 1234, dport: int = 7) -> bytes:
    return UdpDatagram(sport, dport, payload).serialize(PEER, US)


def ip(proto: int, payload: bytes, **kw: object) -> bytes:
    return Ipv4Packet(PEER, US, proto, payload, **kw).serialize()  # type: ignore[arg-type]


def eth(ethertype: int, payload: bytes, dst: bytes = US_MAC) -> bytes:
    return EthernetFrame(dst, PEER_MAC, ethertype, payload).serialize()


# --- seeds: valid units as a peer sends them -----------------------------------------------

ECHO = IcmpMessage.echo_request(1, 2, bytes(range(56))).serialize()
QUOTED = Ipv4Packet(US, PEER, 17, udp(b"x", 7, 9)).serialize()
ERRORS = [IcmpMessage.error(3, code, QUOTED, mtu=1400).serialize() for code in (1, 3, 4)]
_BIG = Ipv4Packet(PEER, US, 17, udp(bytes(3000)), identification=5)
FRAGMENTS = [p.serialize() for p in fragment(_BIG, 1500)]
SEEDS: dict[str, list[bytes]] = {
    "arp": [
        ArpPacket(1, PEER_MAC, PEER, bytes(6), US).serialize(),
        ArpPacket(2, PEER_MAC, PEER, US_MAC, US).serialize() + bytes(18),
    ],
    "ipv4": [
        ip(17, udp(b"hello")),
        ip(1, ECHO, options=b"\x94\x04\x00\x00\x01\x01\x01\x00"),
        ip(6, bytes(40), dont_fragment=True),
        *FRAGMENTS,
    ],
    "icmp": [ECHO, *ERRORS, IcmpMessage(13, 0, bytes(4), bytes(12)).serialize()],
    "udp": [udp(b"hello"), udp(b""), udp(bytes(1000), 53, 53)],
}
# DHCP: an OFFER and an ACK as a server sends them (a long option split per RFC 3396).
_DHCP_OPTS = {1: b"\xff\xff\xff\x00", 3: PEER, 6: PEER + US, 51: b"\0\0\x0e\x10", 54: PEER}
SEEDS["dhcp"] = [
    DhcpMessage(2, 0x1234, US_MAC, {53: b"\x02", **_DHCP_OPTS}, yiaddr=US).serialize(),
    DhcpMessage(2, 7, US_MAC, {53: b"\x05", 26: b"\x05\xdc", 15: b"x" * 300, **_DHCP_OPTS},
                yiaddr=US, flags=0x8000).serialize(),
]  # fmt: skip
DNS_ID, DNS_NAME = 0x1234, "www.example.test"
_Q = build_query(DNS_NAME, DNS_ID)[12:]  # the question, at offset 12: pointers to it are 0xC00C
_A = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + US
_CNAME = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 4) + b"\x01a\xc0\x10"  # a.example.test
_A2 = b"\x01a\xc0\x10" + struct.pack("!HHIH", 1, 1, 30, 4) + PEER
SEEDS["dns"] = [
    struct.pack("!HHHHHH", DNS_ID, 0x8180, 1, 2, 0, 0) + _Q + _A + _A[:-4] + PEER,
    struct.pack("!HHHHHH", DNS_ID, 0x8180, 1, 2, 0, 0) + _Q + _CNAME + _A2,
    struct.pack("!HHHHHH", DNS_ID, 0x8183, 1, 0, 0, 0) + _Q,  # NXDOMAIN
    struct.pack("!HHHHHH", DNS_ID, 0x8380, 1, 1, 0, 0) + _Q + _A[:8],  # TC, cut short
]
SEEDS["ethernet"] = [eth(0x0800, s) for s in SEEDS["ipv4"]] + [
    eth(0x0806, s, b"\xff" * 6) for s in SEEDS["arp"]
]
SEEDS["interface"] = [
    *SEEDS["ethernet"],
    *(eth(0x0800, ip(1, m)) for m in SEEDS["icmp"]),
    *(eth(0x0800, ip(17, u)) for u in SEEDS["udp"]),
]


def dhcp_parse(data: bytes) -> object:
    """The client's whole path for a reply: the message, then the lease an ACK would give."""
    message = DhcpMessage.parse(data)
    return Lease.from_ack(message, PEER, 0.0)


# Each parser and the one error type it may raise (the fuzz rule: a record, or this).
PARSERS: dict[str, tuple[Callable[[bytes], object], type[ParseError]]] = {
    "ethernet": (EthernetFrame.parse, EthernetError),
    "arp": (ArpPacket.parse, ArpError),
    "ipv4": (Ipv4Packet.parse, Ipv4Error),
    "icmp": (IcmpMessage.parse, IcmpError),
    "udp": (lambda b: UdpDatagram.parse(b, PEER, US), UdpError),
    "dhcp": (dhcp_parse, DhcpError),
    "dns": (lambda b: parse_response(b, DNS_ID, DNS_NAME), DnsError),
}


# --- checksums made right again after a mutation, so the sanity step is reached ------------


def fix_checksums(layer: str, data: bytearray) -> None:
    """Make the checksum of the unit at this layer right again, where the layout allows."""
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
    elif layer in ("ethernet", "interface") and len(data) >= 34 and data[12:14] == b"\x08\x00":
        inner = data[14:]
        fix_checksums("ipv4", inner)
        data[14:] = inner


def fix_tcp_checksum(data: bytearray, src: bytes = TCP_PEER, dst: bytes = TCP_LOCAL) -> None:
    """Make a TCP segment's checksum right again (its pseudo-header from src to dst)."""
    if len(data) >= 20:
        data[16:18] = b"\0\0"
        data[16:18] = checksum(data, pseudo_header_sum(src, dst, 6, len(data))).to_bytes(2, "big")


# --- the mutation ----------------------------------------------------------------------------


class Choices(Protocol):
    """Where the mutation's choices come from: random.Random (RandomChoices) or hypothesis."""

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        ...

    def blob(self, low: int, high: int) -> bytes:
        """Bytes, low <= length < high."""
        ...

    def chance(self, p: float) -> bool:
        """True with probability about p."""
        ...


class RandomChoices:
    """Choices from random.Random: the draws random.choice/randrange/randbytes make."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def below(self, n: int) -> int:
        return self.rng.randrange(n)

    def blob(self, low: int, high: int) -> bytes:
        return self.rng.randbytes(self.rng.randrange(low, high))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)  # bytes that sit on the edges of fields


def mutate(choices: Choices, seeds: Sequence[bytes], layer: str | None = None) -> bytes:
    """One input: 1 in 20 purely random bytes; otherwise a seed with one to four edits (a bit
    flipped, a byte set, the end cut, bytes appended, bytes inserted), then for half of them
    the `layer`'s checksum made right again."""
    if choices.chance(0.05):
        return choices.blob(0, 120)
    data = bytearray(seeds[choices.below(len(seeds))])
    for _ in range(1 + choices.below(4)):
        how = choices.below(5)
        if how == 0 and data:
            i = choices.below(len(data))
            data[i] ^= 1 << choices.below(8)
        elif how == 1 and data:
            value = (*INTERESTING, choices.below(256))[choices.below(6)]
            data[choices.below(len(data))] = value
        elif how == 2:
            del data[choices.below(len(data) + 1) :]
        elif how == 3:
            data += choices.blob(1, 64)
        else:
            i = choices.below(len(data) + 1)
            data[i:i] = choices.blob(1, 9)
    if layer is not None and choices.chance(0.5):
        fix_checksums(layer, data)
    return bytes(data)
