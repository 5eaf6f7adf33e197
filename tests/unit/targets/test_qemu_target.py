"""The qemu target's host-side pieces, without booting: accel detection, command lines, console.

The VMs themselves boot in tests/integration/test_qemu.py.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import lzma
import stat
import struct
from pathlib import Path

import pytest

from summon.build import kernel_image
from summon.build.boot import DEVICE_NODES, init_argv, read_cpio, write_initramfs
from summon.build.rootfs import Rootfs
from summon.errors import CorruptBlob, UserError
from summon.runtime import vm as guest
from summon.store.layout import LAYER_GZIP, Store
from summon.targets.base import PortForward, RunSpec, Volume
from summon.targets.qemu import initrd, kvm, serial
from summon.targets.qemu.cmdline import Disk, kernel_cmdline, qemu_argv
from summon.targets.qemu.kvm import kvm_status
from summon.targets.qemu.serial import SerialConsole as Console

MARK = guest.MARK.encode()
BOOT = {
    "kernel_args": [
        "console=ttyS0",
        "panic=-1",
        "reboot=t",
        "quiet",
        "no_timer_check",
        "summon.vm=1",
    ],
    "init": ["/usr/bin/python3.11", "-S", "-E", "/usr/lib/summon/boot"],
}


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu {flags} sse2\n\nprocessor\t: 1\n")
    return path


# --- acceleration ---


def test_kvm_is_not_trusted_without_vmx_or_svm(tmp_path: Path) -> None:
    # /dev/null stands for a /dev/kvm that opens fine: the flags decide first.
    ok, why = kvm_status(cpuinfo(tmp_path, "pae hypervisor"), Path("/dev/null"))
    assert not ok
    assert why == "the CPU has no vmx or svm flag (no hardware virtualization)"


def test_kvm_needs_a_device_that_opens(tmp_path: Path) -> None:
    ok, why = kvm_status(cpuinfo(tmp_path, "vmx"), tmp_path / "kvm")
    assert not ok
    assert why.startswith(f"cannot open {tmp_path / 'kvm'}: No such file")


def test_kvm_needs_a_device_that_speaks_the_kvm_api(tmp_path: Path) -> None:
    ok, why = kvm_status(cpuinfo(tmp_path, "svm"), Path("/dev/null"))
    assert not ok
    assert why == "/dev/null does not answer KVM_GET_API_VERSION: Inappropriate ioctl for device"


def test_choose_accel_takes_an_explicit_choice() -> None:
    assert kvm.choose_accel("tcg") == ("tcg", "")
    assert kvm.choose_accel("kvm") == ("kvm", "")
    with pytest.raises(UserError, match="--accel xen: choose one of kvm, tcg"):
        kvm.choose_accel("xen")


def test_choose_accel_falls_back_to_tcg_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvm, "kvm_status", lambda: (False, "the CPU has no vmx or svm flag"))
    accel, notice = kvm.choose_accel(None)
    assert accel == "tcg"
    assert notice == (
        "KVM is not usable here (the CPU has no vmx or svm flag): running under TCG "
        "emulation, slower"
    )
    monkeypatch.setattr(kvm, "kvm_status", lambda: (True, ""))
    assert kvm.choose_accel(None) == ("kvm", "")


# --- command lines ---


def test_kernel_cmdline_orders_ip_init_extras_and_has_no_double_dash() -> None:
    line = kernel_cmdline(BOOT, network=True, extra=("loglevel=7",))
    assert line == (
        "console=ttyS0 panic=-1 reboot=t quiet no_timer_check summon.vm=1 "
        "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off "
        "rdinit=/usr/bin/python3.11 loglevel=7 -S -E /usr/lib/summon/boot"
    )
    assert " -- " not in line
    assert "ip=" not in kernel_cmdline(BOOT, network=False)


def test_kernel_cmdline_refuses_arguments_it_cannot_carry() -> None:
    with pytest.raises(UserError, match="holds a space or quote"):
        kernel_cmdline(BOOT, network=False, extra=("a b",))


def test_init_argv_gives_dotted_script_paths_a_symlink_the_kernel_can_pass() -> None:
    argv, links = init_argv(["/usr/bin/python3.11", "-S", "-E", "/usr/lib/summon/boot.py"])
    assert argv == ["/usr/bin/python3.11", "-S", "-E", "/usr/lib/summon/boot"]
    assert links == [("usr/lib/summon/boot", stat.S_IFLNK | 0o777, b"boot.py", (0, 0))]
    with pytest.raises(UserError, match="cannot be passed on a kernel command line"):
        init_argv(["/usr/bin/python3.11", "X=1"])
    with pytest.raises(UserError, match="cannot be passed"):
        init_argv(["/usr/bin/python3.11", "/opt/v1.2/app.py"])


def spec(tmp_path: Path, **kw: object) -> RunSpec:
    base: dict[str, object] = {
        "name": "t",
        "image": "t:latest",
        "rootfs": tmp_path,
        "app_config": {},
        "state_dir": tmp_path,
    }
    base.update(kw)
    return RunSpec(**base)  # type: ignore[arg-type]


def test_qemu_argv_is_a_microvm_with_forwards_on_loopback_and_no_way_out(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        memory=48 * 1024 * 1024 + 1,
        ports=(PortForward(8080, 80), PortForward(5353, 53, "udp")),
    )
    argv = qemu_argv("qemu", "tcg", Path("/k"), Path("/i"), "x", s)
    joined = " ".join(argv)
    assert argv[argv.index("-M") + 1].startswith("microvm,")
    assert "acpi=off" in joined and "-no-reboot" in argv and "-nodefaults" in argv
    assert argv[argv.index("-m") + 1] == "49M"  # rounded up, never down
    assert argv[argv.index("-accel") + 1] == "tcg"
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev == (
        "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53"
    )
    assert "virtio-net-device,netdev=net0" in argv
    assert "virtio-rng-device,rng=rng0" in argv
    # The control port: a second UART on a chardev the instance adds at each start.
    assert "isa-serial,chardev=control,index=1" in argv


def test_qemu_argv_in_direct_mode_turns_the_nics_checksum_offloads_off(tmp_path: Path) -> None:
    argv = qemu_argv("qemu", "tcg", Path("/k"), Path("/i"), "x", spec(tmp_path, network="direct"))
    assert "virtio-net-device,netdev=net0,csum=off,guest_csum=off" in argv
    assert argv[argv.index("-netdev") + 1] == "user,id=net0,restrict=on"


def test_qemu_argv_without_network_has_no_nic_and_attaches_disks(tmp_path: Path) -> None:
    s = spec(tmp_path, network="none", volumes=(Volume("v", "/data"),))
    disk = Disk(tmp_path / "v.ext4", "ab" * 16, "/data")
    argv = qemu_argv("qemu", "kvm", Path("/k"), Path("/i"), "x", s, (disk,))
    assert "-netdev" not in argv
    assert argv[argv.index("-cpu") + 1] == "host"
    assert f"file={disk.path},format=raw,if=none,id=vol0,cache=none,aio=threads" in argv
    assert "virtio-blk-device,drive=vol0" in argv


# --- the console ---


def test_console_shows_all_and_the_control_port_carries_the_runtime_lines() -> None:
    c = Console()
    out = c.feed(b"kernel says\r\nhello\r\n")
    assert out == b"kernel says\nhello\n"
    c.control(MARK + b"summon-vm: up\r\n")
    assert c.ready and c.status is None
    assert c.feed(b"partial line") == b"partial line"
    c.control(MARK + b"summon-exit-status: 3\r\n")
    assert c.status == 3
    # After it the app's last output still shows, the kernel's restart line does not,
    # however the reads split it.
    assert c.feed(b"\r\nlast words\r\nreboot: Restart") == b"\nlast words\n"
    assert c.feed(b"ing system\r") == b""
    assert c.feed(b"\n") == b""
    assert c.feed(b"reboot: not the kernel's\r\n") == b"reboot: not the kernel's\n"
    assert c.feed(b"reboot: Restarting system") == b""
    assert c.end() == b""
    c.feed(b"reboot:")
    assert c.end() == b"reboot:"  # an unfinished line of the app's, at the end


def test_the_kernels_restart_line_read_before_the_status_is_not_shown() -> None:
    """The ports are read apart: the console's last bytes, the kernel's restart line among
    them, can be read before the status the runtime sent ahead of its reboot (the host was
    busy). The line waits for the console's end, when the status is known."""
    c = Console()
    out = c.feed(b"app: bye\r\nlast words\r\nreboot: Restarting system\r\n")
    assert out == b"app: bye\nlast words\n"
    c.control(MARK + b"summon-exit-status: 0\r\n")
    assert c.end() == b""
    # With no status at all (the guest died some other way) the line is shown at the end,
    # and a line after it shows it was the app's own.
    c = Console()
    assert c.feed(b"reboot: Restarting system\r\n") == b""
    assert c.end() == b"reboot: Restarting system\n"
    c = Console()
    c.feed(b"reboot: Restarting system\r\n")
    assert c.feed(b"more\r\n") == b"reboot: Restarting system\nmore\n"


