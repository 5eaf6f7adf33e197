"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

kvm.py (is KVM usable), cmdline.py (QEMU's and the kernel's command lines), initrd.py (the
initramfs plus the run's settings), serial.py (the serial console), instance.py (one running
QEMU), target.py (the Target: prepare, start, check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Answered without importing the VM machinery: every `summon run` that names no target asks
# each target (targets.choose_default).
from summon.targets.qemu.kvm import default_preference

if TYPE_CHECKING:
    from summon.targets.qemu.target import QemuTarget

__all__ = ["QemuTarget", "default_preference"]


def __getattr__(name: str) -> Any:
    if name == "QemuTarget":  # the target's module, only once the target itself is wanted
        from summon.targets.qemu.target import QemuTarget

        return QemuTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
