"""Issue 12's figures, each beside its baseline from the same run (see run.py).

- requests/s of examples/http and of an asyncio (ASGI) app in the sandbox, whose TCP
  listener is handed to the app (LISTEN_FDS), vs the same image on the unix target
  (`ab -k -c 16` and `ab -c 16` without keep-alive);
- `summon run` (the installed console script, not a shell shim) to the first response, and
  the sandbox target's own cold start, vs the same app started bare by host python3.11;
- a warm request through the gateway (the app accepts on the gateway's listener, shared
  with it while up) vs the same request to the same sandboxed image on a port of its own
  (connect to first byte, a new connection each);
- the first request to a frozen sandboxed service (thaw included) vs a warm one, and vs
  a bare start;
- the gateway's resident memory at rest vs the same interpreter doing nothing.

    python3 benchmarks/bench_perf.py [--runs N]    (root, runc and ab: apt-get install
                                                    apache2-utils)

run(report, image, runs) adds rows to run.py's Report. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import GatewayProcess
from common import ROOT, compile_sources, free_port, mb, ms
from run import (
    HTTP_APP,
    Report,
    Row,
    bare_root,
    bare_start,
    build,
    first_response,
    stop,
)

from summon import targets
from summon.manifest import DEFAULT_PYTHON
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec

ASGI_APP = ROOT / "tests" / "integration" / "apps" / "asgi_app"
AB_REQUESTS = 10000
AB_CONCURRENCY = 16
# What `summon run` imports before it can start a sandbox instance.
RUN_IMPORTS = (
    "import summon.cli.main, summon.cli.run, summon.instances.lifecycle, "
    "summon.instances.tree, summon.targets.sandbox.target"
)


def console_script() -> str:
    """The installed `summon` entry point itself (pip's script), not a shim in front of it."""
    script = Path(sysconfig.get_path("scripts")) / "summon"
    if not script.exists():
        raise SystemExit(f"no console script at {script}: pip install -e . first")
    return str(script)


def ab(port: int, path: str, keep_alive: bool, requests: int = AB_REQUESTS) -> float:
    """Requests per second `ab` measures against 127.0.0.1:port."""
    argv = ["ab", "-q", "-n", str(requests), "-c", str(AB_CONCURRENCY)]
    if keep_alive:
        argv.append("-k")
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=False
    )
    m = re.search(r"Requests per second:\s+([\d.]+)", out.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", out.stdout)
    if m is None or (failed and int(failed.group(1))):
        raise RuntimeError(f"ab failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    return float(m.group(1))


def started(target: str, image: Image, state: Path, port: int, guest: int) -> object:
    """An instance of image on target, started as `summon run` starts one: the target
    prepares the image (the sandbox: its verified root, mounted or found mounted), then the
    spec is made from it and started."""
    chosen = targets.get(target)
    image = chosen.prepare(image, lambda step: None)
    spec = RunSpec.for_image(
        image,
        name=f"bench-{target}-{os.getpid()}-{port}",
        state_dir=state,
        ports=(PortForward(port, guest),),
    )
    spec.stdout = os.open(os.devnull, os.O_WRONLY)
    try:
        return chosen.start(spec)
    finally:
        os.close(spec.stdout)


def bench_throughput(
    report: Report, image: Image, label: str, guest: int, path: str, rounds: int = 3
) -> None:
    """Both instances up at once, their ab runs interleaved (the machine's load changes
    from one minute to the next): the median of rounds each."""
    results: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ports = {target: free_port() for target in ("unix", "sandbox")}
        instances = [
            started(target, image, Path(tmp) / target, port, guest)
            for target, port in ports.items()
        ]
        try:
            for port in ports.values():
                first_response_at(port, path, time.monotonic() + 30)
                ab(port, path, True, 2000)  # warm up
            for keep_alive in (True, False):
                for _ in range(rounds):
                    for target, port in ports.items():
                        rate = ab(port, path, keep_alive)
                        results.setdefault((target, keep_alive), []).append(rate)
        finally:
            for inst in instances:
                inst.stop(5)  # type: ignore[attr-defined]
    for keep_alive in (True, False):
        sandbox = statistics.median(results[("sandbox", keep_alive)])
        unix = statistics.median(results[("unix", keep_alive)])
        how = "ab -k -c 16" if keep_alive else "ab -c 16, a connection each"
        report.add(
            Row(
                f"requests/s, {label}, sandbox (listener handed over), {how}",
                f"{sandbox:.0f}/s",
                f"{unix:.0f}/s unix target",
                sandbox / unix,
                ">= 0.9",
            )
        )


def first_response_at(port: int, path: str, deadline: float) -> None:
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer on port {port}")
        time.sleep(0.002)


def bench_start(report: Report, image: Image, runs: int) -> None:
    """summon run and the sandbox's own start, each vs a bare start, interleaved."""
    compile_sources()
    script = console_script()
    env = {**os.environ, "SUMMON_STORE": str(image.store.root)}
    bare: list[float] = []
    sandbox: list[float] = []
    cli: list[float] = []
    with bare_root(image) as (root, bare_env), tempfile.TemporaryDirectory() as tmp:
        for i in range(runs + 1):  # run 0 warms the page cache up and is not counted
            elapsed, _pid, proc = bare_start(root, bare_env)
            bare.append(elapsed)
            stop(proc)

            port = free_port()
            t0 = time.monotonic()
            inst = started("sandbox", image, Path(tmp) / f"s{i}", port, 80)
            try:
                first_response(port, t0 + 20)
                sandbox.append(time.monotonic() - t0)
            finally:
                inst.stop(5)  # type: ignore[attr-defined]

            port = free_port()
            argv = [script, "run", image.ref, "--target", "sandbox", "-p", f"{port}:80", "--rm"]
            t0 = time.monotonic()
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            first_response(port, t0 + 20)
            cli.append(time.monotonic() - t0)
            stop(proc)
    b = statistics.median(bare[1:])
    s = statistics.median(sandbox[1:])
    c = statistics.median(cli[1:])
    report.add(
        Row(
            f"`summon run` (console script) to first response (median of {runs})",
            ms(c),
            ms(b) + " bare python3.11",
            c / b,
            "<= 2",
        )
    )
    report.add(
        Row(
            "sandbox cold start to first response (target.start)",
            ms(s),
            ms(b) + " bare python3.11",
            s / b,
            "<= 1.5",
        )
    )
    # What neither side controls: each interpreter's own start, site.py and its .pth files
    # included (the console script's runs every .pth of the environment summon is in).
    shebang = Path(script).read_text().splitlines()[0].removeprefix("#!").split()
    cli_python = statistics.median(_bare_interpreter(shebang) for _ in range(runs))
    image_python = statistics.median(_bare_interpreter([DEFAULT_PYTHON]) for _ in range(runs))
    report.notes.append(
        f"interpreters alone (`-c pass`): the console script's {shebang[0]} {ms(cli_python)}, "
        f"the bare start's {DEFAULT_PYTHON} {ms(image_python)}"
    )
    # The least any `summon run` could reach here: its interpreter's start, then the
    # sandbox's own start, with nothing of summon's in between. The interpreter alone
    # undercounts: the modules a .pth file of the environment imports (pathlib, re, ...)
    # are ones summon would import anyway, so the imports `summon run` cannot do without
    # (the CLI, the instance machinery, the sandbox target) are timed too.
    report.notes.append(
        f"floor of `summon run` (console interpreter alone + sandbox cold start): "
        f"{ms(cli_python + s)} = {(cli_python + s) / b:.2f}x bare"
    )
    imports = statistics.median(
        _bare_interpreter([*shebang, "-c", RUN_IMPORTS]) for _ in range(runs)
    )
    report.notes.append(
        f"the console interpreter importing what `summon run` uses ({RUN_IMPORTS}) took "
        f"{ms(imports)}; with the sandbox cold start that is {ms(imports + s)} = "
        f"{(imports + s) / b:.2f}x bare before summon does any work of its own"
    )
    # runc's own share of that start: a container doing next to nothing vs the same
    # interpreter doing it bare. Nothing summon starts could be quicker than runc's share
    # plus the bare start plus the console interpreter.
    with tempfile.TemporaryDirectory() as tmp:
        mounted = targets.get("sandbox").prepare(image, lambda step: None).root
        assert mounted is not None
        contained = _runc_alone(mounted, Path(tmp), runs)
    alone = statistics.median(_bare_interpreter([DEFAULT_PYTHON, "-S", "-E"]) for _ in range(runs))
    least = cli_python + (contained - alone) + b
    report.notes.append(
        f"runc run of `python3.11 -S -E -c pass` in the image's root: {ms(contained)} vs "
        f"{ms(alone)} bare, so runc's own share of every start is {ms(contained - alone)}; "
        f"console interpreter + runc's share + bare start = {ms(least)} = {least / b:.2f}x bare"
    )
    # The host's share of every start, and a setting of the host's rather than summon's.
    from summon.targets.sandbox import cgroups

    if (move := cgroups.attach_seconds()) is not None:
        report.notes.append(
            f"this host moves a process into a cgroup in {move * 1000:.1f} ms (runc does it "
            "once a start; a few ms means an RCU grace period: cgroups without favordynmods)"
        )


def _bare_interpreter(argv: list[str]) -> float:
    """Seconds for argv (-c pass unless it has a -c): an interpreter's start and exit,
    site.py included."""
    t0 = time.monotonic()
    subprocess.run(argv if "-c" in argv else [*argv, "-c", "pass"], check=True)
    return time.monotonic() - t0


def _runc_alone(root: Path, tmp: Path, runs: int) -> float:
    """Median seconds of `runc run` for a container of the image's root that runs
    `python3.11 -S -E -c pass`: namespaces and a cgroup as the sandbox's, no seccomp."""
    bundle = tmp / "bundle"
    bundle.mkdir()
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "args": [DEFAULT_PYTHON, "-S", "-E", "-c", "pass"],
            "cwd": "/",
            "env": ["PATH=/usr/bin:/bin"],
            "user": {"uid": 0, "gid": 0},
        },
        "root": {"path": str(root), "readonly": True},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]},
        ],
        "linux": {
            "namespaces": [
                {"type": t} for t in ("pid", "mount", "ipc", "uts", "network", "cgroup")
            ],
            "cgroupsPath": f"/summon-bench-runc-{os.getpid()}",
        },
    }
    (bundle / "config.json").write_text(json.dumps(config))
    times = []
    for i in range(runs + 1):  # the first warms the page cache and is not counted
        argv = ["runc", "--root", str(tmp / "state"), "run", "--bundle", str(bundle), f"b{i}"]
        t0 = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - t0)
    return statistics.median(times[1:])


