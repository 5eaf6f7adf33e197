"""The direct network mode's figures, each beside the kernel's from the same run (see run.py).

One network namespace, set up exactly as the sandbox's direct mode sets it up
(summon.targets.sandbox.tap: tap0, MTU 65000, the kernel at 10.7.0.1, the app at 10.7.0.2). The
app is a process of its own on the host's python, given the TAP fd (direct) or started
inside the namespace on kernel sockets (baseline); load comes from inside the namespace:

- examples/http requests/s, wrk (keep-alive) against the direct stack, vs the same app on
  kernel sockets reached over the namespace's loopback;
- TCP bulk MB/s, a sink app receiving from a Linux sender, and a source app sending to a
  Linux sink; vs the same apps on kernel sockets;
- memory per idle TCP connection (the app process's anonymous memory, 1,000 connections held
  open) vs the kernel-socket app's (whose kernel-side socket memory is not in that figure);
- whether 1,000 concurrent connections are held, and how long opening them took.

    python3 benchmarks/bench_direct.py [--runs 3]     (root; wrk from Debian's wrk package)

run(report) adds rows to run.py's Report. Nothing here is a test; timings are medians of
interleaved runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HTTP_APP = ROOT / "examples" / "http"
sys.path.insert(0, str(ROOT / "src"))

from common import Report, Row  # noqa: E402

from summon.targets.sandbox import tap as direct  # noqa: E402
from summon.targets.sandbox.netns import NetNamespace  # noqa: E402

BULK_MB = 200
CONNECTIONS = 1000
KERNEL_ADDRESS = direct.HOST_ADDRESS  # where the kernel-socket baseline listens


# --- the apps (run as `bench_direct.py --serve KIND --net MODE` in a process of their own) ------


def serve(kind: str, net: str) -> None:
    """Run one benchmark app on the direct stack (TAP fd from the environment) or kernel
    sockets; print READY when it listens; run until SIGTERM."""
    import asyncio

    async def main() -> None:
        if net == "direct":
            from summon.net.stack import DirectStack

            stack: Any = DirectStack.from_environ(os.environ)
        else:
            from summon.runtime.socket_stack import SocketStack

            stack = SocketStack(bind=KERNEL_ADDRESS)
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, lambda: stopped.done() or stopped.set_result(None))
        if kind == "http":
            sys.path.insert(0, str(HTTP_APP))
            import app as http  # type: ignore[import-not-found]

            from summon.runtime.posix_devices import FolderKV, StdoutConsole

            task = asyncio.ensure_future(
                http.main(stack, FolderKV(str(HTTP_APP / "static")), StdoutConsole("error"))
            )
            await asyncio.sleep(0.3)
        elif kind == "sink":

            async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                total = 0
                while data := await reader.read(1 << 20):
                    total += len(data)
                writer.write(b"%d\n" % total)
                await writer.drain()
                writer.close()

            await stack.start_server(sink, 5001)
        elif kind == "source":

            async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                size = int(await reader.readline())
                chunk = os.urandom(1 << 20)
                for _ in range(size >> 20):
                    writer.write(chunk)
                    await writer.drain()
                writer.close()
                await writer.wait_closed()

            await stack.start_server(source, 5002)
        elif kind == "hold":
            held: list[asyncio.StreamWriter] = []

            def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                held.append(writer)

            await stack.start_server(hold, 5003, backlog=CONNECTIONS + 24)
        print("READY", flush=True)
        await stopped
        if kind == "http":
            task.cancel()

    asyncio.run(main())


# --- harness -------------------------------------------------------------------------------------


class Bench:
    """The namespace with its TAP, and the means to run apps and load inside it."""

    def __init__(self, ns: NetNamespace, tap: direct.DirectNetwork) -> None:
        self.ns = ns
        self.tap = tap

    def inside(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns.name, *argv]

    @contextlib.contextmanager
    def app(self, kind: str, net: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
        """The app running; yields (process, address to reach it at from the namespace)."""
        argv = [sys.executable, __file__, "--serve", kind, "--net", net]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        if net == "direct":
            env.update(self.tap.app_environment())
            env["SUMMON_TAP_FD"] = str(self.tap.fd)
            env.pop("SUMMON_NET_STATS", None)
            proc = subprocess.Popen(
                argv, env=env, pass_fds=(self.tap.fd,), stdout=subprocess.PIPE, text=True
            )
            address = direct.STACK_ADDRESS
        else:
            proc = subprocess.Popen(self.inside(*argv), env=env, stdout=subprocess.PIPE, text=True)
            address = KERNEL_ADDRESS
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"{kind}/{net} app did not start: {line!r}")
            yield proc, address
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def python(self, code: str, timeout: float = 300) -> str:
        result = subprocess.run(
            self.inside(sys.executable, "-c", code),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"load generator failed: {result.stderr.strip()[-500:]}")
        return result.stdout


@contextlib.contextmanager
def bench_namespace() -> Iterator[Bench]:
    with NetNamespace(f"summon-bench-direct-{os.getpid()}") as ns:
        tap = direct.DirectNetwork(ns.path)
        tap.create()
        try:
            yield Bench(ns, tap)
        finally:
            tap.close()


def requests_per_second(bench: Bench, net: str, seconds: int = 5) -> float:
    with bench.app("http", net) as (_proc, address):
        out = subprocess.run(
            bench.inside("wrk", "-t1", "-c16", f"-d{seconds}s", f"http://{address}/"),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk against the {net} app: {out.strip()[-400:]}")
    return float(found.group(1))


SENDER = """
import os, socket, time
data = os.urandom(1 << 20)
s = socket.create_connection(({address!r}, 5001))
start = time.perf_counter()
for _ in range({mb}):
    s.sendall(data)
