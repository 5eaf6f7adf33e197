"""summon.tls's cost: handshakes/s and bulk MB/s per backend vs stdlib ssl, in one run.

Everything runs in this process under asyncio over loopback TCP (127.0.0.1). The baseline
is the stdlib ssl module on plain kernel sockets (asyncio.start_server / open_connection with
an SSLContext on both ends); the rows put summon's device on the server (the client stays
stdlib ssl) and then on both ends. TLS 1.3, an ECDSA P-256 server certificate from a test CA
made here with `cryptography`.

    python3 benchmarks/bench_tls.py [--seconds 3] [--megabytes 64]
No timing is asserted anywhere; the figures are for the table only.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import ROOT, Report, Row

sys.path.insert(0, str(ROOT / "tests" / "unit" / "tls"))
from tls_pki import build_pki

from summon.secrets import FolderSecrets
from summon.tls.device import TLSDevice

Wrap = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter],
    Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
]
CHUNK = 1 << 16


class Setup:
    """One way to run a server and a client: (server wrap or ssl ctx, client wrap or ssl ctx)."""

    def __init__(self, name: str, folder: Path, server: str | None, client: str | None) -> None:
        self.name = name
        ca = str(folder / "ca.crt")
        self.server_ssl: ssl.SSLContext | None = None
        self.client_ssl: ssl.SSLContext | None = None
        self.server_wrap: Wrap | None = None
        self.client_wrap: Wrap | None = None
        secrets = FolderSecrets(str(folder))
        if server is None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(folder / "server-ec.crt", folder / "server-ec.key")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            self.server_ssl = ctx
        else:
            sctx = TLSDevice(secrets, server).server(
                "server-ec.crt", "server-ec.key", versions=["1.3"]
            )
            self.server_wrap = sctx.wrap
        if client is None:
            self.client_ssl = ssl.create_default_context(cafile=ca)
        else:
            cctx = TLSDevice(secrets, client).client(ca="ca.crt", versions=["1.3"])

            async def wrap(
                r: asyncio.StreamReader, w: asyncio.StreamWriter
            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                return await cctx.wrap(r, w, "localhost")

            self.client_wrap = wrap

    async def start(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> asyncio.Server:
        async def on_connection(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if self.server_wrap is not None:
                r, w = await self.server_wrap(r, w)
            await handler(r, w)

        return await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=self.server_ssl)

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=self.client_ssl,
            server_hostname="localhost" if self.client_ssl else None,
        )
        if self.client_wrap is not None:
            r, w = await self.client_wrap(r, w)
        return r, w


async def handshakes_per_second(setup: Setup, seconds: float) -> float:
    """Sequential connections, each: handshake, one byte each way, close."""

    async def echo_one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(await r.readexactly(1))
        await w.drain()
        w.close()

    server = await setup.start(echo_one)
    port = server.sockets[0].getsockname()[1]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        r, w = await setup.connect(port)
        w.write(b"x")
        await r.readexactly(1)
        w.close()
        count += 1
    elapsed = time.perf_counter() - start
    server.close()
    return count / elapsed


async def bulk_mb_per_second(setup: Setup, megabytes: float) -> float:
    """One connection: the client sends `megabytes`, the server counts and answers once."""
    total = int(megabytes * 1e6)

    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got = 0
        while got < total:
            data = await r.read(CHUNK)
            if not data:
                break
            got += len(data)
        w.write(b"done")
        await w.drain()
        w.close()

    server = await setup.start(sink)
    port = server.sockets[0].getsockname()[1]
    r, w = await setup.connect(port)
    block = b"\xa5" * CHUNK
    start = time.perf_counter()
    sent = 0
    while sent < total:
        w.write(block[: total - sent])
        sent += min(CHUNK, total - sent)
        await w.drain()
    await r.readexactly(4)
    elapsed = time.perf_counter() - start
    w.close()
    server.close()
    return total / elapsed / 1e6


def run(report: Report, seconds: float, megabytes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_pki(folder)
        baseline = Setup("stdlib ssl both ends", folder, None, None)
        setups = [
            Setup("openssl backend server, stdlib ssl client", folder, "openssl", None),
            Setup("openssl backend both ends", folder, "openssl", "openssl"),
            Setup("python backend server, stdlib ssl client", folder, "python", None),
            Setup("python backend both ends", folder, "python", "python"),
        ]
        base_hs = asyncio.run(handshakes_per_second(baseline, seconds))
        base_mb = asyncio.run(bulk_mb_per_second(baseline, megabytes))
        for setup in setups:
            hs = asyncio.run(handshakes_per_second(setup, seconds))
            report.add(
                Row(
                    f"TLS 1.3 handshakes/s, {setup.name}",
                    f"{hs:.1f}/s",
                    f"{base_hs:.1f}/s stdlib ssl",
                    hs / base_hs,
                )
            )
        for setup in setups:
            # Pure-Python AES-GCM is slow: a smaller transfer gives the same rate sooner.
            size = megabytes if "python" not in setup.name else min(megabytes, 4)
            rate = asyncio.run(bulk_mb_per_second(setup, size))
            report.add(
                Row(
                    f"bulk MB/s, {setup.name}",
                    # The table rounds ratios to 0.01: say "1/N" where that would read 0.00.
                    f"{rate:.2f} MB/s"
                    + (f" (1/{base_mb / rate:.0f})" if rate < base_mb / 100 else ""),
                    f"{base_mb:.1f} MB/s stdlib ssl",
                    rate / base_mb,
                )
            )
        report.notes.append(
            f"loopback TCP, asyncio, one process, TLS 1.3 with an ECDSA P-256 certificate; "
            f"handshake rows: sequential connections for {seconds:g} s each (handshake, one "
            f"byte each way, close); bulk rows: {megabytes:g} MB one way (4 MB for the python "
            f"backend), 64 KiB writes; Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--megabytes", type=float, default=64.0)
    args = parser.parse_args()
    report = Report()
    run(report, args.seconds, args.megabytes)
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