def request_time(host: str, port: int) -> float:
    """Seconds from connect to the first byte of the response to GET / (new connection)."""
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        if not sock.recv(1):
            raise ConnectionError("closed without an answer")
        elapsed = time.perf_counter() - t0
        while sock.recv(65536):
            pass
    return elapsed


def bench_gateway(report: Report, image: Image, runs: int) -> None:
    """Warm through the gateway vs direct; first request after a freeze vs warm."""
    samples = 200
    with bare_root(image) as (root, bare_env), tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(image, Path(tmp), 1, "600s", freeze_after="1s")
        port = free_port()
        direct = started("sandbox", image, Path(tmp) / "direct", port, 80)
        try:
            address = gw.status()["web0"]["address"]
            first_response(port, time.monotonic() + 20)
            request_time(address, 80)  # boots it
            warm: list[float] = []
            plain: list[float] = []
            for _ in range(samples):  # interleaved, and within freeze_after of each other
                warm.append(request_time(address, 80))
                plain.append(request_time("127.0.0.1", port))
            thawed: list[float] = []
            warm_after: list[float] = []
            idle_first: list[float] = []
            bare: list[float] = []
            for _ in range(runs):
                quiet = time.monotonic()  # since the last request, to any instance
                gw.wait_state("web0", "frozen")
                idle = time.monotonic() - quiet
                thawed.append(request_time(address, 80))
                warm_after.append(statistics.median(request_time(address, 80) for _ in range(5)))
                # The same wait, asking the gateway's status meanwhile as wait_state does,
                # then the first request to an instance that stayed up: what a first request
                # after a quiet spell costs on this host, with no thaw in it.
                until = time.monotonic() + idle
                while time.monotonic() < until:
                    gw.status()
                    time.sleep(0.05)
                idle_first.append(request_time("127.0.0.1", port))
                elapsed, _pid, proc = bare_start(root, bare_env)
                bare.append(elapsed)
                stop(proc)
            thaws = gw.status()["web0"]["thaws"]
        finally:
            direct.stop(5)  # type: ignore[attr-defined]
            gw.close()
    w, d = statistics.median(warm), statistics.median(plain)
    report.add(
        Row(
            f"gateway warm request, connect to first byte, on the shared listener "
            f"(median of {samples})",
            f"{w * 1000:.2f} ms",
            f"{d * 1000:.2f} ms direct to the same sandboxed image",
            w / d,
            "<= 1.2",
        )
    )
    t, wa = statistics.median(thawed), statistics.median(warm_after)
    report.add(
        Row(
            f"first request to a frozen sandbox service, thaw included (median of {runs})",
            f"{t * 1000:.2f} ms",
            f"{wa * 1000:.2f} ms warm",
            t / wa,
            f"within 5 ms of warm: {'yes' if t - wa <= 0.005 else 'no'} ({(t - wa) * 1000:+.2f})",
        )
    )
    i = statistics.median(idle_first)
    report.add(
        Row(
            "  the same vs the first request to an instance left up as long (no thaw)",
            f"{t * 1000:.2f} ms",
            f"{i * 1000:.2f} ms up, idle as long",
            t / i,
            f"the thaw's own cost: {(t - i) * 1000:+.2f} ms",
        )
    )
    b = statistics.median(bare)
    report.add(
        Row(
            "  the same vs a bare start (a cold start from frozen)",
            f"{t * 1000:.2f} ms",
            ms(b) + " bare python3.11 start",
            t / b,
        )
    )
    report.notes.append(f"gateway: {thaws} thaws for {runs} requests to the frozen service")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def bench_gateway_memory(report: Report, image: Image, services: int = 5) -> None:
    """The gateway at rest (every service down) vs the interpreter it runs on, idle."""
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(image, Path(tmp), services, "600s")
        idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            time.sleep(1.0)
            at_rest, interpreter = rss(gw.proc.pid), rss(idle.pid)
        finally:
            idle.kill()
            idle.wait()
            gw.close()
    report.add(
        Row(
            f"gateway resident memory at rest ({services} services, all down)",
            mb(at_rest),
            mb(interpreter) + " the same python, idle",
            at_rest / interpreter,
            "<= 20 MB",
        )
    )
    report.notes.append(
        f"the gateway's own share at rest: {mb(at_rest - interpreter)} over its interpreter; "
        "this host's interpreter starts at "
        f"{mb(interpreter)} (site.py runs every .pth file in its site-packages)"
    )


