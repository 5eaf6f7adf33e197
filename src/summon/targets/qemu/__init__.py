"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

kvm.py (is KVM usable), cmdline.py (QEMU's and the kernel's command lines), initrd.py (the
initramfs plus the run's settings), serial.py (the serial console), instance.py (one running
QEMU), target.py (the Target: prepare, start, check).
"""

from summon.targets.qemu.target import QemuTarget

__all__ = ["QemuTarget"]
