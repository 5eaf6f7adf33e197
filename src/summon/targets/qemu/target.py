"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

The image's boot artifact (summon.build.boot) gives the kernel, built for this image, and
the initramfs, which is the image's root filesystem; prepare() adds it to an image that has
none (building its kernel, once per configuration). start() appends the run's settings
(environment, volumes) to the initramfs as a second cpio archive (initrd.py), builds the
command lines (cmdline.py) and starts QEMU (instance.py). The kernel starts the runtime as
PID 1 (rdinit=), which sets the guest up (summon.runtime.vm) and runs the app.

Network: QEMU's user-mode network with restrict=on (the guest reaches nothing), forwards
from 127.0.0.1 to the guest for -p, and the guest's address set by the kernel (ip=); in
direct mode the kernel has no IP at all and summon's stack owns eth0 (AF_PACKET) at that
same address (SUMMON_NET).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ClassVar

from summon import paths
from summon.build.kernel_image import boot_kernel, kernel_footprint
from summon.errors import TargetUnavailable, UserError
from summon.targets.base import FREEZE, VOLUMES, Check, RunSpec, Target
from summon.targets.qemu.cmdline import GATEWAY, GUEST_ADDRESS, Disk, kernel_cmdline, qemu_argv
from summon.targets.qemu.initrd import RAW_INITRD_HEADROOM, unpacked_initramfs, write_initrd
from summon.targets.qemu.instance import QemuInstance
from summon.targets.qemu.kvm import choose_accel, kvm_status

if TYPE_CHECKING:
    from summon.store.image import Image

    Step = Callable[[str], None]

QEMU = "qemu-system-x86_64"
QEMU_MISSING = "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
BOOT_TIMEOUT = 60.0  # seconds from QEMU's start to READY; a TCG boot takes ~3 s here
# RAM beyond the kernel's image and the initramfs file without which no boot gets far.
MIN_FREE_MEMORY = 8 * 1024 * 1024
MiB = 1024 * 1024


