"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

The image's boot artifact (summon.build.boot) gives the kernel, built for this image, and
the initramfs, which is the image's root filesystem; prepare() adds it to an image that has
none (building its kernel, once per configuration). start() appends the run's settings
(environment, volumes) to the initramfs as a second cpio archive (initrd.py), builds the
command lines (cmdline.py) and starts QEMU (instance.py). The kernel starts the runtime as
PID 1 (rdinit=), which sets the guest up (summon.runtime.vm) and runs the app.

Snapshots (snapshot.py, migration.py, docs/qemu.md): a guest whose app serves through the
Stack device is saved once its app listens, and later starts of the same guest (same key:
image, kernel, memory, settings, QEMU...) restore it, verified as QEMU loads it, instead of
booting; option snapshot=False boots every time.

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
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

from summon import paths
from summon.build.kernel_image import boot_kernel, kernel_footprint
from summon.errors import TargetUnavailable, UserError
from summon.runtime.config import manifest_table
from summon.runtime.vm import CONTROL_VERSION
from summon.targets.base import (
    ARGS,
    FREEZE,
    SECRETS,
    SNAPSHOT,
    VM_CONTROL_LABEL,
    VOLUMES,
    VOLUMES_ENV,
    Check,
    NotSupported,
    RunSpec,
    Target,
    notice_sayer,
    volumes_environment,
)
from summon.targets.qemu.cmdline import (
    GATEWAY,
    GUEST_ADDRESS,
    Disk,
    host_cache,
    kernel_cmdline,
    qemu_argv,
)
from summon.targets.qemu.initrd import (
    RAW_INITRD_HEADROOM,
    unpacked_initramfs,
    unpacked_size,
    write_initrd,
)
from summon.targets.qemu.instance import QemuInstance
from summon.targets.qemu.kvm import (
    QEMU,
    check_accel,
    choose_accel,
    default_preference,
    kvm_status,
)
from summon.targets.qemu.snapshot import (
    SNAPSHOT_KERNEL_ARGS,
    Snapshots,
    expects_point,
    material,
    refusal,
)
from summon.targets.snapshots import SnapshotCache, key_of

if TYPE_CHECKING:
    from pathlib import Path

    from summon.build.boot import BootArtifact
    from summon.store.image import Image
    from summon.store.layout import Store

    Step = Callable[[str], None]

QEMU_MISSING = "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
BOOT_TIMEOUT = 60.0  # seconds from QEMU's start to READY; a TCG boot takes ~3 s here
# RAM beyond the kernel's image and the initramfs file without which no boot gets far.
MIN_FREE_MEMORY = 8 * 1024 * 1024
MiB = 1024 * 1024


@dataclass
class Guest:
    """One guest as a start would make it: what shapes it, before any file is written."""

    qemu: str
    accel: str
    store: Store
    boot: BootArtifact
    disks: tuple[Disk, ...]
    memory: int  # the VM's RAM
    raw: bool  # the image's initramfs goes in uncompressed
    settings: dict[str, Any]  # run.json
    cmdline: str  # the kernel's
    acpi: bool
    leases: list[Any]  # holds on its volumes (targets.volumes): the instance closes them

    def argv(
        self,
        spec: RunSpec,
        *,
        boot: bool,
        kernel: Path | None = None,
        initrd: Path | None = None,
        forwards: bool = False,
        restrict: bool = True,
    ) -> list[str]:
        """QEMU's command line: to boot (kernel, initrd), or for a restore (neither);
        restrict False only inside an egress namespace (outbound.py)."""
        return qemu_argv(
            self.qemu,
            self.accel,
            kernel if boot else None,
            initrd if boot else None,
            self.cmdline,
            spec,
            self.disks,
            self.acpi,
            self.memory,
            forwards=forwards,
            restrict=restrict,
        )

    def material(self, spec: RunSpec) -> dict[str, Any]:
        """What the snapshot key of this guest is made of (snapshot.material)."""
        return material(
            spec=spec,
            qemu=self.qemu,
            accel=self.accel,
            argv=self.argv(spec, boot=False)[1:],
            kernel=self.boot.kernel.digest,
            initramfs=self.boot.initramfs.digest,
            raw_initrd=self.raw,
            cmdline=self.cmdline,
            settings=self.settings,
        )


