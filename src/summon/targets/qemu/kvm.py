"""Whether KVM truly works on this host, and which accelerator a VM gets (KVM or TCG)."""

from __future__ import annotations

import os
from pathlib import Path

from summon.errors import UserError

ACCELS = ("kvm", "tcg")
QEMU = "qemu-system-x86_64"  # the emulator the qemu target runs
KVM_API_VERSION = 12
_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01


def kvm_status(
    cpuinfo: Path = Path("/proc/cpuinfo"), device: Path = Path("/dev/kvm")
) -> tuple[bool, str]:
    """(KVM truly works, why not): the mere presence of /dev/kvm proves nothing.

    A paravirtual /dev/kvm (on a host without VT-x or AMD-V) opens and answers, but cannot
    run a standard guest; hence the CPU flags first, then the API version, then a real VM.
    """
    try:
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags |= set(line.partition(":")[2].split())
    except OSError as e:
        return False, f"cannot read {cpuinfo}: {e.strerror}"
    if not flags & {"vmx", "svm"}:
        return False, "the CPU has no vmx or svm flag (no hardware virtualization)"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"cannot open {device}: {e.strerror}"
    import fcntl

    try:
        try:
            version = fcntl.ioctl(fd, _KVM_GET_API_VERSION, 0)
        except OSError as e:
            return False, f"{device} does not answer KVM_GET_API_VERSION: {e.strerror}"
        if version != KVM_API_VERSION:
            return False, f"{device} speaks KVM API {version}, not {KVM_API_VERSION}"
        try:
            os.close(fcntl.ioctl(fd, _KVM_CREATE_VM, 0))
        except OSError as e:
            return False, f"{device} cannot create a VM: {e.strerror}"
    finally:
        os.close(fd)
    return True, ""


def check_accel(requested: str | None) -> None:
    """Refuse an accelerator that is none of ACCELS (None: summon chooses)."""
    if requested is not None and requested not in ACCELS:
        raise UserError(f"--accel {requested}: choose one of {', '.join(ACCELS)}")


def choose_accel(requested: str | None) -> tuple[str, str]:
    """(accelerator, a one-line notice or ""). An explicit choice is taken as it is."""
    if requested is not None:
        check_accel(requested)
        return requested, ""
    ok, why = kvm_status()
    if ok:
        return "kvm", ""
    return "tcg", f"KVM is not usable here ({why}): running under TCG emulation, slower"


def default_preference() -> tuple[int, str]:
    """QemuTarget.default_preference(): the default target where KVM truly works."""
    import shutil

    ok, why = kvm_status()
    if not ok:
        return 0, f"no usable KVM for qemu: {why}"
    if shutil.which(QEMU) is None:
        return 0, f"{QEMU} is not installed"
    return 20, "KVM works here"
