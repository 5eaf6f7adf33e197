"""Run N random and mutated inputs through every summon.net parser; count untyped exceptions.

The rule (issue 4): a parser returns a record or raises its layer's typed error, never
anything else. Inputs are valid units mutated with stdlib random (bit flips, overwritten
bytes, cut and grown ends, insertions; half of them with the checksum made right again so
the sanity step is reached) plus some purely random bytes. The whole interface is fuzzed
too: receive_frame must never raise. Each row also gives the parse rate, and the last
table the rate on valid frames, for the performance notes.

    python benchmarks/fuzz_parsers.py                 # 1,000,000 inputs per parser
    python benchmarks/fuzz_parsers.py -n 10000        # a quick run
Exits 1 if any untyped exception was seen.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from summon.net.arp import ArpError, ArpPacket
from summon.net.checksum import checksum, pseudo_header_sum
from summon.net.dhcp import DhcpError, DhcpMessage, Lease
from summon.net.dns import DnsError, build_query, parse_response
from summon.net.ethernet import EthernetError, EthernetFrame
from summon.net.icmp import IcmpError, IcmpMessage
from summon.net.interface import Interface
from summon.net.ipv4 import Ipv4Error, Ipv4Packet, fragment, parse_address
from summon.net.udp import UdpDatagram, UdpError

US = parse_address("10.0.0.2")
PEER = parse_address("10.0.0.1")
US_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")


def udp(payload: bytes, sport: int = 1234, dport: int = 7) -> bytes:
    return UdpDatagram(sport, dport, payload).serialize(PEER, US)


def ip(proto: int, payload: bytes, **kw: object) -> bytes:
    return Ipv4Packet(PEER, US, proto, payload, **kw).serialize()  # type: ignore[arg-type]


def eth(ethertype: int, payload: bytes, dst: bytes = US_MAC) -> bytes:
    return EthernetFrame(dst, PEER_MAC, ethertype, payload).serialize()


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


def dhcp_parse(data: bytes) -> object:
    """The client's whole path for a reply: the message, then the lease an ACK would give."""
    message = DhcpMessage.parse(data)
    return Lease.from_ack(message, PEER, 0.0)


SEEDS["ethernet"] = [eth(0x0800, s) for s in SEEDS["ipv4"]] + [
    eth(0x0806, s, b"\xff" * 6) for s in SEEDS["arp"]
]
SEEDS["interface"] = [
    *SEEDS["ethernet"],
    *(eth(0x0800, ip(1, m)) for m in SEEDS["icmp"]),
    *(eth(0x0800, ip(17, u)) for u in SEEDS["udp"]),
]


def fix_checksums(layer: str, data: bytearray) -> None:
    """Make the checksum of the unit at this layer right again after a mutation."""
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


def mutate(rng: random.Random, layer: str) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(0, 120))
    data = bytearray(rng.choice(SEEDS[layer]))
    for _ in range(rng.randrange(1, 5)):
        how = rng.randrange(5)
        if how == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1 and data:
            data[rng.randrange(len(data))] = rng.choice(
                (0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256))
            )
        elif how == 2:
            del data[rng.randrange(len(data) + 1) :]
        elif how == 3:
            data += rng.randbytes(rng.randrange(1, 64))
        else:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randrange(1, 9))
    if rng.random() < 0.5:
        fix_checksums(layer, data)
    return bytes(data)


def interface_parser() -> Callable[[bytes], object]:
    """The whole stack as one parser; a fresh interface every 1000 frames keeps state small."""
    state: dict[str, object] = {"n": 0}

    def make() -> Interface:
        iface = Interface(US_MAC, US, 24, parse_address("10.0.0.254"))
        iface.udp_bind(7)
        iface.register_transport(6, lambda *a: None, lambda *a: None)
        return iface

    iface = make()

    def receive(frame: bytes) -> None:
        nonlocal iface
        n = int(state["n"])  # type: ignore[call-overload]
        state["n"] = n + 1
        if n % 1000 == 999:
            iface.timers(n / 100)
            iface.frames_to_send()
            iface = make()
        iface.receive_frame(frame, n / 100)
        iface.udp.lookup(7).events()  # type: ignore[union-attr]

    return receive