def test_the_apps_console_output_cannot_forge_a_runtime_line() -> None:
    """An app printing the runtime's lines (a logged request body) made the host take them:
    a false exit status, a snapshot before the app listened, traffic before the reseed, or
    no status at all after an RS it never ended. Rule: the console is only shown; the
    runtime's lines are read off the control port alone."""
    c = Console()
    forged = b"".join(
        MARK + line + b"\r\n"
        for line in (b"summon-vm: up", b"summon-vm: app-up 9/tcp", b"summon-vm: resumed",
                     b"summon-exit-status: 0", b"summon-stats: seq=9")
    ) + MARK + b"summon-exit-sta"  # fmt: skip
    assert c.feed(forged) == forged.replace(b"\r\n", b"\n")
    assert not c.ready and c.app_up is None and c.resumed == 0
    assert c.status is None and c.figures == {}
    c.control(MARK + b"summon-exit-status: 5\n")
    assert c.status == 5


def test_control_lines_reassemble_across_reads_and_console_crlf_too() -> None:
    c = Console()
    stream = MARK + b"summon-vm: up\r\n" + MARK + b"summon-exit-status: 42\r\n"
    for i in range(len(stream)):
        c.control(stream[i : i + 1])
    assert c.ready and c.status == 42
    console = b"a\r\nb\r\n"
    assert b"".join(c.feed(console[i : i + 1]) for i in range(len(console))) == b"a\nb\n"


