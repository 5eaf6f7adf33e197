"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

kvm.py (is KVM usable), cmdline.py (QEMU's and the kernel's command lines), initrd.py (the
initramfs plus the run's settings), serial.py (the serial console), instance.py (one running
QEMU), target.py (the Target: prepare, start, check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from summon.targets.qemu.target import QemuTarget

__all__ = ["QemuTarget", "default_preference"]

QEMU = "qemu-system-x86_64"


def default_preference() -> tuple[int, str]:
    """QemuTarget.default_preference(), answered without importing the VM machinery: every
    `summon run` that names no target asks each target (targets.choose_default)."""
    import shutil

    from summon.targets.qemu.kvm import kvm_status

    ok, why = kvm_status()
    if not ok:
        return 0, f"no usable KVM for qemu: {why}"
    if shutil.which(QEMU) is None:
        return 0, f"{QEMU} is not installed"
    return 20, "KVM works here"


def __getattr__(name: str) -> Any:
    if name == "QemuTarget":  # the target's module, only once the target itself is wanted
        from summon.targets.qemu.target import QemuTarget

        return QemuTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
