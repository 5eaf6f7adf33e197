"""The runtime's VM part on the host: what it reads (cmdline, run.json, superblocks).

What it does to a kernel (mounts, ioctls, reboot) is tested by booting real VMs in
tests/integration/test_qemu.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from summon.runtime import vm
from summon.targets import volumes


def test_is_vm_reads_the_flag_off_the_kernel_command_line(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    assert not vm.is_vm(str(tmp_path))  # no /proc/cmdline at all
    (tmp_path / "proc" / "cmdline").write_text("console=ttyS0 summon.vm=1 quiet\n")
    assert vm.is_vm(str(tmp_path))
    (tmp_path / "proc" / "cmdline").write_text("console=ttyS0 xsummon.vm=1\n")
    assert not vm.is_vm(str(tmp_path))


def test_parse_ip_takes_address_netmask_and_device() -> None:
    cmdline = ["quiet", "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off", "x"]
    assert vm.parse_ip(cmdline) == ("10.0.2.15", "255.255.255.0", "eth0")
    assert vm.parse_ip(["ip=10.0.0.2::10.0.0.1:255.0.0.0"]) == ("10.0.0.2", "255.0.0.0", "eth0")
    assert vm.parse_ip(["ip=dhcp"]) is None
    assert vm.parse_ip(["quiet"]) is None


def test_read_settings(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    assert vm.read_settings(str(path)) == {}  # the host put none in
    path.write_text('{"env": {"A": "1"}, "volumes": []}')
    assert vm.read_settings(str(path)) == {"env": {"A": "1"}, "volumes": []}
    path.write_text("[1]")
    with pytest.raises(vm.SetupError, match="is not a JSON object"):
        vm.read_settings(str(path))
    path.write_text("{")
    with pytest.raises(vm.SetupError, match="cannot read"):
        vm.read_settings(str(path))


@pytest.mark.skipif(
    shutil.which("mkfs.ext4", path="/sbin:/usr/sbin:/usr/bin:/bin") is None,
    reason="mkfs.ext4 missing: apt-get install e2fsprogs",
)
def test_guest_and_host_read_the_same_ext4_uuid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path, fs_uuid = volumes.ensure_disk("data", size=8 * 1024 * 1024)
    assert path == tmp_path / "state" / "summon" / "volumes" / "data.ext4"
    assert len(fs_uuid) == 32
    assert vm.ext4_uuid(str(path)) == fs_uuid
    blkid = shutil.which("blkid", path="/sbin:/usr/sbin:/usr/bin:/bin")
    if blkid:
        shown = subprocess.run(
            [blkid, "-o", "value", "-s", "UUID", str(path)], capture_output=True, text=True
        ).stdout.strip()
        assert shown.replace("-", "") == fs_uuid
    # Kept: the second use finds the same file system.
    assert volumes.ensure_disk("data", size=8 * 1024 * 1024) == (path, fs_uuid)
    (tmp_path / "not-ext4").write_bytes(bytes(4096))
    assert vm.ext4_uuid(str(tmp_path / "not-ext4")) is None
    assert not list(path.parent.glob(".*.tmp"))


def test_volume_names_and_paths_are_checked() -> None:
    volumes.check_name("data-1.x")
    for bad in ("", "../x", "a/b", "-x"):
        with pytest.raises(Exception, match="volume name"):
            volumes.check_name(bad)
    volumes.check_path("/data")
    volumes.check_path("/var/lib/app")
    for bad in ("data", "/", "/proc/x", "/usr/lib/x", "/a/../b", "/a//b"):
        with pytest.raises(Exception, match="volume path"):
            volumes.check_path(bad)