def test_control_port_ignores_a_malformed_or_unmarked_line() -> None:
    c = Console()
    c.control(MARK + b"summon-exit-status: x\n" + b"summon-exit-status: 5\n")
    assert c.status is None
    c.control(b"noise " + MARK + b"summon-exit-status: 6\n")  # the mark starts a line
    assert c.status is None
    c.control(b"x\n" + MARK + b"summon-exit-status: 0\r\n")
    assert c.status == 0


def test_console_output_without_end_is_shown_and_never_held_whole() -> None:
    """A guest app's MARK (or any line) never ended was held in the host's memory, every
    later byte of the console with it, copied again at each read and shown to no one (12 MB
    took 44 s of the reader's CPU). Rule: the console is shown as it comes, a line remembered
    by its last serial.MAX_LINE bytes; a control line is at most MAX_LINE bytes, dropped past
    that."""
    for start in (MARK, b"no newline, ever: "):
        c = Console()
        shown = c.feed(start)
        for _ in range(2000):  # 8 MB
            shown += c.feed(b"x" * 4096)
        assert len(shown) == len(start) + 2000 * 4096
        assert len(c._carry) + len(c._partial) <= 2 * serial.MAX_LINE
    c = Console()
    c.control(MARK + b"summon-exit-status: 1")
    for _ in range(100):
        c.control(b"9" * 4096)
    assert len(c._pending) <= serial.MAX_LINE
    c.control(b"\n" + MARK + b"summon-exit-status: 4\r\n")
    assert c.status == 4  # the overlong line dropped, the next one counts