class QemuTarget(Target):
    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = "a QEMU microVM with a kernel built for the image"
    options: ClassVar[frozenset[str]] = frozenset({"accel", "snapshot"})
    capabilities: ClassVar[frozenset[str]] = frozenset({ARGS, VOLUMES, SECRETS, SNAPSHOT, FREEZE})
    held_limits: ClassVar[frozenset[str]] = frozenset({"memory"})  # the guest's RAM; no pids

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
        snapshot: bool | None = None,
    ) -> None:
        """accel: "kvm" or "tcg" (default: KVM only where it truly works).

        output: where the console goes (default: the spec's stdout fd, else summon's stdout);
        store: the image store (default: the user's); extra_kernel_args: after rdinit=.

        Guest memory: the spec's memory is the app's, as on the other targets; a VM also
        holds the image's files in RAM (the initramfs is its root), so it gets their size
        on top, unless exact_memory. initrd: "raw" hands the kernel a cpio it only copies,
        "gzip" one it must decompress (slower under TCG, less memory at the peak, when the
        archive and the files it unpacks are both in RAM); "auto" picks raw when it fits.

        snapshot: False boots every time, neither restoring nor saving a snapshot (`summon run
        --no-snapshot`); otherwise a guest that may have one is restored from it (snapshot.py).
        """
        check_accel(accel)  # a flag's mistake: said before the kernel is built, nothing recorded
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
        self.snapshot = snapshot
        self._refusal_said = False
        self._listener: Callable[[str], None] | None = None

    @classmethod
    def default_preference(cls) -> tuple[int, str]:
        return default_preference()

    def _store(self) -> Any:
        from summon.store import Store

        return self.store or Store(paths.store_dir())

    def prepare(self, image: Image, step: Step) -> Image:
        """Add the boot artifact (kernel, initramfs) unless the image has one already.

        A bad snapshot_cache_size in config.toml, and an image older than the control port,
        are said here, before an instance is recorded (in start one was left behind, exited
        with "start failed") and before a kernel is built for an image that cannot run."""
        from summon.build.boot import ensure_boot_artifact

        if self.snapshot is not False:
            SnapshotCache().limit  # noqa: B018 - read for its UserError
        check_control(image)

        return ensure_boot_artifact(image, step)[0]

    def hear_notices(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    def start(self, spec: RunSpec) -> QemuInstance:
        """Restore the guest from its snapshot if one matches (verified as it loads), else
        boot it, saving a snapshot at its snapshot point when it may have one."""
        say = self._sayer(spec)
        snapshotting = self._snapshotting(spec, say)
        guest = self._guest(spec, snapshotting, say)
        try:
            return self._start(spec, guest, snapshotting, say)
        except BaseException:
            for held in guest.leases:  # closing twice is harmless (the instance may have)
                held.close()
            raise

    def _sayer(self, spec: RunSpec) -> Callable[[str], None]:
        """How a start of spec says a notice: to self.notice (summon's stderr, which is a
        detached instance's monitor.log), to whoever hears this target (hear_notices: the
        monitor of `summon run -d`, which prints them), and as a `summon:` line on the
        spec's console when it has one (what `summon logs` shows; a gateway service's log)."""
        return notice_sayer(self.notice, self._listener, spec.stdout)

    def _start(
        self, spec: RunSpec, guest: Guest, snapshotting: bool, say: Callable[[str], None]
    ) -> QemuInstance:
        snapshots, key = None, ""
        if snapshotting:
            snapshots = Snapshots(SnapshotCache(), self.name, say)
            key = key_of(guest.material(spec))
            # The bound as it is now (a lowered snapshot_cache_size), before this start looks:
            # least recently used first, never the snapshot it is about to restore.
            snapshots.trim(keep=key)
            snap = snapshots.find(key)
            if snap is not None:
                argv = guest.argv(spec, boot=False)
                restored = snapshots.restore(snap, lambda: self._instance(spec, argv, True))
                if restored is not None:
                    return restored
        return self._boot(spec, guest, snapshots, key)

    def _guest(
        self, spec: RunSpec, snapshotting: bool = False, say: Callable[[str], None] | None = None
    ) -> Guest:
        """Everything that shapes the guest, without writing a file.

        snapshotting: the guest gets a snapshot point (run.json) and the kernel arguments
        that make its snapshot small (snapshot.SNAPSHOT_KERNEL_ARGS). say: how notices are
        said (default self.notice).
        """
        say = say or self.notice
        from summon.build.boot import ensure_boot_artifact
        from summon.store.image import Image

        qemu = shutil.which(QEMU)
        if qemu is None:
            raise TargetUnavailable(QEMU_MISSING)
        accel, notice = choose_accel(self.accel)
        if notice:
            say(notice)
        store = self._store()
        if spec.image_digest:
            image = Image.by_digest(store, spec.image_digest, spec.image)
        else:
            image = Image.open(store, spec.image)
        check_control(image)
        image, boot = ensure_boot_artifact(image, self.step)
        fragments = boot.config.get("kernel", {}).get("fragments") or []
        leases: list[Any] = []  # held while the VM runs: the instance closes them
        try:
            disks = self._disks(spec, fragments, image.ref, leases, say)
        except BaseException:
            for held in leases:
                held.close()
            raise
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        image_bytes = unpacked_size(store, boot.initramfs)
        memory = spec.memory if self.exact_memory else spec.memory + image_bytes
        raw = self.initrd == "raw" or (
            self.initrd == "auto" and memory >= 2 * image_bytes + RAW_INITRD_HEADROOM
        )
        env = {"PATH": "/usr/bin:/bin", **spec.env}
        if disks:  # what the runtime's KV_RW stores find mounted (vm.py mounts them)
            env[VOLUMES_ENV] = volumes_environment([(d.mount, None) for d in disks])
        if spec.network == "direct":  # summon's stack on the raw NIC, at QEMU's guest address
            env.setdefault("SUMMON_NET_IFACE", "eth0")
            # Static, not DHCP: no lease to wait for, at the address the forwards target.
            env.setdefault("SUMMON_NET", f"{GUEST_ADDRESS}/24,gateway={GATEWAY}")
        settings: dict[str, Any] = {
            "env": env,
            "volumes": [{"uuid": d.uuid, "path": d.mount} for d in disks],
            "modules": list(boot.config.get("modules") or []),
            "up": ["eth0"] if spec.network == "direct" else [],
        }
        if spec.args:  # vm.py hands them to the app (and they are in the snapshot key)
            settings["args"] = list(spec.args)
        extra = self.extra_kernel_args
        if snapshotting:
            settings["snapshot"] = True
            extra = (*SNAPSHOT_KERNEL_ARGS, *extra)
        # The kernel's own IP only in socket mode: in direct mode summon's stack owns the NIC.
        cmdline = kernel_cmdline(boot.config, spec.network == "socket", extra)
        acpi = bool(boot.config.get("acpi"))
        return Guest(qemu, accel, store, boot, disks, memory, raw, settings, cmdline, acpi, leases)

    def _snapshotting(self, spec: RunSpec, say: Callable[[str], None]) -> bool:
        """Whether this start restores or saves a snapshot (see snapshot.py for who may).

        snapshot_cache_size = 0 keeps none: those stored are removed here, none is saved.
        """
        if self.snapshot is False or not expects_point(spec):
            return False
        why = refusal(spec)
        if why:
            if not self._refusal_said:
                self._refusal_said = True
                say(f"{spec.image}: not snapshotted: {why}")
            return False
        cache = SnapshotCache()
        if cache.limit > 0:
            return True
        Snapshots(cache, self.name, say).trim()
        return False

    def _instance(self, spec: RunSpec, argv: list[str], forwards_later: bool) -> QemuInstance:
        output: IO[bytes] | None = self.output
        if output is None and spec.stdout is None:
            output = sys.stdout.buffer
        return QemuInstance(spec, argv, output, forwards_later)

    def _boot(
        self, spec: RunSpec, guest: Guest, snapshots: Snapshots | None, key: str
    ) -> QemuInstance:
        store, boot = guest.store, guest.boot
        kernel = boot_kernel(store, boot.kernel)
        cpio, cpio_digest = unpacked_initramfs(store, boot.initramfs, boot.config)
        initrd = spec.state_dir / "initrd"
        archive, digest = (
            (cpio, cpio_digest)
            if guest.raw
            else (store.blob_path(boot.initramfs.digest), boot.initramfs.digest)
        )
        run_secrets = {secret.name: secret.read() for secret in spec.secrets}
        write_initrd(
            archive, guest.settings, initrd, gzip_run=not guest.raw, expect=digest,
            secrets=run_secrets,
        )  # fmt: skip
        # Below this the kernel overwrites its initramfs or dies before its console is up,
        # silently: say so now rather than after the boot bound.
        memory = guest.memory
        floor = kernel_footprint(kernel) + initrd.stat().st_size + MIN_FREE_MEMORY
        if memory < floor:
            given = f"{-(-memory // MiB)} MiB"
            if not self.exact_memory:
                given += f" ({spec.memory // MiB} MiB for the app, the rest for the image's files)"
            raise UserError(
                f"too little memory for this VM: {given}, while its kernel and initramfs alone "
                f"take {-(-floor // MiB)} MiB; give the app more with -m"
            )
        take = None
        if snapshots is not None:
            about = {
                "image": spec.image,
                "image_digest": spec.image_digest,
                "memory": memory,
                "network": spec.network,
                "accel": guest.accel,
            }
            take = snapshots.saver(key, about, guest.qemu)
        outbound = None
        if spec.app_config.get("egress"):  # QEMU in a namespace with the allowlist
            from summon.targets.qemu.outbound import Outbound

            outbound = Outbound(spec, spec.app_config["egress"])
        argv = guest.argv(
            outbound.vm_spec() if outbound else spec,
            boot=True,
            kernel=kernel,
            initrd=initrd,
            forwards=take is None,
            restrict=outbound is None,
        )
        instance = self._instance(spec, outbound.wrap(argv) if outbound else argv, take is not None)
        instance.outbound = outbound
        instance.leases = guest.leases
        try:
            if outbound is not None:
                outbound.start()
            instance.boot(self.boot_timeout, take)
        except BaseException:
            instance.stop(grace=0)
            raise
        if spec.secrets:
            # QEMU read the initrd at start and the guest is up: the secrets' one copy on
            # the host's disk goes now.
            initrd.unlink(missing_ok=True)
        return instance

    def _disks(
        self,
        spec: RunSpec,
        fragments: list[str],
        ref: str,
        leases: list[Any],
        say: Callable[[str], None],
    ) -> tuple[Disk, ...]:
        """The disks of spec's volumes, attached (held in `leases` until the VM is gone)."""
        from summon.targets import volumes

        if not spec.volumes:
            return ()
        if "virtio-blk" not in fragments:
            raise UserError(
                f"image {ref} has a kernel without disks, so -v cannot mount a volume: declare "
                'the mount points with volumes = ["/data"] in '
                f"{manifest_table(spec.app_config)} and rebuild"
            )
        volumes.check_declared(spec)
        disks = []
        for vol in spec.volumes:
            if vol.is_bind:
                raise NotSupported(
                    f"-v {vol}: a VM takes named volumes (disk images), not host folders; "
                    f"use -v NAME:{vol.path} (a folder volume moves into a disk on first use)"
                )
            path, fs_uuid, held = volumes.attach_disk(vol.name, say)
            leases.append(held)
            disks.append(Disk(path, fs_uuid, vol.path, host_cache(path)))
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


def check_control(image: Image) -> None:
    """UserError for an image whose runtime reports on the VM's console (built before the
    control port): the app's output there could pass for its lines (docs/qemu.md)."""
    labels = image.config.get("config", {}).get("Labels") or {}
    spoken = labels.get(VM_CONTROL_LABEL)
    if not (isinstance(spoken, str) and spoken.isdecimal() and int(spoken) >= CONTROL_VERSION):
        raise UserError(
            f"image {image.ref} was built by an older summon, whose runtime reports to a VM's "
            "host on the console, where the app's output could pass for its lines: rebuild "
            "it (summon build)"
        )


def _stderr_notice(line: str) -> None:
    print(f"summon: {line}", file=sys.stderr, flush=True)
