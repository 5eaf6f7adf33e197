"""Density: how many idle sandboxed examples/http instances this machine holds, all answering.

Two ways of holding them, each up to --count instances (default 200), within --minutes:
- through the gateway: --count services of the same image, each booted by a first request
  (its connection handed over by fd), then all asked again;
- through `summon run -d`: --count detached instances, each with a port of its own.

For each: the N reached before any failed (or the bound), memory per instance (what the
host's MemAvailable lost, divided by N: the app, runc, and for `run -d` the monitor, init
and their page tables, all told; and the apps' own cgroup figure), and whether every one
still answered at the end. The gateway's own resident memory at rest (all services down)
is measured first, beside the same interpreter idle.

Everything started is stopped at the end, whatever happened: the gateway with SIGTERM (it
stops its instances), the detached instances with `summon rm -f`, then any container left
under the benchmark's own runc root is deleted.

    python3 benchmarks/bench_density.py [--count N] [--minutes M]   (root and runc)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import GatewayProcess
from common import HTTP_APP, Report, Row, compile_sources, free_port, mb

from summon.build.image import build
from summon.store import Store
from summon.store.image import Image

RESERVE = 2 * 1024**3  # stop before the host has less than this available
PAGE = b"hello from a unikernel"


def available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def answers(host: str, port: int, timeout: float = 20) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("GET", "/")
        response = conn.getresponse()
        ok = response.status == 200 and PAGE in response.read()
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def summon_env(tmp: Path, image: Image) -> Iterator[dict[str, str]]:
    """The benchmark's own state folder (its runc root, instances, logs); cleaned up after."""
    env = {**os.environ, "SUMMON_STORE": str(image.store.root), "XDG_STATE_HOME": str(tmp)}
    try:
        yield env
    finally:
        root = tmp / "summon" / "runc"
        if root.is_dir():
            listed = subprocess.run(
                ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True
            ).stdout.split()
            for container in listed:  # what a failure left: nothing should be
                subprocess.run(["runc", "--root", str(root), "delete", "--force", container],
                               capture_output=True)  # fmt: skip