def test_the_raw_console_log_is_bounded(tmp_path: Path) -> None:
    """The VM's console was copied whole into its state folder's console.log: a guest that
    printed without end filled the host's disk. It is a bounded, rotated log now (at most
    twice instances.console.MAX_BYTES on disk), as the monitor's own."""
    import socket
    import subprocess
    import sys

    from summon.instances.console import MAX_BYTES
    from summon.targets.qemu.instance import QemuInstance

    (tmp_path / "console.log").write_bytes(b"the boot before\n")
    instance = QemuInstance(spec(tmp_path), ["qemu"], io.BytesIO())
    total = 3 * MAX_BYTES
    printer = f"import os\nfor _ in range({total // 65536}): os.write(1, b'x' * 65536)"
    instance._control, peer = socket.socketpair()
    peer.close()
    instance._proc = subprocess.Popen([sys.executable, "-c", printer], stdout=subprocess.PIPE)
    with instance._proc, instance._proc.stdout, instance._control:  # type: ignore[union-attr]
        instance._read_console()
    logs = [tmp_path / "console.log", tmp_path / "console.log.1"]
    assert sum(p.stat().st_size for p in logs) <= 2 * MAX_BYTES
    assert not logs[0].read_bytes().startswith(b"the boot before")


def test_console_crash_reason_is_the_panic_line() -> None:
    c = Console()
    c.feed(
        b"[    0.9] Run /nonexistent as init process\r\n"
        b"[    1.0] Kernel panic - not syncing: No working init found.\r\n"
        b"[    1.0] Kernel Offset: disabled\r\n"
    )
    assert c.crash_reason() == "Kernel panic - not syncing: No working init found."
    runtime = Console()  # no READY yet: only the runtime and the kernel have written
    runtime.feed(b"summon: cannot open the control port /dev/ttyS1: No such device\r\n")
    assert runtime.crash_reason() == "cannot open the control port /dev/ttyS1: No such device"
    quiet = Console()
    assert quiet.crash_reason() == "the guest printed nothing"
    quiet.feed(b"something\r\nlast words")
    assert quiet.crash_reason() == "last console line: last words"


def test_app_output_cannot_replace_the_runtimes_reason_for_a_crash() -> None:
    """Why a guest ended was any console line starting "summon: ", the app's own output
    included: an app (or a request it logs) printed one and the host's error gave that as the
    cause. The runtime's reason comes from the control port now; a console line counts only
    before READY, when no app code can have run."""
    failed = Console()
    failed.control(MARK + b"summon-vm: up\n")
    failed.feed(b"summon: the volume for /data is not attached\r\n")
    failed.control(MARK + b"summon-vm: failed the volume for /data is not attached\r\n")
    failed.feed(b"summon: all is well, nothing to see\r\n")  # the app's, after
    assert failed.crash_reason() == "the volume for /data is not attached"
    # After READY, the app's "summon: " line is console output, not the runtime's word.
    app = Console()
    app.control(MARK + b"summon-vm: up\n")
    app.feed(b"[    3.1] Out of memory: Killed process 1 (python3.11)\r\n")
    app.feed(b"summon: all is well, nothing to see\r\n")
    assert app.crash_reason().startswith("Out of memory: Killed process 1")
    hung = Console()
    hung.control(MARK + b"summon-vm: up\n")
    hung.feed(b"summon: the disk is full\r\nlistening\r\n")
    assert hung.crash_reason() == "last console line: listening"
    # A guest restored from a snapshot saw no READY here, but its app ran before.
    restored = Console()
    restored.restored = True
    restored.feed(b"summon: the disk is full\r\n")
    assert restored.crash_reason() == "last console line: summon: the disk is full"


# --- the initramfs ---


def test_run_archive_is_a_cpio_holding_run_json() -> None:
    entries = read_cpio(initrd.run_archive({"env": {"A": "1"}}))
    assert entries == [("etc/summon/run.json", 0o100644, b'{"env": {"A": "1"}}')]


def layer_store(tmp_path: Path) -> tuple[Store, object]:
    store = Store(tmp_path / "store")
    fs = Rootfs()
    for mp in ("/dev", "/proc", "/tmp"):
        fs.add_dir(mp)
    fs.add_bytes("/usr/lib/summon/boot.py", b"print('hi')\n", "runtime")
    fs.add_bytes("/etc/summon/app.json", b"{}", "config")
    fs.add_symlink("/lib64/ld.so", "../lib/ld.so")
    writer = store.writer()
    fs.write(writer)  # type: ignore[arg-type]
    return store, writer.commit(LAYER_GZIP)


