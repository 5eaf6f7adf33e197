"""The qemu target: the image boots as a microVM on QEMU's `microvm` machine, KVM or TCG.

The image's boot artifact (summon.build.boot) gives the kernel, built for this image, and
the initramfs, which is the image's root filesystem; the host appends the run's settings
(environment, volumes) to the initramfs as a second cpio archive. The kernel starts the
runtime as PID 1 (rdinit=), which sets the guest up (summon.runtime.vm) and runs the app.

The console is the VM's one serial port, on QEMU's stdin and stdout: its output is the
instance's log (<state>/console.log) and, in the foreground, summon's stdout. The runtime
writes two lines for the host there, each starting with an ASCII record separator: READY
when the guest is set up, and the exit status at the end, after which it resets the VM
(reboot=t, -no-reboot: QEMU exits).

Stopping: stop() writes Ctrl-C (0x03) to the serial line. The runtime has made ttyS0 its
controlling terminal, so the guest's tty layer turns that byte into SIGINT for PID 1, which
the runtime treats like SIGTERM: the app shuts down cleanly and the VM resets. microvm has
no ACPI power button and no keyboard, and this needs no extra device or driver. After the
grace period QEMU is killed. QEMU also dies with summon (PR_SET_PDEATHSIG).

Network: QEMU's user-mode network with restrict=on (the guest reaches nothing), forwards
from 127.0.0.1 to the guest for -p, and the guest's address set by the kernel (ip=); in
direct mode the kernel has no IP at all and summon's stack owns eth0 (AF_PACKET) at that
same address (SUMMON_NET).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from summon import paths
from summon.errors import CorruptBlob, SummonError, TargetUnavailable, UserError
from summon.runtime import vm as guest
from summon.targets.base import Check, Instance, RunSpec, Stats, Target, process_stats

QEMU = "qemu-system-x86_64"
QEMU_MISSING = "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
GUEST_ADDRESS = "10.0.2.15"  # QEMU user networking's defaults
GATEWAY = "10.0.2.2"
NETMASK = "255.255.255.0"
BOOT_TIMEOUT = 60.0  # seconds from QEMU's start to READY; a TCG boot takes ~3 s here
# Memory beyond twice the image (archive and unpacked files, both in RAM for a moment) under
# which the initramfs goes in gzip'd: the kernel, the interpreter and the app need about this.
RAW_INITRD_HEADROOM = 32 * 1024 * 1024
# RAM beyond the kernel's image and the initramfs file without which no boot gets far.
MIN_FREE_MEMORY = 8 * 1024 * 1024
MiB = 1024 * 1024
STOP_RESEND = 1.0  # seconds between Ctrl-Cs while stopping (early in boot one may be lost)
ACCELS = ("kvm", "tcg")
KVM_API_VERSION = 12
_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_PR_SET_PDEATHSIG = 1
_CTRL_C = b"\x03"
# Console lines that say why a guest died, the cause first, and what to do about some.
CRASH_CAUSES = ("Initramfs unpacking failed", "Out of memory", "Kernel panic")
_MORE_MEMORY = " (too little memory for the image: give the VM more with -m)"
CRASH_HINTS = {"Initramfs unpacking failed": _MORE_MEMORY, "Out of memory": _MORE_MEMORY}

Step = Callable[[str], None]


# --- acceleration ----------------------------------------------------------------------------


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


def choose_accel(requested: str | None) -> tuple[str, str]:
    """(accelerator, a one-line notice or ""). An explicit choice is taken as it is."""
    if requested is not None:
        if requested not in ACCELS:
            raise UserError(f"--accel {requested}: choose one of {', '.join(ACCELS)}")
        return requested, ""
    ok, why = kvm_status()
    if ok:
        return "kvm", ""
    return "tcg", f"KVM is not usable here ({why}): running under TCG emulation, slower"


# --- the command line ------------------------------------------------------------------------


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


def qemu_argv(
    qemu: str,
    accel: str,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    spec: RunSpec,
    disks: tuple[Disk, ...] = (),
    acpi: bool = False,
    memory: int | None = None,
) -> list[str]:
    """The QEMU command for one instance: microvm, no defaults, serial on stdio.

    acpi: for a generic kernel without virtio_mmio.device= parsing, which finds its devices
    in ACPI tables instead (the benchmarks' baseline kernel). memory: the guest's RAM
    (default: the spec's), rounded up to MiB.
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
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        cmdline,
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-device,rng=rng0",
    ]
    if spec.network != "none":
        argv += [
            "-netdev",
            f"user,id=net0,restrict=on{hostfwd(spec)}",
            "-device",
            # Direct mode: no checksum offload either way, so every frame the stack sees
            # through AF_PACKET carries complete checksums (and none it sends needs them).
            "virtio-net-device,netdev=net0"
            + (",csum=off,guest_csum=off" if spec.network == "direct" else ""),
        ]
    for i, disk in enumerate(disks):
        argv += [
            "-drive",
            f"file={disk.path},format=raw,if=none,id=vol{i},cache=writeback",
            "-device",
            f"virtio-blk-device,drive=vol{i}",
        ]
    return argv


# --- the console -----------------------------------------------------------------------------


class Console:
    """Splits the serial output into what the user sees and the runtime's lines for the host.

    The guest's tty turns each newline into CR LF; the user gets plain newlines back.
    """

    MARK = guest.MARK.encode()

    def __init__(self) -> None:
        self.ready = False
        self.status: int | None = None
        self.lines: deque[str] = deque(maxlen=50)  # the last lines shown, for error messages
        self._carry = b""
        self._partial = b""
        self._showing = True

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the serial port; return those to show."""
        data = self._carry + data
        self._carry = b""
        shown: list[bytes] = []
        self._showing = self.status is None  # after the status: the kernel's "reboot: ..."
        while data:
            at = data.find(self.MARK)
            if at < 0:
                if data.endswith(b"\r"):  # the LF of a CR LF may be in the next read
                    data, self._carry = data[:-1], b"\r"
                shown.append(data)
                break
            shown.append(data[:at])
            end = data.find(b"\n", at)
            if end < 0:
                self._carry = data[at:]
                break
            self._message(data[at + len(self.MARK) : end].rstrip(b"\r").decode(errors="replace"))
            data = data[end + 1 :]
            if self.status is not None:
                break
        out = b"".join(shown).replace(b"\r\n", b"\n")
        self._remember(out)
        return out if self._showing else b""

    def _message(self, line: str) -> None:
        if line == guest.READY:
            self.ready = True
        elif line.startswith(guest.STATUS_PREFIX):
            with contextlib.suppress(ValueError):
                self.status = int(line[len(guest.STATUS_PREFIX) :].strip())

    def _remember(self, out: bytes) -> None:
        text = self._partial + out
        *complete, self._partial = text.split(b"\n")
        for line in complete:
            self.lines.append(line.decode(errors="replace").rstrip("\r"))

    def crash_reason(self) -> str:
        """The line that says why the guest died (a cause before the panic it led to)."""
        lines = [*self.lines, self._partial.decode(errors="replace")]
        runtime = [line for line in lines if line.startswith("summon: ")]
        if runtime:  # the runtime's own one-line reason (it could not set the guest up)
            return runtime[-1].removeprefix("summon: ")
        for cause in CRASH_CAUSES:
            for line in lines:
                if cause in line:
                    said = line.strip().lstrip("[]0123456789. ").strip()
                    return said + CRASH_HINTS.get(cause, "")
        for line in reversed(lines):
            if line.strip():
                return f"last console line: {line.strip()}"
        return "the guest printed nothing"


def parse_exit_status(log: bytes) -> int | None:
    """The exit status a console log ends with, if the runtime got to write one."""
    console = Console()
    console.feed(log)
    return console.status


# --- the initrd ------------------------------------------------------------------------------


def run_archive(settings: dict[str, Any]) -> bytes:
    """The run's settings as a cpio archive holding /etc/summon/run.json."""
    from summon.build.boot import CpioWriter

    class _Buffer:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.parts.append(data)
            return len(data)

    buf = _Buffer()
    cpio = CpioWriter(buf)  # type: ignore[arg-type]
    data = json.dumps(settings, sort_keys=True).encode()
    cpio.add(guest.RUN_JSON.lstrip("/"), 0o100644, data)
    cpio.close()
    return b"".join(buf.parts)


def unpacked_initramfs(blob: Path, digest: str) -> Path:
    """The initramfs blob decompressed into the cache (checked against its digest on the way).

    The guest then only copies it: gunzip in an emulated CPU costs more than the transfer.
    """
    folder = paths.cache_dir() / "initramfs"
    dest = folder / f"{digest.split(':', 1)[1]}.cpio"
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    _verify_file(blob, digest)
    tmp = folder / f".{dest.name}.{os.getpid()}.tmp"
    try:
        with gzip.open(blob, "rb") as gz, tmp.open("wb") as out:
            shutil.copyfileobj(gz, out, 1 << 20)
        os.rename(tmp, dest)
    except (OSError, EOFError) as e:
        raise CorruptBlob(f"the initramfs blob {digest} cannot be read: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def boot_kernel(blob: Path, digest: str) -> Path:
    """What QEMU should load for the kernel blob: its ELF, when it has a PVH entry, else itself.

    A bzImage decompresses itself, which under TCG takes most of a second; QEMU starts the
    ELF inside it directly through its PVH entry point (CONFIG_PVH). The ELF is taken out of
    the bzImage once (its payload, xz or gzip, per the boot protocol header) into the cache.
    """
    _verify_file(blob, digest)
    folder = paths.cache_dir() / "kernel-elf"
    dest = folder / digest.split(":", 1)[1]
    if dest.is_file():
        return dest
    elf = bzimage_elf(blob.read_bytes())
    if elf is None or not has_pvh_note(elf):
        return blob
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}.{os.getpid()}.tmp"
    tmp.write_bytes(elf)
    tmp.rename(dest)
    return dest


def bzimage_elf(data: bytes) -> bytes | None:
    """The vmlinux ELF inside a bzImage (x86 boot protocol 2.08+), or None if not found."""
    import lzma
    import struct
    import zlib

    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return None
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start : start + length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
        else:
            return None
    except (lzma.LZMAError, zlib.error):
        return None
    return elf if elf.startswith(b"\x7fELF") else None


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit ELF has the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) QEMU needs."""
    import struct

    if elf[4:5] != b"\x02":  # ELFCLASS64
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and n_type == 18:
                return True
            pos += 12 + -(-namesz // 4) * 4 + -(-descsz // 4) * 4
    return False


def write_initrd(image: Path, settings: dict[str, Any], dest: Path, gzip_run: bool) -> None:
    """The file QEMU loads: the image's initramfs, then the run's settings as a second archive.

    The kernel unpacks archives one after the other, each compressed or not on its own.
    """
    run = run_archive(settings)
    tmp = dest.with_name(dest.name + ".tmp")
    with tmp.open("wb") as out, image.open("rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)
        out.write(gzip.compress(run, mtime=0) if gzip_run else run)
    tmp.rename(dest)


def kernel_footprint(kernel: Path) -> int:
    """The RAM a kernel takes before it runs anything: where its image ends in memory.

    For an ELF the end of its highest loadable segment; for a bzImage the boot protocol's
    init_size, above pref_address unless it is relocatable (0 if unknown).
    """
    import struct

    data = kernel.read_bytes()
    if data.startswith(b"\x7fELF") and data[4:5] == b"\x02":
        (phoff,) = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        end = 0
        for i in range(phnum):
            p_type, _f, _o, _v, p_paddr, _fs, p_memsz = struct.unpack_from(
                "<IIQQQQQ", data, phoff + i * phentsize
            )
            if p_type == 1:  # PT_LOAD
                end = max(end, p_paddr + p_memsz)
        return end
    if len(data) > 0x264 and data[0x202:0x206] == b"HdrS":
        (pref,) = struct.unpack_from("<Q", data, 0x258)
        (init_size,) = struct.unpack_from("<I", data, 0x260)
        relocatable = data[0x234] != 0  # then it may run below pref_address
        return int(init_size if relocatable else pref + init_size)
    return 0


def _verify_file(path: Path, digest: str) -> None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        raise CorruptBlob(f"blob {digest} is missing from the store") from None
    if "sha256:" + h.hexdigest() != digest:
        raise CorruptBlob(f"blob {digest} is corrupt: its content hashes to sha256:{h.hexdigest()}")


# --- the instance ----------------------------------------------------------------------------


class QemuInstance(Instance):
    """One QEMU process, its console reader, and its per-run files."""

    def __init__(self, spec: RunSpec, argv: list[str], output: IO[bytes] | None) -> None:
        self.spec = spec
        self.argv = argv
        self.console = Console()
        self.log_path = spec.state_dir / "console.log"
        self.error_path = spec.state_dir / "qemu.err"
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.RLock()
        self._killed = False
        self._released = False
        self._reported = False
        self._changed = threading.Condition()

    # --- starting ---

    def _start(self, boot_timeout: float) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent() -> None:
            # SIGKILL QEMU when the thread that started it dies, even by SIGKILL.
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

        with self.error_path.open("wb") as err:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                # Its own session: a Ctrl-C at the terminal reaches summon, which decides.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + boot_timeout
        with self._changed:
            while not self.console.ready:
                if self._proc.poll() is not None:
                    self._reader.join(5)
                    if self.console.ready:
                        break
                    self._reported = True  # this error says it; wait() must not again
                    raise SummonError(
                        f"the VM of {self.spec.image} stopped before the app started: "
                        f"{self._failure()} (console log: {self.log_path})"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    self._reported = True
                    raise SummonError(
                        f"the VM of {self.spec.image} did not come up within "
                        f"{boot_timeout:.0f}s: {self.console.crash_reason()} "
                        f"(console log: {self.log_path})"
                    )
                self._changed.wait(min(left, 0.1))

    def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with self.log_path.open("wb") as log:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write(data)
                log.flush()
                shown = self.console.feed(data)
                if shown and self._output is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._output.write(shown)
                        self._output.flush()
                with self._changed:
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _failure(self) -> str:
        """Why the VM ended without an exit status, in one phrase."""
        assert self._proc is not None
        reason = self.console.crash_reason()
        code = self._proc.returncode
        if code not in (0, None) and not self._killed:
            try:
                lines = self.error_path.read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            qemu_said = lines[-1] if lines else ""
            return f"QEMU exited with status {code}" + (f": {qemu_said}" if qemu_said else "")
        return reason

    # --- Instance ---

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def wait(self, timeout: float | None = None) -> int | None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._release()
        return self._status()

    def _status(self) -> int:
        status = self.console.status
        if status is not None:
            return status
        if self._killed:
            return 128 + signal.SIGKILL
        if not self._reported:
            self._reported = True
            sys.stderr.write(
                f"summon: the VM of {self.spec.image} stopped without an exit status: "
                f"{self._failure()} (console log: {self.log_path})\n"
            )
            sys.stderr.flush()
        return 1

    def stop(self, grace: float = 10.0) -> int:
        with self._lock:
            proc = self._proc
            try:
                if proc is not None and proc.poll() is None:
                    deadline = time.monotonic() + grace
                    while proc.poll() is None and time.monotonic() < deadline:
                        self._send(_CTRL_C)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(min(STOP_RESEND, max(0.0, deadline - time.monotonic())))
            finally:
                self._kill()
                self._release()
            if proc is None:
                return 128 + signal.SIGKILL
            return self._status()

    def _send(self, data: bytes) -> None:
        assert self._proc is not None
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()

    def _release(self) -> None:
        """Close the pipes, finish reading the console, drop per-run files. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._kill()
            if self._reader is not None:
                self._reader.join(10)
            if self._proc is not None:
                for pipe in (self._proc.stdin, self._proc.stdout):
                    with contextlib.suppress(OSError, ValueError):
                        if pipe is not None:
                            pipe.close()
            (self.spec.state_dir / "initrd").unlink(missing_ok=True)

    def stats(self) -> Stats:
        return process_stats(self.pid)