def run(report: Report, image: Image, runs: int = 9) -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None or shutil.which("ab") is None:
        report.notes.append("issue 12 figures skipped: they need root, runc and ab")
        return
    print("issue 12: throughput, starts, gateway paths, memory...", file=sys.stderr)
    image.rootfs()
    bench_throughput(report, image, "examples/http", 80, "/")
    asgi = build(ASGI_APP, image.store, "bench-asgi:perf").image
    bench_throughput(report, asgi, "an ASGI app on the runtime's asyncio server", 8000, "/")
    bench_start(report, image, runs)
    bench_gateway(report, image, runs)
    bench_gateway_memory(report, image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--only", default="throughput,start,gateway,memory")
    args = parser.parse_args()
    only = set(args.only.split(","))
    report = Report()
    compile_sources()  # every figure is an installed copy's (its modules compiled once)
    with tempfile.TemporaryDirectory(prefix="summon-bench-store-") as tmp:
        os.environ["SUMMON_STORE"] = tmp
        store = Store(Path(tmp))
        image = build(HTTP_APP, store, "bench-http:perf").image
        image.rootfs()

        def throughput() -> None:
            bench_throughput(report, image, "examples/http", 80, "/")
            asgi = build(ASGI_APP, store, "bench-asgi:perf").image
            label = "an ASGI app on the runtime's asyncio server"
            bench_throughput(report, asgi, label, 8000, "/")

        steps: dict[str, Callable[[], None]] = {
            "throughput": throughput,
            "start": lambda: bench_start(report, image, args.runs),
            "gateway": lambda: bench_gateway(report, image, args.runs),
            "memory": lambda: bench_gateway_memory(report, image),
        }
        for name, step in steps.items():
            if name in only:
                step()
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
