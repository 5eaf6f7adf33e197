"""The runtime's part inside a summon microVM: set the guest up before the app, power off after.

Only PID 1 of an image booted by the qemu target runs this (summon.vm=1 on the kernel
command line); init.py has mounted /proc, /dev and /tmp by then.

setup(), in order:
1. the console: ttyS0 (fd 0) becomes PID 1's controlling terminal, echo off, so the byte
   Ctrl-C the host writes to the serial line arrives as SIGINT, which the runtime already
   treats as a request for a clean shutdown; NOFLSH keeps the app's last output from being
   flushed away with it. Then the control port, ttyS1 (a second UART, on the host's
   socketpair): the runtime's lines for the host and the host's resume message. The app's
   stdout and stderr (fds 1 and 2, /dev/console, /dev/tty) are all ttyS0, so nothing the app
   writes, by any path, reaches the control port or can pass for one of its lines;
2. the run's settings, /etc/summon/run.json, which the host appends to the initramfs as a
   second cpio archive: the environment, the volumes, kernel modules (generic kernels only),
   the app's arguments when the run gives some (`args`, read by init.py);
3. the network from ip= on the command line, when the kernel's own autoconfiguration did not
   apply it (a kernel without CONFIG_IP_PNP); or, in direct mode, the NIC up with no address;
4. entropy: bytes from /dev/hwrng (virtio-rng) credited to the kernel's pool (RNDADDENTROPY),
   so nothing in the app waits for the pool to fill;
5. volumes: each ext4 disk (/dev/vd*) mounted at its path, found by its file system UUID;
6. / remounted read-only, as the image is everywhere else: only /tmp and the volumes are
   writable;
7. READY on the control port: the host's sign that the guest is up.

The snapshot point (docs/qemu.md, "Snapshots"): when run.json says "snapshot", the host will
take a snapshot of the guest once the app is up. watch_stack() makes the app's Stack device
call app_up() when it first listens (a TCP server or a UDP port), which writes APP_UP on the
control port and blocks PID 1 reading it until the host's resume message. The host
takes the snapshot meanwhile (no TCP packet has reached the guest by then: the host adds its
port forwards only after the resume), and sends the resume message to this guest and to
every one later restored from the snapshot. resume() then corrects the clock from the host's
timestamp, reseeds the kernel's random pool (bytes from /dev/hwrng credited, the host's bytes
mixed in, RNDRESEEDCRNG so the kernel's generators rekey now rather than within a minute),
reseeds what the stdlib and registered code drew from it (summon.runtime.resume), and
acknowledges with RESUMED; the host lets the first connection through only after that line.
Everything on that path avoids ctypes and imports nothing new: it runs after the seal.

finish(status, failure) writes the runtime's own reason when it failed (FAILED_PREFIX: the
host's word on why a guest ended, which nothing the app prints on the console can replace),
then STATUS_PREFIX + status on the control port, unmounts the volumes,
syncs, and calls reboot(2), which with reboot=t triple-faults the CPU: QEMU's microvm has no
power-off device, and -no-reboot makes QEMU exit on it.
"""

from __future__ import annotations

import os
import sys

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes as _ctypes
    from collections.abc import Awaitable, Callable
    from typing import Any, TypeVar

    _Stack = TypeVar("_Stack")

# Lines the host reads off the control port (summon.targets.qemu.serial), ttyS1: only the
# runtime writes there. Each is MARK, the line, a newline, in one write(2), which the tty
# layer never interleaves with another.
CONTROL_PORT = "/dev/ttyS1"
# The image config label dev.summon.vm-control (summon.targets.base.VM_CONTROL_LABEL): 2, the
# control port; 1, before it, the runtime's lines went out on the console.
CONTROL_VERSION = 2
MARK = "\x1e"  # ASCII record separator: starts each line
READY = "summon-vm: up"
STATUS_PREFIX = "summon-exit-status: "
FAILED_PREFIX = "summon-vm: failed "  # + the runtime's one-line reason, before the status
APP_UP = "summon-vm: app-up"  # + " PORT/PROTO": the snapshot point, the app listens there
RESUMED = "summon-vm: resumed"  # the resume message is processed: traffic may come
# What the host writes on the control port after a snapshot point (a line: the tty is in
# canonical mode): MARK RESUME_PREFIX <CLOCK_REALTIME in ns> <host entropy, hex>.
RESUME_PREFIX = "summon-resume "
RESUME_ENTROPY = 32  # bytes of host entropy in the message
RUN_JSON = "/etc/summon/run.json"
MAX_FAILURE = 1000  # characters of a failure's line: far below the host's MAX_LINE