class QemuTarget(Target):
    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = "a QEMU microVM with a kernel built for the image"
    options: ClassVar[frozenset[str]] = frozenset({"accel"})
    capabilities: ClassVar[frozenset[str]] = frozenset({VOLUMES, FREEZE})

    def __init__(
        self,
        accel: str | None = None,
        store: Any = None,
        output: IO[bytes] | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
        extra_kernel_args: tuple[str, ...] = (),
        step: Step | None = None,
        notice: Callable[[str], None] | None = None,
        exact_memory: bool = False,
        initrd: str = "auto",
    ) -> None:
        """accel: "kvm" or "tcg" (default: KVM only where it truly works).

        output: where the console goes (default: the spec's stdout fd, else summon's stdout);
        store: the image store (default: the user's); extra_kernel_args: after rdinit=.

        Guest memory: the spec's memory is the app's, as on the other targets; a VM also
        holds the image's files in RAM (the initramfs is its root), so it gets their size
        on top, unless exact_memory. initrd: "raw" hands the kernel a cpio it only copies,
        "gzip" one it must decompress (slower under TCG, less memory at the peak, when the
        archive and the files it unpacks are both in RAM); "auto" picks raw when it fits.
        """
        self.accel = accel
        self.store = store
        self.output = output
        self.boot_timeout = boot_timeout
        self.extra_kernel_args = extra_kernel_args
        self.step = step or (lambda s: None)
        self.notice = notice or _stderr_notice
        self.exact_memory = exact_memory
        if initrd not in ("auto", "raw", "gzip"):
            raise ValueError(f"initrd {initrd!r}: auto, raw or gzip")
        self.initrd = initrd

    @classmethod
    def default_preference(cls) -> tuple[int, str]:
        ok, why = kvm_status()
        if not ok:
            return 0, f"no usable KVM for qemu: {why}"
        if shutil.which(QEMU) is None:
            return 0, f"{QEMU} is not installed"
        return 20, "KVM works here"

    def _store(self) -> Any:
        from summon.store import Store

        return self.store or Store(paths.store_dir())

    def prepare(self, image: Image, step: Step) -> Image:
        """Add the boot artifact (kernel, initramfs) unless the image has one already."""
        from summon.build.boot import ensure_boot_artifact

        return ensure_boot_artifact(image, step)[0]

    def start(self, spec: RunSpec) -> QemuInstance:
        from summon.build.boot import ensure_boot_artifact
        from summon.store.image import Image

        qemu = shutil.which(QEMU)
        if qemu is None:
            raise TargetUnavailable(QEMU_MISSING)
        accel, notice = choose_accel(self.accel)
        if notice:
            self.notice(notice)
        store = self._store()
        if spec.image_digest:
            image = Image.by_digest(store, spec.image_digest, spec.image)
        else:
            image = Image.open(store, spec.image)
        image, boot = ensure_boot_artifact(image, self.step)
        fragments = boot.config.get("kernel", {}).get("fragments") or []
        disks = self._disks(spec, fragments, image.ref)
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        kernel = boot_kernel(store, boot.kernel)
        cpio = unpacked_initramfs(store, boot.initramfs)
        image_bytes = cpio.stat().st_size
        memory = spec.memory if self.exact_memory else spec.memory + image_bytes
        raw = self.initrd == "raw" or (
            self.initrd == "auto" and memory >= 2 * image_bytes + RAW_INITRD_HEADROOM
        )
        initrd = spec.state_dir / "initrd"
        env = {"PATH": "/usr/bin:/bin", **spec.env}
        if spec.network == "direct":  # summon's stack on the raw NIC, at QEMU's guest address
            env.setdefault("SUMMON_NET_IFACE", "eth0")
            # Static, not DHCP: no lease to wait for, at the address the forwards target.
            env.setdefault("SUMMON_NET", f"{GUEST_ADDRESS}/24,gateway={GATEWAY}")
        settings = {
            "env": env,
            "volumes": [{"uuid": d.uuid, "path": d.mount} for d in disks],
            "modules": list(boot.config.get("modules") or []),
            "up": ["eth0"] if spec.network == "direct" else [],
        }
        archive = cpio if raw else store.verify(boot.initramfs)
        write_initrd(archive, settings, initrd, gzip_run=not raw)
        # Below this the kernel overwrites its initramfs or dies before its console is up,
        # silently: say so now rather than after the boot bound.
        floor = kernel_footprint(kernel) + initrd.stat().st_size + MIN_FREE_MEMORY
        if memory < floor:
            given = f"{-(-memory // MiB)} MiB"
            if not self.exact_memory:
                given += f" ({spec.memory // MiB} MiB for the app, the rest for the image's files)"
            raise UserError(
                f"too little memory for this VM: {given}, while its kernel and initramfs alone "
                f"take {-(-floor // MiB)} MiB; give the app more with -m"
            )
        # The kernel's own IP only in socket mode: in direct mode summon's stack owns the NIC.
        cmdline = kernel_cmdline(boot.config, spec.network == "socket", self.extra_kernel_args)
        acpi = bool(boot.config.get("acpi"))
        argv = qemu_argv(qemu, accel, kernel, initrd, cmdline, spec, disks, acpi, memory)
        output: IO[bytes] | None = self.output
        if output is None and spec.stdout is None:
            output = sys.stdout.buffer
        instance = QemuInstance(spec, argv, output)
        try:
            instance._start(self.boot_timeout)
        except BaseException:
            instance.stop(grace=0)
            raise
        return instance

    def _disks(self, spec: RunSpec, fragments: list[str], ref: str) -> tuple[Disk, ...]:
        from summon.targets import volumes

        if not spec.volumes:
            return ()
        if "virtio-blk" not in fragments:
            raise UserError(
                f"image {ref} has a kernel without disks, so -v cannot mount a volume: declare "
                'the mount points with volumes = ["/data"] in [tool.summon] and rebuild'
            )
        disks = []
        for vol in spec.volumes:
            volumes.check_path(vol.path)
            path, fs_uuid = volumes.ensure_disk(vol.name)
            disks.append(Disk(path, fs_uuid, vol.path))
        return tuple(disks)

    @classmethod
    def check(cls) -> list[Check]:
        from summon.build import kernel

        checks = []
        qemu = shutil.which(QEMU)
        if qemu is None:
            checks.append(
                Check("qemu: qemu-system-x86_64", False, "apt-get install qemu-system-x86")
            )
        else:
            out = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
            first = out.stdout.splitlines()[0] if out.stdout else QEMU
            checks.append(Check(f"qemu: {first}", True))
        ok, why = kvm_status()
        checks.append(
            Check(
                "qemu: acceleration KVM" if ok else f"qemu: acceleration TCG (no KVM: {why})", True
            )
        )
        try:
            kernel.source_id()
            checks.append(Check(f"qemu: kernel source {kernel.SOURCE_TARBALL}", True))
        except UserError:
            checks.append(
                Check(
                    f"qemu: kernel source {kernel.SOURCE_PACKAGE}",
                    False,
                    f"apt-get install {kernel.SOURCE_PACKAGE}",
                )
            )
        tools = ["make", "gcc", "bison", "flex", "bc", "tar", "xz"]
        missing = [t for t in tools if shutil.which(t) is None]
        checks.append(
            Check(
                "qemu: kernel build tools (" + ", ".join(tools) + ")",
                not missing,
                "apt-get install build-essential bison flex bc libelf-dev libssl-dev xz-utils"
                if missing
                else "",
            )
        )
        mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/sbin:/usr/sbin")
        checks.append(
            Check(
                "qemu: mkfs.ext4 for volumes",
                mkfs is not None,
                "" if mkfs else "apt-get install e2fsprogs",
            )
        )
        return checks


def _stderr_notice(line: str) -> None:
    print(f"summon: {line}", file=sys.stderr, flush=True)
