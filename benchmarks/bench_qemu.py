"""The qemu target's figures, each beside its baseline from the same run (see run.py).

- kernel size: summon's kernel for examples/http against Debian's cloud kernel
  (linux-image-cloud-amd64, downloaded with apt-get into the cache, never installed);
- boot to first HTTP response of examples/http under the accelerator at hand: summon's
  kernel with the pruned image, against Debian's cloud kernel (its virtio drivers as modules
  in the initramfs, loaded by the runtime) with the generic image (`--whole-stdlib`);
- the smallest -m at which examples/http boots and serves, found by bisection;
- restore to first HTTP response from the snapshot of examples/http against a boot of the
  same guest (--no-snapshot) to first response, interleaved; the boot that saves the
  snapshot against a plain boot; the snapshot's size against the guest's memory.

run(report) adds rows to run.py's Report. Needs qemu-system-x86_64 and linux-source-6.1
(the first run builds the kernel, minutes); timings are medians of interleaved runs.
`python benchmarks/bench_qemu.py [RUNS] [snapshot]` prints them alone (snapshot: only the
snapshot rows, which need no Debian kernel).
"""

from __future__ import annotations

import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HTTP_APP, Report, Row, first_response, free_port, mb, ms

from summon import paths
from summon.build.boot import Extra, attach_boot_artifact, ensure_boot_artifact
from summon.build.image import build
from summon.errors import SummonError
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec
from summon.targets.qemu import QemuTarget
from summon.targets.qemu.kvm import choose_accel

DEBIAN_KERNEL = "linux-image-cloud-amd64"
# What the http example needs of Debian's modules, dependencies first (their `depends=`).
DEBIAN_MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/char/hw_random/virtio-rng.ko",
)
MiB = 1024 * 1024
# Guest RAM for the baseline: its kernel needs ~51 MB to decompress itself (init_size) and the
# generic image is ~39 MB of files in RAM; with less it dies "deadlocked on memory".
DEBIAN_MEMORY = 256 * MiB


# --- Debian's cloud kernel ---------------------------------------------------------------------


def debian_cloud_kernel() -> tuple[Path, Path, str]:
    """(vmlinuz, the modules' folder, package) of Debian's cloud kernel, fetched once."""
    folder = paths.cache_dir() / "bench" / "debian-cloud"
    done = folder / "package"
    if not done.is_file():
        depends = subprocess.run(
            ["apt-cache", "depends", DEBIAN_KERNEL], capture_output=True, text=True, check=True
        ).stdout
        package = next(
            line.split(":", 1)[1].strip()
            for line in depends.splitlines()
            if line.strip().startswith("Depends:") and "linux-image-" in line
        )
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        subprocess.run(
            ["apt-get", "download", "-q", package], cwd=folder, check=True, capture_output=True
        )
        deb = next(folder.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "root")], check=True)
        deb.unlink()
        done.write_text(package + "\n")
    package = done.read_text().strip()
    vmlinuz = next((folder / "root" / "boot").glob("vmlinuz-*"))
    modules = next((folder / "root" / "lib" / "modules").iterdir()) / "kernel"
    return vmlinuz, modules, package


def with_debian_kernel(image: Image, vmlinuz: Path, modules: Path, package: str) -> Image:
    """The image with a boot artifact holding Debian's kernel and the modules it needs."""
    extra: list[Extra] = [("lib/modules", stat.S_IFDIR | 0o755, b"", (0, 0))]
    paths_in_image = []
    for rel in DEBIAN_MODULES:
        name = Path(rel).name
        extra.append(
            (f"lib/modules/{name}", stat.S_IFREG | 0o644, (modules / rel).read_bytes(), (0, 0))
        )
        paths_in_image.append(f"/lib/modules/{name}")
    info = {"package": package, "size": vmlinuz.stat().st_size}
    # Debian's kernel has no virtio_mmio.device= parsing: it finds the devices through ACPI.
    return attach_boot_artifact(image, vmlinuz, info, extra, paths_in_image, acpi=True)


# --- booting -------------------------------------------------------------------------------------


