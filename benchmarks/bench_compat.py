"""The compatibility corpus (tests/compat/apps) measured: for each app, its image size (gzip),
its cold start to the first response in the sandbox against the same app started bare, and
its requests/s through the sandbox against bare; examples/http's size and module count.

    python3 benchmarks/bench_compat.py [--runs 5] [--apps flask_jinja,stdlib_http] [--seconds 3]

Bare is how a developer runs the app: the same interpreter (/usr/bin/python3.11), site on,
the requirements installed by pip into a folder on PYTHONPATH, sources with __pycache__ made
by a first, uncounted run. An app served by summon's runtime runs bare under the same server
code (summon.runtime from this checkout's sources); an app with its own server is
`python3.11 app.py`. Sandbox cold start is measured from the instance's start (the target's
start(), as the monitor calls it) to the first 200 on GET /; `summon run` from the command's
own start is reported beside it. Requests/s: wrk -t2 -c16 with keep-alive on GET /, a few
seconds each. Needs root and runc, like the sandbox target. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import HTTP_APP, ROOT, Report, Row, first_response, free_port, mb, ms

sys.path.insert(0, str(ROOT / "tests" / "compat"))

from compat_apps import CorpusApp, corpus

from summon.build.image import BuildResult, build
from summon.build.python import probe_interpreter
from summon.build.vendor import vendor
from summon.manifest import DEFAULT_PYTHON
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec

APP_PORT = 8000


@contextlib.contextmanager
def bare_root(
    app: CorpusApp, image: Image, tmp: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """(argv with {port} to fill, env) that start the app bare."""
    root = tmp / f"bare-{app.name}"
    site = root / "usr" / "lib" / "summon" / "site"
    site.parent.mkdir(parents=True)
    requirements = list(app.requirements)
    if app.runtime_served and not any(r.lower().startswith("h11") for r in requirements):
        requirements.append("h11==0.16.0")  # what the build vendors for the runtime's server
    vendor(requirements, probe_interpreter(DEFAULT_PYTHON), site)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "PYTHONPATH": str(site)}
    if app.runtime_served:
        (root / "etc" / "summon").mkdir(parents=True)
        (root / "etc" / "summon" / "app.json").write_text(json.dumps(image.app_config()))
        (root / "app").symlink_to(app.folder)
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
            "from summon.runtime.init import main; sys.exit(main())"
        )
        argv = [DEFAULT_PYTHON, "-c", code]
        env.update({"SUMMON_ROOT": str(root), "SUMMON_BIND": "127.0.0.1",
                    "SUMMON_PORTS": f"{APP_PORT}/tcp={{port}}"})  # fmt: skip
    else:
        argv = [DEFAULT_PYTHON, str(app.folder / app.entry)]
        env["PORT"] = "{port}"
    yield argv, env
    shutil.rmtree(root, ignore_errors=True)


def start_bare(argv: list[str], env: dict[str, str]) -> tuple[float, int, subprocess.Popen[bytes]]:
    port = free_port()
    filled = {k: v.replace("{port}", str(port)) for k, v in env.items()}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=filled, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_response(port, t0 + 60)
    return time.monotonic() - t0, port, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk said no Requests/sec:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk got {errors.group(1)} error answers:\n{out}")
    return float(found.group(1))


class Figures:
    def __init__(self) -> None:
        self.bare: list[float] = []
        self.sandbox: list[float] = []
        self.cli: list[float] = []
        self.rps_bare = 0.0
        self.rps_sandbox = 0.0


def measure(app: CorpusApp, result: BuildResult, runs: int, seconds: int, tmp: Path) -> Figures:
    from summon import targets

    image = result.image
    image.rootfs()  # unpacked once, as a second run of an image finds it
    sandbox = targets.get("sandbox")
    figures = Figures()
    with bare_root(app, image, tmp) as (argv, env), open(os.devnull, "wb") as sink:
        for i in range(runs + 1):
            # Interleaved, so that noise on the shared machine hits all alike. Run 0 warms
            # up (bytecode caches, the page cache, summon's own lazy imports): not counted.
            elapsed, port, proc = start_bare(argv, env)
            if i == runs:
                figures.rps_bare = wrk(port, seconds)
            stop(proc)
            if i:
                figures.bare.append(elapsed)

            port = free_port()
            state = tmp / f"state-{app.name}-{i}"
            state.mkdir()
            spec = RunSpec.for_image(image, name=f"bench-{os.getpid()}-{i}", state_dir=state,
                                     ports=(PortForward(port, APP_PORT),))  # fmt: skip
            spec.stdout = sink.fileno()  # the app's console, as a detached run's log
            t0 = time.monotonic()
            inst = sandbox.start(spec)
            try:
                first_response(port, t0 + 60)
                if i:
                    figures.sandbox.append(time.monotonic() - t0)
                if i == runs:
                    figures.rps_sandbox = wrk(port, seconds)
            finally:
                inst.stop(10)

            port = free_port()
            t0 = time.monotonic()
            cli = subprocess.Popen(
                [sys.executable, "-m", "summon.cli.main", "run", image.ref, "--target",
                 "sandbox", "-p", f"{port}:{APP_PORT}", "--rm"],
                env={**os.environ, "SUMMON_STORE": str(image.store.root)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            first_response(port, t0 + 60)
            if i:
                figures.cli.append(time.monotonic() - t0)
            stop(cli)  # type: ignore[arg-type]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts of each kind per app")
    parser.add_argument("--seconds", type=int, default=3, help="wrk's duration per figure")
    parser.add_argument("--apps", default="", help="comma-separated app names (default: all)")
    args = parser.parse_args()
    apps = [a for a in corpus() if not args.apps or a.name in args.apps.split(",")]
    report = Report()
    ratios: list[float] = []
    cli_ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="summon-bench-compat-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["SUMMON_STORE"] = str(tmp / "store")
        store = Store(tmp / "store")
        http = build(HTTP_APP, store, "bench-http:compat")
        report.add(Row("examples/http image (gzip); modules",
                       f"{mb(http.layer_size)}; {http.modules} modules", "6 MB goal",
                       http.layer_size / 6e6, "<= 1"))  # fmt: skip
        for app in apps:
            print(f"{app.name}: building, then {args.runs} cold starts of each kind",
                  file=sys.stderr)  # fmt: skip
            result = build(app.folder, store, app.ref)
            f = measure(app, result, args.runs, args.seconds, tmp)
            bare = statistics.median(f.bare)
            boxed = statistics.median(f.sandbox)
            cli = statistics.median(f.cli)
            ratios.append(boxed / bare)
            cli_ratios.append(cli / bare)
            report.add(Row(f"{app.name}: image (gzip), {result.modules} modules",
                           mb(result.layer_size), "-", None))  # fmt: skip
            report.add(Row(f"{app.name}: cold start, sandbox (median of {args.runs})",
                           ms(boxed), ms(bare) + " bare", boxed / bare, "<= 1.5"))  # fmt: skip
            report.add(Row(f"{app.name}:   the same through `summon run`",
                           ms(cli), ms(bare) + " bare", cli / bare))  # fmt: skip
            report.add(Row(f"{app.name}: requests/s, sandbox (wrk -c16)",
                           f"{f.rps_sandbox:.0f}", f"{f.rps_bare:.0f} bare",
                           f.rps_sandbox / f.rps_bare))  # fmt: skip
            shutil.rmtree(result.image.rootfs(), ignore_errors=True)
        if ratios:
            report.add(Row(f"median cold start ratio over {len(ratios)} apps, sandbox / bare",
                           f"{statistics.median(ratios):.2f}x", "1.00x", statistics.median(ratios),
                           "<= 1.5"))  # fmt: skip
            report.add(Row("  the same through `summon run`",
                           f"{statistics.median(cli_ratios):.2f}x", "1.00x",
                           statistics.median(cli_ratios)))  # fmt: skip
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
