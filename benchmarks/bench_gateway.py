"""The gateway's figures, each beside its baseline from the same run (see run.py).

- cold start through the gateway, sandbox target: a DNS query for the service (which starts
  its boot) to the first byte of the HTTP response, vs the bare host process start of the
  same app (run.py's bare_start: host python3.11, first response), interleaved;
- the same request warm (instance up) vs the bare process answering it warm;
- memory of N configured services at rest (all scaled to zero: the gateway process alone) vs
  all up (the gateway plus every instance's resident memory).

    python3 benchmarks/bench_gateway.py [--runs N] [--services N]   (root and runc)

run(report, image) adds rows to run.py's Report. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dns.resolver
from common import free_port
from run import (
    HTTP_APP,
    ROOT,
    Report,
    Row,
    bare_root,
    bare_start,
    build,
    first_response,
    mb,
    ms,
    stop,
)

from summon.store import Store
from summon.store.image import Image


class GatewayProcess:
    """`summon gateway` on a config of n copies of the http image, idle timeout short."""

    def __init__(
        self,
        image: Image,
        state: Path,
        n: int,
        idle: str,
        target: str = "sandbox",
        freeze_after: str | None = None,
    ) -> None:
        self.dns_port, self.status_port = free_port(), free_port()
        config = state / "gateway.toml"
        freeze = f'freeze_after = "{freeze_after}"\n' if freeze_after else ""
        services = "".join(
            f'\n[[service]]\nname = "web{i}"\nimage = "{image.ref}"\nidle_timeout = "{idle}"\n'
            f'target = "{target}"\nboot_timeout = "60s"\n{freeze}'
            for i in range(n)
        )
        config.write_text(
            f'[gateway]\ndns = "127.0.0.1:{self.dns_port}"\n'
            f'status = "127.0.0.1:{self.status_port}"\n{services}'
        )
        # Its own state, and so its own host keys: its snapshots go beside them, not into the
        # user's cache (where that state's keys would make them refused and clutter).
        env = {
            **os.environ,
            "SUMMON_STORE": str(image.store.root),
            "XDG_STATE_HOME": str(state),
            "SUMMON_SNAPSHOTS": str(state / "snapshots"),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "summon.cli.main", "gateway", "--config", str(config)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.status()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()  # no gateway left behind, holding its services' addresses
                    raise
                time.sleep(0.05)
        self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.nameservers = ["127.0.0.1"]
        self.resolver.port = self.dns_port

    def status(self) -> dict[str, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", "/status.json")
        doc = json.loads(conn.getresponse().read())
        conn.close()
        return {s["name"]: s for s in doc["services"]}

    def wait_state(self, name: str, state: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.status()[name]["state"] != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not {state}")
            time.sleep(0.05)

    def first_byte(self, name: str, resolve: bool = True) -> float:
        """Seconds from the DNS query (or the connect) to the first byte of GET /."""
        t0 = time.monotonic()
        address = (
            str(self.resolver.resolve(f"{name}.summon.test", "A")[0].address)
            if resolve
            else self.status()[name]["address"]
        )
        if not resolve:
            t0 = time.monotonic()
        conn = http.client.HTTPConnection(address, 80, timeout=20)
        conn.request("GET", "/")
        response = conn.getresponse()  # status line and headers: the first bytes are in
        elapsed = time.monotonic() - t0
        response.read()
        conn.close()
        return elapsed

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self, timeout: float = 5.0) -> None:
        """SIGTERM, and the gateway stops its instances; SIGKILL past timeout seconds (a
        killed gateway leaves them for the next one on its state folder to release)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _bare_warm(port: int) -> float:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    conn.getresponse().read()
    conn.close()
    return time.monotonic() - t0


def run(report: Report, image: Image, runs: int = 9, services: int = 5) -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        report.notes.append("gateway figures skipped: they need root and runc")
        return
    print("gateway: cold and warm starts, memory at rest and up...", file=sys.stderr)
    image.rootfs()
    cold: list[float] = []
    bare: list[float] = []
    warm: list[float] = []
    bare_warm: list[float] = []
    with bare_root(image) as (root, env), tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(image, Path(tmp), 1, "0.3s")
        try:
            for _ in range(runs + 1):  # run 0 warms up and is not counted
                elapsed, _pid, proc = bare_start(root, env)
                bare.append(elapsed)
                stop(proc)
                gw.wait_state("web0", "down")
                cold.append(gw.first_byte("web0"))
                for _ in range(5):
                    warm.append(gw.first_byte("web0", resolve=False))
            boots = gw.status()["web0"]["boots"]
        finally:
            gw.close()
        # The bare app answering warm: one process started once, asked five times per run.
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
                "from summon.runtime.init import main; sys.exit(main())",
            ],
            env={**env, "SUMMON_PORTS": f"80/tcp={port}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            first_response(port, time.monotonic() + 20)
            bare_warm = [_bare_warm(port) for _ in range(5 * runs)]
        finally:
            stop(proc)
    c, b = statistics.median(cold[1:]), statistics.median(bare[1:])
    report.add(
        Row(
            f"gateway cold start, DNS query to first HTTP byte, sandbox (median of {runs})",
            ms(c),
            ms(b) + " bare python3.11 start",
            c / b,
            "<= 2",
        )
    )
    w, bw = statistics.median(warm[5:]), statistics.median(bare_warm)
    report.add(
        Row(
            "  the same request warm (connect to first byte)",
            f"{w * 1000:.2f} ms",
            f"{bw * 1000:.2f} ms bare app",
            w / bw,
        )
    )
    report.notes.append(f"gateway: {boots} boots for {runs + 1} cold requests (one each)")
    bench_qemu_cold(report, image, b, max(2, runs // 3))

    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(image, Path(tmp), services, "600s")
        try:
            time.sleep(0.5)
            rest = gw.rss()
            for i in range(services):
                gw.first_byte(f"web{i}", resolve=False)
            time.sleep(0.5)
            up = gw.rss() + sum(s["memory_bytes"] or 0 for s in gw.status().values())
        finally:
            gw.close()
    report.add(
        Row(
            f"memory of {services} services all up (gateway + instances)",
            mb(up),
            mb(rest) + " at rest (gateway alone)",
            up / rest,
        )
    )


def bench_qemu_cold(report: Report, image: Image, bare: float, runs: int) -> None:
    """The same cold and warm request with the qemu target (its kernel built if need be)."""
    if shutil.which("qemu-system-x86_64") is None:
        report.notes.append("gateway qemu figures skipped: apt-get install qemu-system-x86")
        return
    from summon.build.boot import ensure_boot_artifact

    image, _boot = ensure_boot_artifact(image)
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(image, Path(tmp), 1, "0.3s", target="qemu")
        try:
            for _ in range(runs):
                gw.wait_state("web0", "down", 60)
                cold.append(gw.first_byte("web0"))
                warm += [gw.first_byte("web0", resolve=False) for _ in range(5)]
        finally:
            gw.close()
    c = statistics.median(cold)
    report.add(
        Row(
            f"gateway cold start, DNS query to first HTTP byte, qemu (median of {runs})",
            ms(c),
            ms(bare) + " bare python3.11 start",
            c / bare,
        )
    )
    report.add(
        Row("  the same request warm, qemu", f"{statistics.median(warm) * 1000:.2f} ms", "-", None)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--services", type=int, default=5)
    args = parser.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="summon-bench-store-") as tmp:
        os.environ["SUMMON_STORE"] = tmp
        image = build(HTTP_APP, Store(Path(tmp)), "bench-http:gw").image
        run(report, image, args.runs, args.services)
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