# --- the target ------------------------------------------------------------------------------


class QemuTarget(Target):
    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = "a QEMU microVM with a kernel built for the image"

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

        output: where the console goes (default: summon's stdout); store: the image store
        (default: the user's); extra_kernel_args: appended after rdinit=.

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

    def start(self, spec: RunSpec) -> QemuInstance:
        from summon.build.boot import ensure_boot_artifact
        from summon.store import Store
        from summon.store.image import Image

        qemu = shutil.which(QEMU)
        if qemu is None:
            raise TargetUnavailable(QEMU_MISSING)
        accel, notice = choose_accel(self.accel)
        if notice:
            self.notice(notice)
        store = self.store or Store(paths.store_dir())
        image, boot = ensure_boot_artifact(Image.open(store, spec.image), self.step)
        fragments = boot.config.get("kernel", {}).get("fragments") or []
        disks = self._disks(spec, fragments, image.ref)
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        kernel = boot_kernel(store.blob_path(boot.kernel.digest), boot.kernel.digest)
        digest = boot.initramfs.digest
        cpio = unpacked_initramfs(store.blob_path(digest), digest)
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
        write_initrd(cpio if raw else store.blob_path(digest), settings, initrd, gzip_run=not raw)
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
        output = self.output if self.output is not None else sys.stdout.buffer
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


def default_target() -> tuple[str, str]:
    """(target, why) for `summon run` without --target: qemu only where KVM truly works."""
    ok, why = kvm_status()
    if ok and shutil.which(QEMU):
        return "qemu", "KVM works here"
    return "sandbox", f"no usable KVM for qemu: {why}" if not ok else f"{QEMU} is not installed"