PARSERS: dict[str, tuple[Callable[[bytes], object], type[BaseException]]] = {
    "ethernet": (EthernetFrame.parse, EthernetError),
    "arp": (ArpPacket.parse, ArpError),
    "ipv4": (Ipv4Packet.parse, Ipv4Error),
    "icmp": (IcmpMessage.parse, IcmpError),
    "udp": (lambda b: UdpDatagram.parse(b, PEER, US), UdpError),
    "dhcp": (dhcp_parse, DhcpError),
    "dns": (lambda b: parse_response(b, DNS_ID, DNS_NAME), DnsError),
    # The interface catches every typed error itself: anything escaping it is a failure.
    "interface": (interface_parser(), ()),  # type: ignore[dict-item]
}


def fuzz(layer: str, count: int, seed: int) -> tuple[int, Counter[str], int, float]:
    """(parsed, typed errors by reason, untyped exceptions, seconds)."""
    rng = random.Random(f"{seed}:{layer}")
    parse, typed = PARSERS[layer]
    inputs_per_batch = 10_000
    parsed = untyped = 0
    reasons: Counter[str] = Counter()
    elapsed = 0.0
    done = 0
    while done < count:
        batch = [mutate(rng, layer) for _ in range(min(inputs_per_batch, count - done))]
        start = time.perf_counter()
        for data in batch:
            try:
                parse(data)
                parsed += 1
            except typed as e:
                reasons[getattr(e, "reason", "?")] += 1
            except Exception:
                untyped += 1
                if untyped <= 3:
                    print(f"UNTYPED in {layer} on {data.hex()}", file=sys.stderr)
                    traceback.print_exc()
        elapsed += time.perf_counter() - start
        done += len(batch)
    return parsed, reasons, untyped, elapsed


def valid_rates(seconds: float = 0.5) -> list[tuple[str, float]]:
    """Frames per second on valid input, for each path worth a number."""
    udp_frame = eth(0x0800, ip(17, udp(bytes(512))))
    ping_frame = eth(0x0800, ip(1, ECHO))
    iface = Interface(US_MAC, US, 24)
    sock = iface.udp_bind(7)
    iface.arp.cache.put(PEER, PEER_MAC, 0.0)
    iface.arp.cache.lifetime = 1e12

    def rx_udp() -> None:
        iface.receive_frame(udp_frame, 1.0)
        sock.events()

    def rx_ping() -> None:
        iface.receive_frame(ping_frame, 1.0)
        iface.frames_to_send()

    def tx_udp() -> None:
        sock.send_to(bytes(512), PEER, 9)
        iface.frames_to_send()

    ip_packet = udp_frame[14:]
    cases: list[tuple[str, Callable[[], object]]] = [
        ("EthernetFrame.parse", lambda: EthernetFrame.parse(udp_frame)),
        ("Ipv4Packet.parse (512 B UDP)", lambda: Ipv4Packet.parse(ip_packet)),
        ("UdpDatagram.parse (512 B)", lambda: UdpDatagram.parse(ip_packet[20:], PEER, US)),
        ("receive_frame: UDP 512 B to a socket", rx_udp),
        ("receive_frame: ping -> reply frame", rx_ping),
        ("UdpSocket.send_to 512 B -> frame", tx_udp),
    ]
    rates = []
    for name, func in cases:
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(200):
                func()
            n += 200
        rates.append((name, n / (time.perf_counter() - start)))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(PARSERS), action="append")
    args = parser.parse_args()
    total_untyped = 0
    print(f"{'parser':<10} {'inputs':>10} {'parsed':>9} {'typed err':>10} {'untyped':>8} "
          f"{'inputs/s':>9}  top reasons")  # fmt: skip
    for layer in args.only or list(PARSERS):
        parsed, reasons, untyped, elapsed = fuzz(layer, args.count, args.seed)
        total_untyped += untyped
        top = ", ".join(f"{r} {n}" for r, n in reasons.most_common(3))
        print(f"{layer:<10} {args.count:>10,} {parsed:>9,} {sum(reasons.values()):>10,} "
              f"{untyped:>8} {args.count / elapsed:>9,.0f}  {top}", flush=True)  # fmt: skip
    print()
    print(f"{'valid-frame path':<40} {'per second':>12}")
    for name, rate in valid_rates():
        print(f"{name:<40} {rate:>12,.0f}")
    print()
    print(f"untyped exceptions: {total_untyped}")
    return 1 if total_untyped else 0


if __name__ == "__main__":
    sys.exit(main())
