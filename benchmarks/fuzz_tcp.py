"""Fuzz the TCP segment parser: N random and mutated segments, the count, and how many raised
anything but the layer's typed error (the rule: parse, or raise TCPIntegrityError /
TCPSanityError; the untyped count must be 0).

    python3 benchmarks/fuzz_tcp.py [-n 1000000] [--seed 1]

Inputs, in equal thirds: random bytes; well-formed segments with bytes flipped, cut or
extended (half of them re-checksummed so the mutation reaches the option walker and the sanity
checks); and headers with a random options area, correctly checksummed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
# The addresses and the checksum fixer are the test fuzzers' (tests/fuzz/corpus.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fuzz"))

from corpus import TCP_LOCAL as DST
from corpus import TCP_PEER as SRC
from corpus import fix_tcp_checksum as fix_checksum

from summon.net.tcp import TCPIntegrityError, TCPSanityError, parse_segment
from summon.net.tcp.wire import HEADER, encode, encode_options


def valid(rng: random.Random) -> bytearray:
    options = encode_options(
        rng.choice([None, 536, 1460, rng.getrandbits(16)]),
        rng.choice([None, 0, 7, 14, rng.getrandbits(8)]),
        rng.random() < 0.3,
        rng.choice([None, (rng.getrandbits(32), rng.getrandbits(32))]),
    )
    return bytearray(
        encode(
            SRC, DST, rng.randint(0, 65535), rng.randint(0, 65535), rng.getrandbits(32),
            rng.getrandbits(32), rng.getrandbits(8), rng.getrandbits(16), options,
            rng.randbytes(rng.choice([0, 0, 1, 7, 64])),
        )
    )  # fmt: skip


def mutated(rng: random.Random) -> bytes:
    data = valid(rng)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.getrandbits(8)
    roll = rng.random()
    if roll < 0.2:
        del data[rng.randrange(len(data) + 1) :]
    elif roll < 0.3:
        data += rng.randbytes(rng.randint(1, 8))
    if rng.random() < 0.5:
        fix_checksum(data)
    return bytes(data)


def random_options(rng: random.Random) -> bytes:
    area = rng.randbytes(4 * rng.randint(0, 10))
    head = HEADER.pack(
        rng.randint(0, 65535), rng.randint(0, 65535), rng.getrandbits(32), rng.getrandbits(32),
        (5 + len(area) // 4) << 4, rng.getrandbits(8), rng.getrandbits(16), 0, 0,
    )  # fmt: skip
    data = bytearray(head + area + rng.randbytes(rng.choice([0, 3])))
    fix_checksum(data)
    return bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    makers = (lambda r: r.randbytes(r.randint(0, 80)), mutated, random_options)
    outcomes: Counter[str] = Counter()
    untyped = 0
    start = time.perf_counter()
    for i in range(args.count):
        data = makers[i % 3](rng)
        try:
            parse_segment(SRC, DST, data)
            outcomes["parsed"] += 1
        except (TCPIntegrityError, TCPSanityError) as error:
            outcomes[f"{type(error).__name__}: {error.reason}"] += 1
        except Exception:
            untyped += 1
            if untyped <= 5:
                print(f"untyped exception for {data.hex()}:", file=sys.stderr)
                traceback.print_exc()
    elapsed = time.perf_counter() - start
    for outcome, n in sorted(outcomes.items()):
        print(f"{outcome:<45} {n:>10}")
    print(f"inputs {args.count}, untyped exceptions {untyped}, {args.count / elapsed:,.0f}/s")
    return 1 if untyped else 0


if __name__ == "__main__":
    sys.exit(main())