def test_initramfs_is_the_layer_plus_device_nodes_and_links_in_path_order(tmp_path: Path) -> None:
    store, layer = layer_store(tmp_path)
    _, links = init_argv(["/usr/bin/python3.11", "/usr/lib/summon/boot.py"])
    out = io.BytesIO()
    write_initramfs(store, layer, out, links)  # type: ignore[arg-type]
    entries = read_cpio(gzip.decompress(out.getvalue()))
    names = [e[0] for e in entries]
    assert names == sorted(names)
    by_name = {name: (mode, data) for name, mode, data in entries}
    for node, mode, _rdev in DEVICE_NODES:
        assert by_name[node][0] == mode
    assert by_name["usr/lib/summon/boot"] == (stat.S_IFLNK | 0o777, b"boot.py")
    assert by_name["usr/lib/summon/boot.py"][1] == b"print('hi')\n"
    assert by_name["lib64/ld.so"] == (stat.S_IFLNK | 0o777, b"../lib/ld.so")
    assert stat.S_ISDIR(by_name["proc"][0])
    again = io.BytesIO()
    write_initramfs(store, layer, again, links)  # type: ignore[arg-type]
    assert again.getvalue() == out.getvalue()  # reproducible


# --- the kernel QEMU loads ---


def fake_elf(notes: list[tuple[bytes, int]], load_end: int = 0x200000 + 0x900000) -> bytes:
    """A 64-bit ELF with one PT_LOAD ending at load_end and a PT_NOTE holding `notes`."""
    note_data = b""
    for name, n_type in notes:
        raw = name + b"\0"
        note_data += struct.pack("<III", len(raw), 4, n_type) + raw.ljust(
            -(-len(raw) // 4) * 4, b"\0"
        )
        note_data += b"\0\0\0\0"
    phoff, phentsize = 64, 56
    notes_at = phoff + 2 * phentsize
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, phoff, 0, 0, 64, phentsize, 2, 0, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0x200000, 0x1000, load_end - 0x200000, 0x1000)
    note = struct.pack("<IIQQQQQQ", 4, 4, notes_at, 0, 0, len(note_data), len(note_data), 4)
    return header + load + note + note_data


def fake_bzimage(payload: bytes) -> bytes:
    setup_sects = 3
    data = bytearray((setup_sects + 1) * 512 + 16 + len(payload))
    data[0x1F1] = setup_sects
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", data, 0x248, 16, len(payload))
    start = (setup_sects + 1) * 512 + 16
    data[start : start + len(payload)] = payload
    return bytes(data)


def test_the_elf_inside_a_bzimage_is_found_for_xz_and_gzip_payloads() -> None:
    elf = fake_elf([(b"Xen", 18)])
    assert kernel_image.bzimage_elf(fake_bzimage(lzma.compress(elf, lzma.FORMAT_XZ))) == elf
    assert kernel_image.bzimage_elf(fake_bzimage(gzip.compress(elf) + b"\x00\x10\x00\x00")) == elf
    assert kernel_image.bzimage_elf(fake_bzimage(b"\x02\x21\x4c\x18 lz4, not handled")) is None
    assert kernel_image.bzimage_elf(b"not a kernel") is None


def test_pvh_boot_needs_the_xen_phys32_entry_note() -> None:
    assert kernel_image.has_pvh_note(fake_elf([(b"GNU", 3), (b"Xen", 18)]))
    assert not kernel_image.has_pvh_note(fake_elf([(b"Xen", 17)]))
    assert not kernel_image.has_pvh_note(fake_elf([]))


def test_boot_kernel_takes_the_elf_out_once_and_verifies_the_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "store")
    elf = fake_elf([(b"Xen", 18)])
    desc = store.put_bytes(fake_bzimage(lzma.compress(elf, lzma.FORMAT_XZ)), "kernel")
    loaded = kernel_image.boot_kernel(store, desc)
    assert loaded != store.blob_path(desc.digest) and loaded.read_bytes() == elf
    assert kernel_image.boot_kernel(store, desc) == loaded
    store.blob_path(desc.digest).write_bytes(b"tampered")
    with pytest.raises(CorruptBlob, match="is corrupt"):
        kernel_image.boot_kernel(store, desc)
    # No PVH note: QEMU gets the bzImage itself.
    plain = store.put_bytes(fake_bzimage(lzma.compress(fake_elf([]), lzma.FORMAT_XZ)), "kernel")
    assert kernel_image.boot_kernel(store, plain) == store.blob_path(plain.digest)