s.shutdown(socket.SHUT_WR)
total = int(s.makefile().readline())
print(total / (time.perf_counter() - start) / 1e6)
"""

RECEIVER = """
import socket, time
s = socket.create_connection(({address!r}, 5002))
s.sendall(b"%d\\n" % ({mb} << 20))
start = time.perf_counter(); total = 0
while data := s.recv(1 << 20):
    total += len(data)
assert total == {mb} << 20, total
print(total / (time.perf_counter() - start) / 1e6)
"""


def bulk(bench: Bench, net: str, direction: str) -> float:
    """MB/s into the app (its sink) or out of it (its source)."""
    kind, code = ("sink", SENDER) if direction == "in" else ("source", RECEIVER)
    with bench.app(kind, net) as (_proc, address):
        return float(bench.python(code.format(address=address, mb=BULK_MB)))


HOLDER = """
import socket, time
start = time.perf_counter()
socks = [socket.create_connection(({address!r}, 5003)) for _ in range({n})]
print(time.perf_counter() - start, flush=True)
input()  # held until the harness has measured
"""


def rss_anon(pid: int) -> int:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return sum(int(fields.get(k, "0 kB").split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))


def hold_connections(bench: Bench, net: str) -> tuple[float, float]:
    """(bytes of app memory per idle connection, seconds to open them all)."""
    with bench.app("hold", net) as (proc, address):
        pid = proc.pid  # `ip netns exec` execs the app: the same pid in both modes
        time.sleep(0.3)
        before = rss_anon(pid)
        holder = subprocess.Popen(
            bench.inside(sys.executable, "-c", HOLDER.format(address=address, n=CONNECTIONS)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            opened = float(holder.stdout.readline())
            time.sleep(0.5)
            after = rss_anon(pid)
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(30)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
    return (after - before) / CONNECTIONS, opened


# --- the figures ---------------------------------------------------------------------------------


def run(report: Report, runs: int = 3) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        report.notes.append("direct-mode figures skipped: they need root and /dev/net/tun")
        return
    if shutil.which("wrk") is None:
        report.notes.append("direct-mode figures skipped: apt-get install wrk")
        return
    print("direct mode: http requests/s, bulk TCP, idle connections...", file=sys.stderr)
    with bench_namespace() as bench:
        rps: dict[str, list[float]] = {"direct": [], "kernel": []}
        into: dict[str, list[float]] = {"direct": [], "kernel": []}
        out_of: dict[str, list[float]] = {"direct": [], "kernel": []}
        for _ in range(runs):  # interleaved: noise on the shared machine hits both alike
            for net in ("direct", "kernel"):
                rps[net].append(requests_per_second(bench, net))
                into[net].append(bulk(bench, net, "in"))
                out_of[net].append(bulk(bench, net, "out"))
        per_conn = {net: hold_connections(bench, net) for net in ("direct", "kernel")}

    def med(values: list[float]) -> float:
        return statistics.median(values)

    d, k = med(rps["direct"]), med(rps["kernel"])
    report.add(
        Row(
            "examples/http requests/s, direct stack (wrk -c16, keep-alive)",
            f"{d:.0f}/s",
            f"{k:.0f}/s kernel sockets",
            d / k,
            ">= 0.5",
        )
    )
    for what, figures in (("into the app", into), ("out of the app", out_of)):
        d, k = med(figures["direct"]), med(figures["kernel"])
        report.add(
            Row(
                f"TCP bulk {what}, {BULK_MB} MB, direct over the TAP",
                f"{d:.0f} MB/s",
                f"{k:.0f} MB/s kernel (loopback)",
                d / k,
                ">= 100 MB/s",
            )
        )
    (dm, dt), (km, kt) = per_conn["direct"], per_conn["kernel"]
    report.add(
        Row(
            "app memory per idle TCP connection (1,000 held)",
            f"{dm / 1024:.1f} KiB",
            f"{km / 1024:.1f} KiB kernel sockets (app side only)",
            dm / km if km > 0 else None,
        )
    )
    report.add(
        Row(
            f"{CONNECTIONS} concurrent connections held: time to open them",
            f"{dt:.2f} s",
            f"{kt:.2f} s kernel sockets",
            dt / kt,
        )
    )
    report.notes.append(
        f"direct: {direct.MTU}-byte MTU on the TAP (summon.targets.sandbox.tap's), the app on "
        f"{sys.executable}; kernel baseline: the same app on SocketStack inside the namespace, "
        "reached over loopback (the socket mode's own path, minus the port forward)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", choices=("http", "sink", "source", "hold"))
    parser.add_argument("--net", choices=("direct", "kernel"), default="direct")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.net)
        return 0
    from run import Report as RunReport  # type: ignore[import-not-found]

    report = RunReport()
    run(report, args.runs)
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
