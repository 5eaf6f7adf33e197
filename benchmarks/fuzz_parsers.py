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
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

# The seeds, the mutation and the checksum fixers are the test fuzzers' (tests/fuzz/corpus.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fuzz"))

from corpus import (
    ECHO,
    PEER,
    PEER_MAC,
    SEEDS,
    US,
    US_MAC,
    RandomChoices,
    eth,
    ip,
    mutate,
    udp,
)
from corpus import (
    PARSERS as CORPUS_PARSERS,
)

from summon.net.ethernet import EthernetFrame
from summon.net.interface import Interface
from summon.net.ipv4 import Ipv4Packet, parse_address
from summon.net.udp import UdpDatagram


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
    **CORPUS_PARSERS,
    # The interface catches every typed error itself: anything escaping it is a failure.
    "interface": (interface_parser(), ()),  # type: ignore[dict-item]
}


def fuzz(layer: str, count: int, seed: int) -> tuple[int, Counter[str], int, float]:
    """(parsed, typed errors by reason, untyped exceptions, seconds)."""
    choices = RandomChoices(random.Random(f"{seed}:{layer}"))
    seeds = SEEDS[layer]
    parse, typed = PARSERS[layer]
    inputs_per_batch = 10_000
    parsed = untyped = 0
    reasons: Counter[str] = Counter()
    elapsed = 0.0
    done = 0
    while done < count:
        batch = [mutate(choices, seeds, layer) for _ in range(min(inputs_per_batch, count - done))]
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