# ioctl numbers and flags, from the kernel's uapi headers (x86_64).
TCGETS, TCSETS, TIOCSCTTY = 0x5401, 0x5402, 0x540E
ECHO, ECHOCTL, ISIG, NOFLSH = 0o10, 0o1000, 0o1, 0o200
RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2])
RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07): rekey the kernel's generators from the pool now
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK = 0x8913, 0x8914, 0x8916, 0x891C
IFF_UP = 0x1
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_NOATIME = 1, 2, 4, 32, 1024
SYS_FINIT_MODULE = 313
LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2 = 0xFEE1DEAD, 672274793
LINUX_REBOOT_CMD_RESTART = 0x01234567
EXT4_MAGIC_OFFSET, EXT4_UUID_OFFSET = 1024 + 56, 1024 + 104

active = False  # setup() ran: init's main() hands the exit status to finish()
_snapshot_point = False  # run.json asked for a snapshot point not reached yet
_libc: _ctypes.CDLL | None = None
_control = -1  # the control port's fd (open_control)
_mounted: list[str] = []  # volume mount points, unmounted by finish()
args: list[str] | None = None  # the run's arguments for the app (summon run IMAGE ARGS...)


class SetupError(Exception):
    """The guest cannot be set up as the host asked; the VM stops with status 1."""


def is_vm(root: str = "/") -> bool:
    """Whether this process is the init of a summon VM (summon.vm=1 on the command line)."""
    try:
        with open(root.rstrip("/") + "/proc/cmdline") as f:
            return "summon.vm=1" in f.read().split()
    except OSError:
        return False


def setup() -> None:
    """Everything between the kernel handing over and the app starting (see the docstring)."""
    global active, _snapshot_point, args
    active = True
    with open("/proc/cmdline") as f:
        cmdline = f.read().split()
    take_console()
    open_control()
    settings = read_settings(RUN_JSON)
    env = settings.get("env")
    if isinstance(env, dict):
        # The host's environment is the whole environment, as in the other targets; the
        # kernel's own HOME and TERM for init are not the app's.
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
    for module in _list(settings.get("modules")):
        load_module(str(module), cmdline)
    configure_network(cmdline)
    for name in _list(settings.get("up")):
        bring_up(str(name))
    seed_entropy()
    for volume in _list(settings.get("volumes")):
        if isinstance(volume, dict):
            mount_volume(str(volume.get("uuid", "")), str(volume.get("path", "")))
    _mount(b"none", "/", None, MS_REMOUNT | MS_RDONLY, None, fatal=False)
    _snapshot_point = settings.get("snapshot") is True
    given = settings.get("args")
    args = [str(a) for a in given] if isinstance(given, list) else None
    control_line(READY)


def finish(status: int, failure: str = "") -> None:
    """Report the runtime's failure (the line init said, if any) and the exit status on the
    control port and reset the VM. Does not return."""
    exc = sys.exception()
    if isinstance(exc, SystemExit):  # a stop signal before the app started: a clean stop
        status = exc.code if isinstance(exc.code, int) else 0
    elif exc is not None:
        # The runtime itself failed; the built-in hook prints it without importing traceback.
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
        status = 1
        failure = f"the runtime failed: {type(exc).__name__}: {exc}"
    if failure:
        control_line(FAILED_PREFIX + " ".join(failure.split())[:MAX_FAILURE])
    control_line(f"{STATUS_PREFIX}{status}")
    for path in reversed(_mounted):
        _libc_call().umount(path.encode())
    os.sync()
    _libc_call().reboot(LINUX_REBOOT_CMD_RESTART)
    # Reached only if the kernel refused: exiting makes PID 1 die, and panic=-1 resets.
    os._exit(status)


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def take_console() -> None:
    """Make fd 0 (the console, ttyS0) the controlling tty: Ctrl-C on it becomes SIGINT."""
    import fcntl

    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    try:
        fcntl.ioctl(0, TIOCSCTTY, 1)
        attrs = bytearray(fcntl.ioctl(0, TCGETS, bytes(36)))  # the kernel's struct termios
        lflag = int.from_bytes(attrs[12:16], "little")
        lflag = (lflag | ISIG | NOFLSH) & ~(ECHO | ECHOCTL)
        attrs[12:16] = lflag.to_bytes(4, "little")
        fcntl.ioctl(0, TCSETS, bytes(attrs))
    except OSError as e:
        _say(f"the console is not a terminal ({e.strerror}); the host can only kill this VM")