def host_tsc_khz() -> int:
    """The host's TSC rate, which a guest under TCG reads through rdtsc."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 2_000_000


def boot_to_response(
    store: Store,
    image: Image,
    memory: int,
    state: Path,
    exact: bool = False,
    kernel_args: tuple[str, ...] = (),
    snapshot: bool = False,
    restored: list[bool] | None = None,
) -> float:
    """Seconds from asking for the VM to its first HTTP response; the VM is stopped after.

    memory is the app's (the VM gets the image's size on top), or the VM's if exact.
    snapshot: restore from a snapshot if one matches, else boot and save one (the default
    boots, as --no-snapshot does); restored gets whether it was restored appended.
    """
    port = free_port()
    spec = RunSpec.for_image(
        image,
        name=f"bench-{os.getpid()}-{time.monotonic_ns()}",
        state_dir=state,
        ports=(PortForward(port, 80),),
        memory=memory,
    )
    target = QemuTarget(
        store=store, output=_Discard(), notice=lambda line: None, boot_timeout=90,
        exact_memory=exact, extra_kernel_args=kernel_args, snapshot=snapshot,
    )  # fmt: skip
    t0 = time.monotonic()
    instance = target.start(spec)
    if restored is not None:
        restored.append(instance.restored)
    try:
        first_response(port, t0 + 90)
        return time.monotonic() - t0
    finally:
        instance.stop(grace=10)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def serves_with(store: Store, image: Image, memory: int, state: Path) -> bool:
    try:
        boot_to_response(store, image, memory, state, exact=True)
        return True
    except (SummonError, TimeoutError):
        return False


def smallest_memory(store: Store, image: Image, state: Path, high: int) -> tuple[int, int]:
    """The least -m (MiB, to 1 MiB) at which the image boots and serves; and probes made."""
    low, probes = 8, 0  # 8 MiB: below the kernel plus the initramfs, never enough
    hi = high // MiB
    probes += 1
    if not serves_with(store, image, hi * MiB, state):
        raise RuntimeError(f"examples/http does not serve even with {hi} MiB")
    while hi - low > 1:
        mid = (low + hi) // 2
        probes += 1
        if serves_with(store, image, mid * MiB, state):
            hi = mid
        else:
            low = mid
    return hi, probes


# --- the figures -------------------------------------------------------------------------------


def run(report: Report, runs: int = 5) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        report.notes.append("qemu figures skipped: apt-get install qemu-system-x86")
        return
    accel, _notice = choose_accel(None)
    with tempfile.TemporaryDirectory(prefix="summon-bench-qemu-") as tmp:
        store = Store(Path(tmp) / "store")
        print(
            "building examples/http for qemu (the first run builds its kernel)...", file=sys.stderr
        )
        pruned = build(HTTP_APP, store, "bench-qemu:pruned").image
        pruned, boot = ensure_boot_artifact(pruned)
        generic = build(HTTP_APP, store, "bench-qemu:generic", whole_stdlib=True).image
        print(f"fetching {DEBIAN_KERNEL} (apt-get download; not installed)...", file=sys.stderr)
        vmlinuz, modules, package = debian_cloud_kernel()
        generic = with_debian_kernel(generic, vmlinuz, modules, package)

        ours = int(boot.config["kernel"]["size"])
        theirs = vmlinuz.stat().st_size
        report.add(
            Row(
                "kernel size (bzImage), examples/http",
                mb(ours),
                mb(theirs) + f" {package}",
                ours / theirs,
                "<= 2 MB",
            )
        )

        memory = int(pruned.app_config().get("memory", 64 * MiB))
        # Under TCG, microvm has no PIT-calibratable TSC, HPET or PM timer: Debian's kernel
        # then hangs right after "Marking TSC unstable" unless told the TSC's rate. (summon's
        # kernel falls back to jiffies and goes on.)
        debian_args = () if accel == "kvm" else (f"tsc_early_khz={host_tsc_khz()}",)
        state = Path(tmp) / "state"
        state.mkdir()
        summon_times: list[float] = []
        debian_times: list[float] = []
        for i in range(runs + 1):
            # Interleaved, so the shared machine's noise hits both alike; run 0 warms up.
            summon_times.append(boot_to_response(store, pruned, memory, state))
            debian_times.append(
                boot_to_response(store, generic, DEBIAN_MEMORY, state, True, debian_args)
            )
            print(
                f"  boot run {i}: {ms(summon_times[-1])} vs {ms(debian_times[-1])}", file=sys.stderr
            )
        ours_t = statistics.median(summon_times[1:])
        theirs_t = statistics.median(debian_times[1:])
        report.add(
            Row(
                f"boot to first HTTP response, qemu {accel} (median of {runs})",
                ms(ours_t),
                ms(theirs_t) + " Debian cloud kernel + generic image",
                ours_t / theirs_t,
                "<= 0.6",
            )
        )

        least, probes = smallest_memory(store, pruned, state, max(memory, 128 * MiB))
        report.add(
            Row(
                "smallest guest memory (-m) at which examples/http boots and serves",
                f"{least} MiB",
                f"{memory // MiB} MiB manifest",
                least / (memory / MiB),
                "<= 48 MB",
            )
        )
        report.notes.append(
            f"qemu: {accel}; the Debian baseline boots {package} with acpi=on (it finds "
            "virtio-mmio devices only through ACPI) and tsc_early_khz under TCG (else it hangs "
            "on microvm), and loads virtio, virtio_mmio, virtio_net and virtio-rng from its "
            f"initramfs; the -m search took {probes} boots"
        )
        snapshot_rows(report, store, pruned, memory, state, runs)
        for img in (pruned, generic):
            shutil.rmtree(img.rootfs(), ignore_errors=True)


def snapshot_rows(
    report: Report, store: Store, image: Image, memory: int, state: Path, runs: int
) -> None:
    """Restore vs boot to first response, the saving boot vs a plain one, the snapshot's size.

    The snapshots go to a folder of their own ($SUMMON_SNAPSHOTS), emptied first.
    """
    from summon.targets.snapshots import CHUNK, SnapshotCache

    accel, _ = choose_accel(None)
    folder = state.parent / "snapshots"
    shutil.rmtree(folder, ignore_errors=True)
    saved_env = os.environ.get("SUMMON_SNAPSHOTS")
    os.environ["SUMMON_SNAPSHOTS"] = str(folder)
    try:
        kinds: list[bool] = []
        saving = [boot_to_response(store, image, memory, state, snapshot=True, restored=kinds)]
        plain: list[float] = []
        restores: list[float] = []
        for i in range(runs + 1):
            plain.append(boot_to_response(store, image, memory, state))
            restores.append(
                boot_to_response(store, image, memory, state, snapshot=True, restored=kinds)
            )
            print(f"  snapshot run {i}: boot {ms(plain[-1])} restore {ms(restores[-1])}",
                  file=sys.stderr)  # fmt: skip
        if kinds != [False] + [True] * (runs + 1):
            raise RuntimeError(f"expected one saving boot, then restores; got {kinds}")
        (key, snap), *_ = SnapshotCache(folder).entries()
        assert not isinstance(snap, Exception)
        boot_t = statistics.median(plain[1:])
        restore_t = statistics.median(restores[1:])
        report.add(
            Row(
                f"qemu restore to first response, examples/http, {accel} (median of {runs})",
                ms(restore_t),
                ms(boot_t) + " qemu boot to first response (--no-snapshot)",
                restore_t / boot_t,
                "<= 0.15",
            )
        )
        report.add(
            Row(
                "  the first boot, which saves the snapshot, to first response",
                ms(saving[0]),
                ms(boot_t) + " boot",
                saving[0] / boot_t,
            )
        )
        guest = int(snap.about.get("memory") or 0)
        report.add(Row("  snapshot size", mb(snap.size), mb(guest) + " guest memory",
                       snap.size / guest if guest else None))  # fmt: skip
        report.notes.append(
            f"qemu snapshot {key[:12]}: restores verify each {CHUNK >> 20} MiB chunk before QEMU "
            "reads it; "
            f"restore times: {', '.join(ms(t) for t in restores[1:])}; "
            f"boot times: {', '.join(ms(t) for t in plain[1:])}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if saved_env is None:
            os.environ.pop("SUMMON_SNAPSHOTS", None)
        else:
            os.environ["SUMMON_SNAPSHOTS"] = saved_env


def run_snapshots(report: Report, runs: int) -> None:
    """Only the snapshot rows (no Debian kernel): examples/http built into a temporary store."""
    with tempfile.TemporaryDirectory(prefix="summon-bench-qemu-") as tmp:
        store = Store(Path(tmp) / "store")
        image, _ = ensure_boot_artifact(build(HTTP_APP, store, "bench-qemu:pruned").image)
        memory = int(image.app_config().get("memory", 64 * MiB))
        state = Path(tmp) / "state"
        state.mkdir()
        snapshot_rows(report, store, image, memory, state, runs)
        shutil.rmtree(image.rootfs(), ignore_errors=True)


if __name__ == "__main__":
    from run import Report as RunReport  # type: ignore[import-not-found]

    r = RunReport()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    if "snapshot" in sys.argv[2:]:
        run_snapshots(r, count)
    else:
        run(r, count)
    print()
    r.print()
