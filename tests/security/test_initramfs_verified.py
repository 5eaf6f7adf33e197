"""The qemu target's side of the verified run path: the decompressed initramfs is checked.

No VM boots here: the boot artifact gets a stand-in kernel; what is checked is the archive the
qemu target hands QEMU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hostile_apps import APPS

from summon.build.boot import attach_boot_artifact, boot_artifact
from summon.build.image import build
from summon.errors import CorruptBlob
from summon.store import Store
from summon.targets.qemu import initrd


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cached_initramfs_is_checked_before_each_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: the boot config records the sha256 of the uncompressed initramfs; the cached
    decompressed copy is checked against it before a boot (an edited one is decompressed
    again), and hashed again as it is copied into the file QEMU loads (a change in between
    is refused)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "store")
    image = build(APPS / "probe", store, "probe:boot").image
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"a stand-in: nothing boots in this test")
    boot = boot_artifact(attach_boot_artifact(image, kernel, {"config_hash": "test"}))
    assert boot is not None
    recorded = boot.config["initramfs"]["sha256"]
    cpio, expect = initrd.unpacked_initramfs(store, boot.initramfs, boot.config)
    assert expect == recorded == sha256(cpio)

    with cpio.open("r+b") as f:  # the cache edited
        f.seek(200)
        f.write(b"X")
    assert sha256(cpio) != recorded
    again, _ = initrd.unpacked_initramfs(store, boot.initramfs, boot.config)
    assert sha256(again) == recorded

    tampered = tmp_path / "tampered.cpio"  # changed between that check and the copy
    tampered.write_bytes(b"X" + again.read_bytes()[1:])
    with pytest.raises(CorruptBlob, match=r"refused \(verified run path\)"):
        initrd.write_initrd(tampered, {"env": {}}, tmp_path / "initrd", False, recorded)
    assert not (tmp_path / "initrd").exists()
    initrd.write_initrd(again, {"env": {}}, tmp_path / "initrd", False, recorded)
    assert (tmp_path / "initrd").read_bytes().startswith(again.read_bytes())


def test_an_older_boot_artifact_is_decompressed_afresh_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: with no recorded sha256 (an artifact from before it was recorded), the cache is
    not trusted at all: each boot decompresses the verified blob again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "store")
    image = build(APPS / "probe", store, "probe:boot").image
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"a stand-in")
    boot = boot_artifact(attach_boot_artifact(image, kernel, {"config_hash": "test"}))
    assert boot is not None
    old_config = {k: v for k, v in boot.config.items() if k != "initramfs"}
    cpio, first = initrd.unpacked_initramfs(store, boot.initramfs, old_config)
    cpio.write_bytes(b"edited")
    again, second = initrd.unpacked_initramfs(store, boot.initramfs, old_config)
    assert second == first == sha256(again)