def open_control() -> None:
    """Open the control port (ttyS1): not a controlling tty, echo off, not inherited.

    SetupError without it: the host would wait for a READY that cannot come, while this
    way the VM stops at once and the console says why.
    """
    global _control
    import fcntl

    try:
        fd = os.open(CONTROL_PORT, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        raise SetupError(f"cannot open the control port {CONTROL_PORT}: {e.strerror}") from None
    try:
        attrs = bytearray(fcntl.ioctl(fd, TCGETS, bytes(36)))
        lflag = int.from_bytes(attrs[12:16], "little") & ~(ECHO | ECHOCTL | ISIG)
        attrs[12:16] = lflag.to_bytes(4, "little")
        fcntl.ioctl(fd, TCSETS, bytes(attrs))
    except OSError as e:
        os.close(fd)
        raise SetupError(f"the control port {CONTROL_PORT} is no UART: {e.strerror}") from None
    _control = fd


def read_settings(path: str) -> dict[str, object]:
    """The run's settings the host put in, or {} when it put none."""
    from summon.runtime.config import parse_json

    try:
        with open(path, encoding="utf-8") as f:
            doc = parse_json(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict):
        raise SetupError(f"{path} is not a JSON object")
    return doc


def load_module(path: str, cmdline: list[str]) -> None:
    """Load a kernel module from the image (for a generic kernel that has virtio as modules).

    Its parameters come from the command line (name.param=value), as modprobe would pass
    them: microvm names its virtio-mmio devices there (virtio_mmio.device=...).
    """
    name = os.path.basename(path).split(".", 1)[0].replace("-", "_")  # virtio-rng: virtio_rng
    prefixes = (name + ".", name.replace("_", "-") + ".")
    params = " ".join(arg.split(".", 1)[1] for arg in cmdline if arg.startswith(prefixes))
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc_call().syscall(SYS_FINIT_MODULE, fd, params.encode(), 0) != 0:
            err = _errno()
            if err != 17:  # EEXIST: built in or loaded already
                raise SetupError(f"cannot load kernel module {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def parse_ip(cmdline: list[str]) -> tuple[str, str, str] | None:
    """(address, netmask, device) from ip=CLIENT:SERVER:GW:NETMASK:HOST:DEVICE:..., if any."""
    for arg in cmdline:
        if arg.startswith("ip="):
            fields = arg[3:].split(":")
            fields += [""] * (7 - len(fields))
            if fields[0] and fields[3]:
                return fields[0], fields[3], fields[5] or "eth0"
    return None


def configure_network(cmdline: list[str]) -> None:
    """Apply ip= unless the kernel did (its IP autoconfig leaves /proc/net/pnp behind)."""
    wanted = parse_ip(cmdline)
    if wanted is None or os.path.exists("/proc/net/pnp"):
        return
    import _socket
    import fcntl

    address, netmask, device = wanted
    # No default route: the host's forwards arrive from the on-link gateway, and a VM
    # reaches nothing beyond it (QEMU's user network runs with restrict=on).
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        for name in ("lo", device):
            ifreq = name.encode().ljust(16, b"\0") + bytes(24)
            flags = int.from_bytes(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq)[16:18], "little")
            if name == device:
                fcntl.ioctl(sock.fileno(), SIOCSIFADDR, _ifreq_addr(name, address))
                fcntl.ioctl(sock.fileno(), SIOCSIFNETMASK, _ifreq_addr(name, netmask))
            up = ifreq[:16] + (flags | IFF_UP).to_bytes(2, "little") + bytes(22)
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, up)
    except OSError as e:
        raise SetupError(f"cannot configure {device} as {address}: {e.strerror}") from None
    finally:
        sock.close()