def through_gateway(report: Report, image: Image, count: int, deadline: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, summon_env(Path(tmp), image):
        gw = GatewayProcess(image, Path(tmp), count, "3600s")
        idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            time.sleep(1.0)
            at_rest, interpreter = rss(gw.proc.pid), rss(idle.pid)
            idle.kill()
            idle.wait()
            status = gw.status()
            before = available()
            reached, why = 0, f"the bound of {count}"
            for i in range(count):
                if time.monotonic() > deadline:
                    why = "the time bound"
                    break
                if available() < RESERVE:
                    why = f"less than {mb(RESERVE)} available"
                    break
                if not answers(status[f"web{i}"]["address"], 80):
                    why = f"web{i} did not answer: {gw.status()[f'web{i}'].get('error')}"
                    break
                reached += 1
                if reached % 25 == 0:
                    print(f"  gateway: {reached} up", file=sys.stderr)
            time.sleep(2.0)  # settle: the last boots' start-up garbage, page cache
            used = before - available()
            status = gw.status()
            still = sum(answers(status[f"web{i}"]["address"], 80) for i in range(reached))
            cgroup = sum(status[f"web{i}"]["memory_bytes"] or 0 for i in range(reached))
            loaded = rss(gw.proc.pid)
        finally:
            if idle.poll() is None:
                idle.kill()
                idle.wait()
            gw.close(timeout=max(30.0, reached * 1.0))  # it stops every instance first
    per = used / reached if reached else 0.0
    report.add(Row(f"instances held through the gateway (stopped at {why})", str(reached),
                   str(count) + " asked", reached / count, ">= 200"))  # fmt: skip
    report.add(Row("  of which answering again at the end", str(still), str(reached),
                   still / reached if reached else None))  # fmt: skip
    report.add(Row("  host memory per instance (MemAvailable lost / N)", mb(per),
                   mb(cgroup / reached if reached else 0) + " the app's cgroup", None))  # fmt: skip
    report.add(Row("gateway resident memory at rest (all services down)", mb(at_rest),
                   mb(interpreter) + " the same python, idle", at_rest / interpreter,
                   "<= 20 MB"))  # fmt: skip
    report.notes.append(f"density: the gateway held {mb(loaded)} resident with {reached} up")


def through_run_d(report: Report, image: Image, count: int, deadline: float) -> None:
    summon = [sys.executable, "-m", "summon.cli.main"]
    with tempfile.TemporaryDirectory() as tmp, summon_env(Path(tmp), image) as env:
        names: list[str] = []
        ports: list[int] = []
        try:
            before = available()
            reached, why = 0, f"the bound of {count}"
            for i in range(count):
                if time.monotonic() > deadline:
                    why = "the time bound"
                    break
                if available() < RESERVE:
                    why = f"less than {mb(RESERVE)} available"
                    break
                port, name = free_port(), f"dense{i}"
                started = subprocess.run(
                    [*summon, "run", "-d", "--name", name, image.ref, "-p", f"{port}:80"],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if started.returncode != 0:
                    why = f"run -d failed: {started.stderr.strip()[-200:]}"
                    break
                names.append(name)
                ports.append(port)
                if not answers("127.0.0.1", port):
                    why = f"{name} did not answer"
                    break
                reached += 1
                if reached % 25 == 0:
                    print(f"  run -d: {reached} up", file=sys.stderr)
            time.sleep(2.0)
            used = before - available()
            still = sum(answers("127.0.0.1", p) for p in ports[:reached])
            stats = subprocess.run(
                [*summon, "stats", "--no-stream", "--json", *names[:reached]],
                env=env, capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            cgroup = sum(r.get("memory_bytes") or 0 for r in json.loads(stats or "[]"))
        finally:
            for name in names:
                subprocess.run([*summon, "rm", "-f", name], env=env, capture_output=True)
    per = used / reached if reached else 0.0
    report.add(Row(f"instances held through `summon run -d` (stopped at {why})", str(reached),
                   str(count) + " asked", reached / count, ">= 200"))  # fmt: skip
    report.add(Row("  of which answering again at the end", str(still), str(reached),
                   still / reached if reached else None))  # fmt: skip
    report.add(Row("  host memory per instance (MemAvailable lost / N)", mb(per),
                   mb(cgroup / reached if reached else 0) + " the app's cgroup", None))  # fmt: skip


def run(report: Report, image: Image, count: int = 200, minutes: float = 15.0) -> None:
    """Both ways, each bounded by count and minutes (run.py's `--only density`)."""
    if os.geteuid() != 0 or shutil.which("runc") is None:
        report.notes.append("density figures skipped: they need root and runc")
        return
    image.rootfs()
    through_gateway(report, image, count, time.monotonic() + minutes * 60)
    through_run_d(report, image, count, time.monotonic() + minutes * 60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="instances to try for, each way")
    parser.add_argument("--minutes", type=float, default=15.0, help="time bound, each way")
    parser.add_argument("--only", default="gateway,run", help="gateway, run (run -d)")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("runc") is None:
        print("bench_density needs root and runc", file=sys.stderr)
        return 2
    report = Report()
    signal.signal(signal.SIGTERM, _interrupted)
    compile_sources()  # the gateway's memory is an installed copy's, not a compiling one's
    with tempfile.TemporaryDirectory(prefix="summon-bench-store-") as tmp:
        os.environ["SUMMON_STORE"] = tmp
        image = build(HTTP_APP, Store(Path(tmp)), "bench-http:density").image
        image.rootfs()
        if "gateway" in args.only:
            through_gateway(report, image, args.count, time.monotonic() + args.minutes * 60)
        if "run" in args.only:
            through_run_d(report, image, args.count, time.monotonic() + args.minutes * 60)
    report.notes.append(f"this host: {os.cpu_count()} CPUs, {mb(available())} available now")
    print()
    report.print()
    return 0


def _interrupted(signum: int, frame: object) -> None:
    """A SIGTERM ends the benchmark through its finally blocks (clean-up), as Ctrl-C does."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