def test_kernel_footprint(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(fake_elf([(b"Xen", 18)], load_end=0xC00000))
    assert kernel_image.kernel_footprint(path) == 0xC00000
    image = bytearray(fake_bzimage(b"x"))
    struct.pack_into("<QI", image, 0x258, 0x1000000, 0x800000)
    path.write_bytes(bytes(image))
    assert kernel_image.kernel_footprint(path) == 0x1800000  # not relocatable: above pref_address
    image[0x234] = 1
    path.write_bytes(bytes(image))
    assert kernel_image.kernel_footprint(path) == 0x800000


def test_write_initrd_appends_the_run_archive_raw_or_gzipped(tmp_path: Path) -> None:
    image = tmp_path / "image.cpio"
    image.write_bytes(b"IMAGE-ARCHIVE")
    initrd.write_initrd(image, {"env": {}}, tmp_path / "raw", gzip_run=False)
    assert (tmp_path / "raw").read_bytes() == b"IMAGE-ARCHIVE" + initrd.run_archive({"env": {}})
    initrd.write_initrd(image, {"env": {}}, tmp_path / "gz", gzip_run=True)
    tail = (tmp_path / "gz").read_bytes()[len(b"IMAGE-ARCHIVE") :]
    assert gzip.decompress(tail) == initrd.run_archive({"env": {}})


def test_runs_with_volumes_or_secrets_are_never_snapshotted(tmp_path: Path) -> None:
    # Rule: a snapshot is guest memory kept on the host's disk across runs; a run's secrets
    # must not be written there nor handed to a later run, and a volume's view would be stale.
    from summon.targets.base import SecretFile
    from summon.targets.qemu.snapshot import expects_point, refusal

    app = {"entry": {"kind": "function"}, "ports": [{"port": 80, "protocol": "tcp"}]}
    plain = RunSpec(
        image="t", name="t", rootfs=tmp_path, state_dir=tmp_path, network="socket", app_config=app
    )
    assert expects_point(plain) and refusal(plain) == ""
    secret = SecretFile("tls.key", tmp_path / "key")
    with_secret = RunSpec(
        image="t", name="t", rootfs=tmp_path, state_dir=tmp_path, network="socket", app_config=app,
        secrets=(secret,),
    )  # fmt: skip
    assert "secrets" in refusal(with_secret)
    with_volume = RunSpec(
        image="t", name="t", rootfs=tmp_path, state_dir=tmp_path, network="socket", app_config=app,
        volumes=(Volume("data", "/data"),),
    )  # fmt: skip
    assert "volumes" in refusal(with_volume)


def test_with_egress_qemu_runs_in_a_namespace_with_its_forwards_inside(tmp_path: Path) -> None:
    from summon.targets.qemu.outbound import Outbound

    spec = RunSpec(name="abc123", image="db-client:1", rootfs=tmp_path, state_dir=tmp_path,
                   app_config={"egress": ["10.0.3.2:5432"]},
                   ports=(PortForward(18080, 8000),))  # fmt: skip
    outbound = Outbound(spec, ["10.0.3.2:5432"])  # nothing is made before start()
    assert outbound.wrap(["qemu", "-M"]) == [
        "nsenter", "--net=/run/netns/summon-abc123", "--", "qemu", "-M",
    ]  # fmt: skip
    (inside,) = outbound.vm_spec().ports
    assert (inside.host_addr, inside.host_port, inside.guest_port) == ("127.0.0.1", 8000, 8000)
    assert outbound.egress.host_loopback == ipaddress.IPv4Address("10.0.3.2")
    argv = qemu_argv("qemu", "tcg", tmp_path / "k", tmp_path / "i", "x", outbound.vm_spec(),
                     restrict=False)  # fmt: skip
    assert "user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:8000-:8000" in argv
