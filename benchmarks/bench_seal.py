"""Syscalls allowed (derived vs static) and the start-time cost of sealing, examples/http.

    python3 benchmarks/run.py --only syscalls,seal

syscalls: the count of calls the sandbox allows whatever their arguments for examples/http
built in socket and in direct mode (each image's recorded list), beside the static list.
seal: cold start to the first HTTP response in the sandbox, the image as built (sealed once
it listens) beside the same app built with `seal = false`, interleaved in the same run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import HTTP_APP, Report, Row, first_response, free_port, ms

from summon.build.image import build
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec
from summon.targets.sandbox import seccomp


def _variant(store: Store, tmp: Path, ref: str, change: tuple[str, str]) -> Image:
    """examples/http with one manifest line changed, built into store."""
    app = tmp / ref.replace(":", "-")
    shutil.copytree(HTTP_APP, app)
    manifest = app / "pyproject.toml"
    old, new = change
    text = manifest.read_text()
    assert old in text, f"examples/http's manifest has no {old!r}"
    manifest.write_text(text.replace(old, new))
    return build(app, store, ref).image


def _allowed(image: Image) -> int:
    spec = RunSpec.for_image(image, name="count", state_dir=Path("/nonexistent"))
    if spec.syscalls is None:
        raise SystemExit(f"{image.ref} carries no recorded syscall list (runc and root needed)")
    return len(seccomp.unconditional(spec.syscalls, spec.network))


def bench_syscalls(report: Report, store: Store, sealed: Image) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        direct = _variant(
            store, Path(tmp), "bench-http:direct", ('network = "socket"', 'network = "direct"')
        )
        socket_n, direct_n = _allowed(sealed), _allowed(direct)
    static_n = len(seccomp.allowed_syscalls("socket"))
    report.add(
        Row(
            "syscalls allowed, examples/http, socket mode (recorded at build)",
            str(socket_n),
            f"{static_n} static list",
            socket_n / static_n,
            "<= 70",
        )
    )
    report.add(
        Row(
            "  the same, direct mode",
            str(direct_n),
            f"{static_n} static list",
            direct_n / static_n,
        )
    )


def _cold_start(image: Image, state: Path, name: str, console: Path | None = None) -> float:
    """Seconds to the first HTTP response; console: where the app's output goes (debug on)."""
    from summon import targets

    port = free_port()
    spec = RunSpec.for_image(image, name=name, state_dir=state, ports=(PortForward(port, 80),))
    out = open(console, "wb") if console else None
    if out is not None:
        spec = dataclasses.replace(
            spec, stdout=out.fileno(), env={**spec.env, "SUMMON_LOG_LEVEL": "debug"}
        )
    t0 = time.monotonic()
    inst = targets.get("sandbox").start(spec)
    try:
        first_response(port, t0 + 20)
        return time.monotonic() - t0
    finally:
        inst.stop(5)
        if out is not None:
            out.close()


def _seal_ms(console: Path) -> float:
    """The runtime's own measure of closing the seal: "summon: sealed at ... in X ms"."""
    for line in console.read_text().splitlines():
        if line.startswith("summon: sealed at ") and line.endswith(" ms"):
            return float(line.rsplit(" ", 2)[1])
    raise SystemExit(f"no seal line in the sealed run's console:\n{console.read_text()}")


def bench_seal(report: Report, store: Store, sealed: Image, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        unsealed = _variant(
            store,
            Path(tmp),
            "bench-http:unsealed",
            ("[tool.summon]\n", "[tool.summon]\nseal = false\n"),
        )
        sealed.rootfs()
        unsealed.rootfs()
        on: list[float] = []
        off: list[float] = []
        inside: list[float] = []
        for i in range(runs + 1):
            # Interleaved; run 0 warms the page cache and is not counted.
            state = Path(tmp) / f"s{i}"
            state.mkdir()
            on.append(_cold_start(sealed, state / "on", f"bench-seal-{os.getpid()}-{i}"))
            off.append(_cold_start(unsealed, state / "off", f"bench-noseal-{os.getpid()}-{i}"))
            console = state / "console"
            _cold_start(sealed, state / "dbg", f"bench-sealdbg-{os.getpid()}-{i}", console)
            inside.append(_seal_ms(console))
    sealed_s, unsealed_s = statistics.median(on[1:]), statistics.median(off[1:])
    seal_ms = statistics.median(inside[1:])
    report.add(
        Row(
            f"cold start to first HTTP response, sandbox, sealed (median of {runs})",
            ms(sealed_s),
            ms(unsealed_s) + " seal = false",
            sealed_s / unsealed_s,
        )
    )
    report.add(
        Row(
            "  closing the seal, as the runtime times it (median)",
            f"{seal_ms:.1f} ms",
            ms(unsealed_s) + " start, seal = false",
            seal_ms / 1000 / unsealed_s,
        )
    )
    report.notes.append(
        f"the sealed start differs by {1000 * (sealed_s - unsealed_s):+.1f} ms from the unsealed "
        f"one; closing the seal itself (the shared objects loaded ahead, ctypes, the seccomp "
        f"filter, the hook) takes {seal_ms:.1f} ms, and the probe's warm-up runs before it"
    )
