"""The seeded mutation fuzzer for summon.tls's python backend: inputs, targets, the run loop.

The rule: every byte string a peer can send ends in a result or in one of summon.tls's typed
errors (TLSError and its subclasses), never in anything else. The targets are the python
backend's whole input path, each fed from a fresh session:

- stream:      arbitrary and mutated byte streams into a server session (framing, SSLv2,
               versions, the ClientHello peek), in one piece or split at random;
- hello:       mutated real ClientHellos (OpenSSL's and tlslite-ng's, TLS 1.2 and 1.3) into a
               server session, so tlslite-ng parses and answers them;
- flight:      mutated real server flights (ServerHello..Finished) into a started client;
- certificate: mutated DER certificates into x509 parsing and path validation;
- record:      mutated records after a complete handshake (costly: one handshake each).

    python tests/fuzz/tls_fuzzing.py -n 100000      # or benchmarks/fuzz_tls.py
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "unit" / "tls"))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from tls_pair import Pair, device  # noqa: E402
from tls_pki import build_pki  # noqa: E402

from summon.tls.errors import TLSError  # noqa: E402
from summon.tls.x509.certificate import Certificate  # noqa: E402
from summon.tls.x509.path import validate_chain  # noqa: E402

# Share of each target in a run; "record" is kept small: each input costs a handshake.
SHARES = {"stream": 0.55, "hello": 0.12, "flight": 0.12, "certificate": 0.205, "record": 0.005}


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four random edits of `data` (or, sometimes, random bytes or a splice)."""
    roll = rng.random()
    if roll < 0.03:
        return rng.randbytes(rng.randrange(0, 600))
    buf = bytearray(data)
    if roll < 0.08 and corpus:
        other = rng.choice(corpus)
        cut = rng.randrange(len(buf) + 1)
        buf = buf[:cut] + other[rng.randrange(len(other) + 1) :]
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rng.randbytes(8)
        op = rng.randrange(8)
        at = rng.randrange(len(buf))
        if op == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at] = rng.randrange(256)
        elif op == 2 and at + 2 <= len(buf):
            value = rng.choice((0, 1, 0xFF, 0x100, 0xFFFF, len(buf) - at, rng.randrange(65536)))
            buf[at : at + 2] = (value & 0xFFFF).to_bytes(2, "big")
        elif op == 3:
            buf[at:at] = rng.randbytes(rng.randrange(1, 40))
        elif op == 4:
            del buf[at : at + rng.randrange(1, 40)]
        elif op == 5:
            del buf[at:]
        elif op == 6:
            end = min(len(buf), at + rng.randrange(1, 60))
            buf[end:end] = buf[at:end]
        else:
            buf[at] = rng.choice((0x00, 0x01, 0x03, 0x04, 0x16, 0x17, 0x7F, 0x80, 0xFF))
    return bytes(buf)