def bring_up(name: str) -> None:
    """Set a NIC up without an address: a raw link for summon's own stack (direct mode)."""
    import _socket
    import fcntl

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)  # any socket takes the ioctls
    try:
        ifreq = name.encode().ljust(16, b"\0") + bytes(24)
        flags = int.from_bytes(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq)[16:18], "little")
        up = ifreq[:16] + (flags | IFF_UP).to_bytes(2, "little") + bytes(22)
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, up)
    except OSError as e:
        raise SetupError(f"cannot bring {name} up: {e.strerror}") from None
    finally:
        sock.close()


def _ifreq_addr(name: str, address: str) -> bytes:
    import _socket

    # struct sockaddr_in: family (host order), port, address, padding.
    sin = (2).to_bytes(2, "little") + bytes(2) + _socket.inet_aton(address) + bytes(8)
    return name.encode().ljust(16, b"\0") + sin + bytes(8)


def seed_entropy(nbytes: int = 64) -> None:
    """Credit bytes from the virtio-rng to the kernel's random pool."""
    try:
        fd = os.open("/dev/hwrng", os.O_RDONLY)
    except OSError:
        return  # no hwrng support: the kernel's own jitter entropy will do, more slowly
    try:
        data = os.read(fd, nbytes)
    except OSError:
        return  # ENODEV: the framework is there, but no virtio-rng device is attached
    finally:
        os.close(fd)
    import fcntl

    info = (8 * len(data)).to_bytes(4, "little") + len(data).to_bytes(4, "little") + data
    fd = os.open("/dev/random", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, RNDADDENTROPY, info)
    except OSError as e:
        _say(f"cannot seed the random pool: {e.strerror}")
    finally:
        os.close(fd)


def watch_stack(stack: _Stack) -> _Stack:
    """The app's Stack device, made to reach the snapshot point when it first listens.

    A no-op unless the host asked for a snapshot. The first start_server() or open_udp()
    that returns calls app_up(); later ones do nothing more.
    """
    if not _snapshot_point:
        return stack
    for name, proto in (("start_server", "tcp"), ("open_udp", "udp")):
        original = getattr(stack, name, None)
        if original is not None:
            setattr(stack, name, _listening(original, proto))
    return stack


