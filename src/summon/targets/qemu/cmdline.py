"""The QEMU command line and the guest kernel's command line for one instance."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon.errors import CorruptBlob, UserError
from summon.targets.base import RunSpec

CONTROL_CHARDEV = "control"  # the control port's chardev, made per start (instance.py)
GUEST_ADDRESS = "10.0.2.15"  # QEMU user networking's defaults
GATEWAY = "10.0.2.2"
NETMASK = "255.255.255.0"


def kernel_cmdline(boot_config: dict[str, Any], network: bool, extra: tuple[str, ...] = ()) -> str:
    """The kernel command line: kernel arguments, ip=, the init, extra, the init's arguments.

    The kernel runs rdinit= as PID 1 and hands it the parameters it does not know that hold
    no '=' or '.' (summon.build.boot.init_argv made the init's arguments so). No `--`:
    QEMU appends its virtio_mmio.device= parameters after ours, and the kernel must see them.
    """
    args = [str(a) for a in boot_config.get("kernel_args") or []]
    init = [str(a) for a in boot_config.get("init") or []]
    if not init:
        raise CorruptBlob("the boot config names no init to run")
    if network:
        args.append(f"ip={GUEST_ADDRESS}::{GATEWAY}:{NETMASK}::eth0:off")
    args.append(f"rdinit={init[0]}")
    args += extra  # last: a later parameter wins over ours (tests boot a missing init so)
    line = " ".join([*args, *init[1:]])
    for part in (*args, *init):
        if not part or any(c.isspace() or c == '"' for c in part):
            raise UserError(f"kernel argument {part!r} is empty or holds a space or quote")
    return line


def hostfwd(spec: RunSpec) -> str:
    return "".join(
        f",hostfwd={p.protocol}:{p.host_addr}:{p.host_port}-:{p.guest_port}" for p in spec.ports
    )


@dataclass(frozen=True)
class Disk:
    path: Path
    uuid: str
    mount: str
    # QEMU's host cache for it: "none" (O_DIRECT; a guest's flush is an fdatasync, so what the
    # guest synced is on the host's disk, and a killed QEMU loses only the guest's own page
    # cache, as a power cut would), or "writethrough" where the host's file system refuses
    # O_DIRECT (tmpfs): every write then synced before the guest hears it is done.
    cache: str = "none"


def host_cache(path: Path) -> str:
    """The -drive cache mode for a disk image: "none" if its file system takes O_DIRECT."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return "writethrough"
        raise
    os.close(fd)
    return "none"


def qemu_argv(
    qemu: str,
    accel: str,
    kernel: Path | None,
    initrd: Path | None,
    cmdline: str,
    spec: RunSpec,
    disks: tuple[Disk, ...] = (),
    acpi: bool = False,
    memory: int | None = None,
    forwards: bool = True,
    restrict: bool = True,
) -> list[str]:
    """The QEMU command for one instance: microvm, no defaults, the console on stdio, the
    control port on a chardev the instance adds (its fd is per start, so not in a key).

    acpi: for a generic kernel without virtio_mmio.device= parsing, which finds its devices
    in ACPI tables instead (the benchmarks' baseline kernel). memory: the guest's RAM
    (default: the spec's), rounded up to MiB. kernel None: no -kernel, -initrd or -append,
    for a guest restored from a snapshot (its memory holds them; QEMU would only read the
    files). forwards False: no hostfwd= (added over QMP once the guest may take traffic).
    restrict: nothing leaves the VM; off only when QEMU runs in a namespace whose rules hold
    the egress allowlist (outbound.py).
    """
    memory_mib = max(1, -(-(memory or spec.memory) // (1024 * 1024)))
    argv = [
        qemu,
        # No PCI, no ACPI, no firmware option ROMs: the kernel finds its devices on the
        # command line QEMU appends (virtio_mmio.device=...).
        "-M",
        f"microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi={'on' if acpi else 'off'},pcie=off",
        "-accel",
        accel,
        "-cpu",
        "host" if accel == "kvm" else "max",
        "-smp",
        "1",
        "-m",
        f"{memory_mib}M",
        "-no-reboot",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-monitor",
        "none",
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        # The control port, ttyS1 (0x2f8, IRQ 3): the runtime's lines for the host, apart
        # from the app's console. Its chardev is the instance's socketpair (CONTROL_CHARDEV).
        "-device",
        f"isa-serial,chardev={CONTROL_CHARDEV},index=1",
    ]
    if kernel is not None and initrd is not None:
        argv += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    argv += [
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-device,rng=rng0",
    ]
    if spec.network != "none":
        argv += [
            "-netdev",
            f"user,id=net0,restrict={'on' if restrict else 'off'}"
            + (hostfwd(spec) if forwards else ""),
            "-device",
            # Direct mode: no checksum offload either way, so every frame the stack sees
            # through AF_PACKET carries complete checksums (and none it sends needs them).
            "virtio-net-device,netdev=net0"
            + (",csum=off,guest_csum=off" if spec.network == "direct" else ""),
        ]
    for i, disk in enumerate(disks):
        argv += [
            "-drive",
            # aio=threads: works with either cache mode, under KVM and TCG alike.
            f"file={disk.path},format=raw,if=none,id=vol{i},cache={disk.cache},aio=threads",
            "-device",
            f"virtio-blk-device,drive=vol{i}",
        ]
    return argv