class Fuzzer:
    """Seeds from real handshakes, the contexts, and one function per target."""

    def __init__(self, folder: Path) -> None:
        pki = build_pki(folder)
        f = str(folder)
        # The EC certificate keeps each answered ClientHello cheap (P-256 signs faster than RSA).
        self.server = device(f, "python").server(
            cert="server-ec.crt",
            key="server-ec.key",
            client_auth="optional",
            client_ca="ca.crt",
            alpn=["h2", "http/1.1"],
        )
        self.client = device(f, "python").client(ca="ca.crt", alpn=["http/1.1"])
        self.hellos: list[bytes] = []
        self.flights: list[bytes] = []
        for backend in ("openssl", "python"):
            for versions in (["1.2"], ["1.3"], ["1.2", "1.3"]):
                cli = device(f, backend).client(ca="ca.crt", versions=versions, alpn=["h2"])
                s = cli.session("localhost")
                s.start()
                self.hellos.append(s.data_to_send())
                for server_backend in ("openssl", "python"):
                    srv = device(f, server_backend).server(versions=versions)
                    p = Pair(self.client.session("localhost"), srv.session())
                    p.client.start()
                    p.server.receive_data(p.client.data_to_send())
                    self.flights.append(p.server.data_to_send())
        self.certs = [pki[n].der for n in ("server", "server-ec", "intermediate", "client")]
        self.anchors = [Certificate(pki["ca"].der)]
        self.records: list[bytes] = []
        p = Pair(self.client.session("localhost"), self.server.session())
        p.handshake()
        for payload in (b"", b"x", b"hello" * 300):
            p.client.send(payload)
            self.records.append(p.client.data_to_send())

    def stream(self, rng: random.Random) -> str:
        data = mutate(rng, rng.choice(self.hellos), self.hellos)
        session = self.server.session()
        cut = rng.randrange(len(data) + 1) if rng.random() < 0.5 else len(data)
        session.receive_data(data[:cut])
        session.receive_data(data[cut:])
        session.receive_data(b"")
        return "ok"

    def hello(self, rng: random.Random) -> str:
        # Few, small edits: most hellos stay parseable, so tlslite-ng answers them.
        data = bytearray(rng.choice(self.hellos))
        for _ in range(rng.randint(1, 2)):
            data[rng.randrange(5, len(data))] = rng.randrange(256)
        self.server.session().receive_data(bytes(data))
        return "ok"

    def flight(self, rng: random.Random) -> str:
        session = self.client.session("localhost")
        session.start()
        session.receive_data(mutate(rng, rng.choice(self.flights), self.flights))
        return "ok"

    def certificate(self, rng: random.Random) -> str:
        der = mutate(rng, rng.choice(self.certs), self.certs)
        Certificate(der)
        validate_chain([der], self.anchors, purpose="serverAuth", now=time.time())
        return "ok"

    def record(self, rng: random.Random) -> str:
        p = Pair(self.client.session("localhost"), self.server.session())
        p.handshake()
        p.server.receive_data(mutate(rng, rng.choice(self.records), self.records))
        return "ok"

    def targets(self) -> dict[str, Callable[[random.Random], str]]:
        return {
            "stream": self.stream,
            "hello": self.hello,
            "flight": self.flight,
            "certificate": self.certificate,
            "record": self.record,
        }


def run(fuzzer: Fuzzer, total: int, seed: int) -> tuple[dict[str, Counter[str]], list[str]]:
    """Feed `total` inputs across the targets; return outcomes per target and the untyped
    exceptions seen (as tracebacks)."""
    rng = random.Random(seed)
    outcomes: dict[str, Counter[str]] = {}
    untyped: list[str] = []
    for name, target in fuzzer.targets().items():
        count = max(1, round(total * SHARES[name]))
        seen: Counter[str] = Counter()
        for _ in range(count):
            try:
                seen[target(rng)] += 1
            except TLSError as err:
                # Exceptions tlslite-ng raised on its own and summon typed are named apart:
                # they are where the library's error handling is weakest.
                inner = str(err).split("tlslite-ng: ", 1)
                detail = f" from {inner[1].split(':')[0]}" if len(inner) == 2 else ""
                seen[f"{type(err).__name__}({err.reason}){detail}"] += 1
            except Exception:
                seen["UNTYPED"] += 1
                if len(untyped) < 5:
                    untyped.append(f"{name}: {traceback.format_exc()}")
        outcomes[name] = seen
    return outcomes, untyped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="inputs in all (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes, untyped = run(Fuzzer(Path(tmp)), args.n, args.seed)
    elapsed = time.perf_counter() - start
    total = sum(sum(c.values()) for c in outcomes.values())
    for name, seen in outcomes.items():
        top = ", ".join(f"{k} {v}" for k, v in seen.most_common(6))
        print(f"{name:12} {sum(seen.values()):7d}  {top}")
    print(f"{total} inputs in {elapsed:.0f} s; untyped exceptions: {len(untyped)}")
    for tb in untyped:
        print(tb)
    return 1 if untyped else 0


if __name__ == "__main__":
    sys.exit(main())
