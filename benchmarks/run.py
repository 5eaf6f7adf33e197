"""summon's benchmarks: every figure beside its baseline, measured in the same run, as a ratio.

    python3 benchmarks/run.py [--runs N] [--only size,start,memory]

Needs root and runc (the sandbox figures), like `summon run --target sandbox`. Images are
built into a throw-away store; nothing here is a test, and nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from common import HTTP_APP, ROOT, Report, Row, first_response, free_port, mb, ms

from summon.build.image import build
from summon.build.python import probe_interpreter
from summon.build.vendor import vendor
from summon.manifest import DEFAULT_PYTHON
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec

# --- the images ------------------------------------------------------------------------------


def bench_size(report: Report, store: Store) -> tuple[Image, Image]:
    print("building examples/http (traced closure) and a generic image...", file=sys.stderr)
    pruned = build(HTTP_APP, store, "bench-http:pruned")
    generic = build(HTTP_APP, store, "bench-http:generic", whole_stdlib=True)
    report.add(
        Row(
            "image size, examples/http rootfs (gzip)",
            mb(pruned.layer_size),
            mb(generic.layer_size) + " generic",
            pruned.layer_size / generic.layer_size,
            "<= 6 MB and <= 0.20",
        )
    )
    pruned_raw = sum(pruned.sizes.values())
    generic_raw = sum(generic.sizes.values())
    report.add(
        Row(
            "image size, unpacked",
            mb(pruned_raw),
            mb(generic_raw) + " generic",
            pruned_raw / generic_raw,
        )
    )
    fixed = pruned.sizes["interpreter"] + pruned.sizes["libraries"]
    report.notes.append(
        f"the interpreter and its libraries are {mb(fixed)} of the {mb(pruned_raw)} unpacked "
        "in both images; the generic image is the same interpreter with the whole stdlib "
        "(sourceless .pyc, as summon lays it out), every extension module and their libraries"
    )
    return pruned.image, generic.image


# --- cold start ------------------------------------------------------------------------------


@contextlib.contextmanager
def bare_root(image: Image) -> Iterator[tuple[Path, dict[str, str]]]:
    """The http app as a developer runs it: host python3.11, sources, site enabled."""
    interp = probe_interpreter(DEFAULT_PYTHON)
    with tempfile.TemporaryDirectory(prefix="summon-bare-") as tmp:
        root = Path(tmp)
        (root / "etc" / "summon").mkdir(parents=True)
        app = image.app_config()
        (root / "etc" / "summon" / "app.json").write_text(json.dumps(app))
        (root / "app").symlink_to(HTTP_APP)
        (root / "data").mkdir()
        for name in app["data"]:
            (root / "data" / name).symlink_to(HTTP_APP / name)
        site = root / "usr" / "lib" / "summon" / "site"
        site.parent.mkdir(parents=True)
        vendor(["h11==0.16.0"] if not _requirements() else _requirements(), interp, site)
        env = {"PATH": "/usr/bin:/bin", "SUMMON_ROOT": str(root), "SUMMON_BIND": "127.0.0.1"}
        yield root, env


def _requirements() -> list[str]:
    from summon import manifest

    return list(manifest.load(HTTP_APP).requirements)


def bare_start(root: Path, env: dict[str, str]) -> tuple[float, int, subprocess.Popen[bytes]]:
    port = free_port()
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
        "from summon.runtime.init import main; sys.exit(main())"
    )
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [DEFAULT_PYTHON, "-c", code],
        env={**env, "SUMMON_PORTS": f"80/tcp={port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first_response(port, t0 + 20)
    return time.monotonic() - t0, proc.pid, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sandbox_spec(image: Image, state: Path, port: int, name: str) -> RunSpec:
    return RunSpec.for_image(image, name=name, state_dir=state, ports=(PortForward(port, 80),))


def timed_start(make_spec: Callable[[], RunSpec], port: int) -> float:
    """Seconds from making the spec (a prepare, for an image) to the first HTTP response."""
    from summon import targets

    t0 = time.monotonic()
    inst = targets.get("sandbox").start(make_spec())
    try:
        first_response(port, t0 + 20)
        return time.monotonic() - t0
    finally:
        inst.stop(5)


def bench_start(report: Report, image: Image, runs: int) -> None:
    from summon import targets
    from summon.store import rootfs_artifact

    sandbox = targets.get("sandbox")
    folder = image.rootfs()  # the unpacked folder: the root before the verified run path
    erofs = image.rootfs_artifact().erofs
    times: dict[str, list[float]] = {k: [] for k in ("bare", "verified", "first", "folder", "cli")}
    with bare_root(image) as (root, env), tempfile.TemporaryDirectory() as state_tmp:
        for i in range(runs + 1):
            # Interleaved, so that noise from the shared machine hits all alike. Run 0 warms
            # up (the launcher's own lazy imports, the page cache) and is not counted.
            elapsed, _pid, proc = bare_start(root, env)
            times["bare"].append(elapsed)
            stop(proc)

            def spec(name: str, port: int, img: Image) -> RunSpec:
                state = Path(state_tmp) / name
                state.mkdir()
                return sandbox_spec(img, state, port, f"bench-{os.getpid()}-{name}")

            def verified(name: str, port: int) -> Callable[[], RunSpec]:
                # As `summon run` does: prepare (it checks the mount, or makes it), the spec.
                return lambda: spec(name, port, sandbox.prepare(image, lambda step: None))

            # The verified root as every start after the first finds it: mounted already
            # (prepare checks the mount and the blobs' inodes, start checks them again).
            port = free_port()
            times["verified"].append(timed_start(verified(f"v{i}", port), port))
            # The first start after a build: the erofs blob hashed, a loop device, a mount.
            rootfs_artifact.release_mounts({erofs.digest})
            port = free_port()
            times["first"].append(timed_start(verified(f"f{i}", port), port))
            # The root as before: the unpacked folder (bound read-only for the container).
            port = free_port()
            plain = dataclasses.replace(spec(f"p{i}", port, image), rootfs=folder, image_digest="")
            times["folder"].append(timed_start(lambda spec=plain: spec, port))

            port = free_port()
            t0 = time.monotonic()
            cli = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "summon.cli.main",
                    "run",
                    image.ref,
                    "--target",
                    "sandbox",
                    "-p",
                    f"{port}:80",
                    "--rm",
                ],
                env={**os.environ, "SUMMON_STORE": str(image.store.root)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            first_response(port, t0 + 20)
            times["cli"].append(time.monotonic() - t0)
            stop(cli)

    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    bare = median["bare"]
    report.add(
        Row(
            f"cold start to first HTTP response, sandbox (median of {runs})",
            ms(median["verified"]),
            ms(bare) + " bare python3.11",
            median["verified"] / bare,
            "<= 1.5",
        )
    )
    report.add(
        Row(
            "  verified root (mount reused) vs the unpacked folder, sandbox",
            ms(median["verified"]),
            ms(median["folder"]) + " folder",
            median["verified"] / median["folder"],
        )
    )
    report.add(
        Row(
            "  verified root, first start after a build (hash, loop, mount) vs the folder",
            ms(median["first"]),
            ms(median["folder"]) + " folder",
            median["first"] / median["folder"],
        )
    )
    report.add(
        Row(
            "  the same through `summon run` (its own start included)",
            ms(median["cli"]),
            ms(bare) + " bare python3.11",
            median["cli"] / bare,
        )
    )


# --- memory ----------------------------------------------------------------------------------


def rss_anon(pid: int) -> int:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return sum(int(fields.get(k, "0 kB").split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))


def bench_memory(report: Report, image: Image) -> None:
    from summon import targets

    with bare_root(image) as (root, env), tempfile.TemporaryDirectory() as state:
        _t, pid, proc = bare_start(root, env)
        time.sleep(0.3)
        bare = rss_anon(pid)
        stop(proc)
        port = free_port()
        inst = targets.get("sandbox").start(
            sandbox_spec(image, Path(state), port, f"bench-mem-{os.getpid()}")
        )
        try:
            first_response(port, time.monotonic() + 20)
            time.sleep(0.3)
            sandboxed = inst.stats().memory_bytes
            inside = rss_anon(inst.pid)
        finally:
            inst.stop(5)
    report.add(
        Row(
            "resident memory (anon), sandboxed http example, cgroup",
            mb(sandboxed),
            mb(bare) + " bare python3.11",
            sandboxed / bare,
        )
    )
    report.add(
        Row(
            "  the same, the app process alone",
            mb(inside),
            mb(bare) + " bare python3.11",
            inside / bare,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="repetitions of each timed figure")
    parser.add_argument(
        "--only",
        default="size,start,memory,syscalls,seal,direct,qemu,gateway,browser,perf",
        help="which figures, comma-separated: size, start, memory, syscalls (allowed, derived "
        "vs static), seal (start-time cost of sealing), direct (summon.net vs kernel "
        "sockets), qemu (kernels and VM boots; builds kernels the first time), gateway, "
        "browser (headless Chromium; needs chromium and node), perf (issue 12: throughput, "
        "summon run, hand-off, frozen, gateway memory), density (minutes: 200 sandboxed "
        "instances each way; not in the default)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    report = Report()
    with tempfile.TemporaryDirectory(prefix="summon-bench-store-") as tmp:
        os.environ["SUMMON_STORE"] = tmp
        store = Store(Path(tmp))
        pruned, _generic = (
            bench_size(report, store)
            if "size" in only
            else (build(HTTP_APP, store, "bench-http:pruned").image, None)
        )
        if "start" in only:
            bench_start(report, pruned, args.runs)
        if "memory" in only:
            bench_memory(report, pruned)
        if "syscalls" in only or "seal" in only:
            import bench_seal

            if "syscalls" in only:
                bench_seal.bench_syscalls(report, store, pruned)
            if "seal" in only:
                bench_seal.bench_seal(report, store, pruned, args.runs)
        if "direct" in only:
            import bench_direct

            bench_direct.run(report)
        if "qemu" in only:
            import bench_qemu

            bench_qemu.run(report)
        if "gateway" in only:
            import bench_gateway

            bench_gateway.run(report, pruned, args.runs)
        if "browser" in only:
            import bench_browser

            bench_browser.run(report, pruned)
        if "perf" in only:
            import bench_perf

            bench_perf.run(report, pruned, args.runs)
        if "density" in only:
            import bench_density

            bench_density.run(report, pruned)
        for path in (pruned.rootfs(),):
            shutil.rmtree(path, ignore_errors=True)
        from summon.store import rootfs_artifact

        # The store goes: its root filesystem's verified mount (if a figure made it) too.
        rootfs_artifact.release_mounts({pruned.rootfs_artifact().erofs.digest})
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