def _listening(original: Callable[..., Awaitable[Any]], proto: str) -> Callable[..., Any]:
    async def listen_then_snapshot(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        app_up(f"{getattr(result, 'port', 0)}/{proto}")
        return result

    return listen_then_snapshot


def app_up(what: str) -> None:
    """The snapshot point, once: say APP_UP, wait for the host's resume message, resume.

    `what` names what listens ("80/tcp"). Blocks the whole process (PID 1 is the app) while
    the host takes the snapshot; the app goes on after resume() as if nothing happened.
    """
    global _snapshot_point
    if not _snapshot_point:
        return
    _snapshot_point = False
    # Bound before the point: what runs after the seal imports nothing new.
    import fcntl  # noqa: F401
    import time  # noqa: F401

    from summon.runtime import resume as _resume  # noqa: F401

    control_line(f"{APP_UP} {what}")
    message = read_resume_message(_control)
    if message is None:
        _say("the host sent no resume message; going on without fresh randomness")
        return
    resume(*message)


def read_resume_message(fd: int) -> tuple[int, bytes] | None:
    """(host clock in ns, host entropy) from the first resume line on fd; None at its end.

    Other lines are skipped: nothing else should come, but a stray line must not be taken
    for the message.
    """
    pending = b""
    prefix = (MARK + RESUME_PREFIX).encode()
    while True:
        data = os.read(fd, 4096)
        if not data:
            return None
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            at = line.find(prefix)
            if at >= 0:
                parsed = parse_resume(line[at + len(prefix) :].rstrip(b"\r"))
                if parsed is not None:
                    return parsed


def parse_resume(body: bytes) -> tuple[int, bytes] | None:
    """b"<ns> <hex>" -> (ns, entropy), or None if it is not that."""
    parts = body.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    try:
        entropy = bytes.fromhex(parts[1].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if len(entropy) < RESUME_ENTROPY // 2:
        return None
    return int(parts[0]), entropy


def resume(clock_ns: int, entropy: bytes) -> None:
    """Run on after a snapshot: clock, kernel RNG, the process's own random state; RESUMED."""
    import time

    from summon.runtime import resume as _resume

    try:
        time.clock_settime_ns(time.CLOCK_REALTIME, clock_ns)  # CLOCK_MONOTONIC stays
    except OSError as e:
        _say(f"cannot set the clock after a restore: {e.strerror}")
    reseed_kernel(entropy)
    for line in _resume.resumed():
        _say(line)
    control_line(RESUMED)


def reseed_kernel(host_entropy: bytes) -> None:
    """Give the kernel's pool new entropy and make its generators rekey from it now.

    Without RNDRESEEDCRNG the kernel would go on from the snapshot's keys until its next
    scheduled reseed (up to a minute), so siblings would draw the same bytes meanwhile.
    """
    import fcntl

    try:
        fd = os.open("/dev/random", os.O_WRONLY)
    except OSError as e:
        _say(f"cannot reseed the random pool: {e.strerror}")
        return
    try:
        os.write(fd, host_entropy)  # mixed in, not credited: it crossed the control port
        seed_entropy()  # credited: the virtio-rng device
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    except OSError as e:
        _say(f"cannot reseed the random pool: {e.strerror}")
    finally:
        os.close(fd)


def ext4_uuid(device: str) -> str | None:
    """The file system UUID of an ext4 device, as 32 hex digits, or None if not ext4."""
    try:
        with open(device, "rb") as f:
            head = f.read(EXT4_UUID_OFFSET + 16)
    except OSError:
        return None
    if head[EXT4_MAGIC_OFFSET : EXT4_MAGIC_OFFSET + 2] != b"\x53\xef":
        return None
    return head[EXT4_UUID_OFFSET : EXT4_UUID_OFFSET + 16].hex()


def mount_volume(uuid: str, path: str) -> None:
    """Mount the disk whose ext4 UUID is `uuid` at `path`."""
    for name in sorted(os.listdir("/dev")):
        if name.startswith("vd") and name[2:].isalpha():
            device = "/dev/" + name
            if ext4_uuid(device) == uuid.replace("-", "").lower():
                os.makedirs(path, exist_ok=True)
                _mount(device.encode(), path, b"ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, None)
                _mounted.append(path)
                return
    raise SetupError(f"the volume for {path} (ext4 UUID {uuid}) is not attached to this VM")


def _mount(
    source: bytes,
    target: str,
    fstype: bytes | None,
    flags: int,
    data: bytes | None,
    fatal: bool = True,
) -> None:
    if _libc_call().mount(source, target.encode(), fstype, flags, data) != 0:
        reason = os.strerror(_errno())
        if fatal:
            raise SetupError(f"cannot mount {source.decode()} on {target}: {reason}")
        _say(f"cannot remount {target} ({reason}); going on")


def _libc_call() -> _ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes  # only in a VM: ctypes and libffi cost every other start

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = (
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        )
        _libc.umount.argtypes = (ctypes.c_char_p,)
        _libc.syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        _libc.reboot.argtypes = (ctypes.c_int,)
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def control_line(line: str) -> None:
    """A line for the host on the control port; nothing if the port is not open.

    One write(2) of a few dozen bytes: the tty layer takes it whole (its buffer holds only
    the runtime's lines), and another thread's line goes before or after it, never inside.
    """
    data = f"{MARK}{line}\n".encode()
    while data and _control >= 0:
        try:
            data = data[os.write(_control, data) :]
        except OSError:
            return  # the host is gone


def _say(line: str) -> None:
    try:
        sys.stderr.write(f"summon: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
