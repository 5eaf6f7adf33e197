"""The sandbox's verified root: an image's erofs blob, hashed, then mounted from the same fd.

The blob is opened once; its whole content is hashed through that descriptor and compared with
the digest the image index names; a loop device is then attached to the SAME descriptor
(LOOP_CONFIGURE, read-only, autoclear) and mounted read-only, nodev, nosuid at
/run/summon/rootfs/<blob hex> (store/rootfs_artifact.MOUNT_ROOT). So what the app runs is the
content that was hashed: renaming another file over the blob afterwards changes nothing. The
mount is made in the caller's mount namespace (the CLI's or the gateway's, i.e. the host's)
and reused by every later start of any instance of an image with that root filesystem, until
the host reboots, `summon rmi` removes it, or a sweep finds no image needs it any more
(rootfs_artifact.sweep_mounts: at each new mount and each `summon rmi`).

A write into the blob's own inode after it was hashed would reach the mount, so each reuse
checks, in a few system calls, that the loop device still reads that inode, read-only, and
that the inode's ctime (which every write moves, and no one can set back) is the one recorded
when it was hashed; if not, the old mount is detached and the blob hashed and mounted again.
The image's layer blob is held to the same record (hashed when first mounted, again whenever
its inode changed), so a store whose layer was damaged is refused even while a mount exists.

Mountinfo inside the container shows /dev/loopN, never a host path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from summon.errors import CorruptBlob, UserError
from summon.store.layout import Descriptor, Store
from summon.store.rootfs_artifact import MOUNT_ROOT, mount_point, sweep_mounts

# <linux/loop.h>
LOOP_CONFIGURE = 0x4C0A
LOOP_GET_STATUS64 = 0x4C05
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64 each),
# lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32 each), lo_file_name[64],
# lo_crypt_name[64], lo_encrypt_key[32], lo_init[2] (u64): 232 bytes.
_INFO = struct.Struct("=5Q4I64s64s32s2Q")
# struct loop_config: fd, block_size (u32), the loop_info64, 8 reserved u64: 304 bytes.
_CONFIG = struct.Struct(f"=II{_INFO.size}s64x")
LOOP_MAJOR = 7
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_ATTACH_TRIES = 8  # another process may take the free loop device between asking and using


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One mounter at a time on this host (two `summon run`s of one new image, say)."""
    MOUNT_ROOT.mkdir(parents=True, exist_ok=True)
    # Traversable by anyone: the container's root, an unprivileged uid on the host, bind
    # mounts the root from here inside its user namespace.
    for folder in (MOUNT_ROOT.parent, MOUNT_ROOT):
        folder.chmod(0o755)
    with open(MOUNT_ROOT / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def verified_root(
    store: Store,
    erofs: Descriptor,
    layer: Descriptor,
    step: Callable[[str], None] = lambda message: None,
) -> Path:
    """The mount point of the erofs blob, mounted now if it is not (or no longer) verified;
    layer is the image's layer blob, checked too (see the module's docstring). step hears
    of the work when there is some (not when the mount is reused)."""
    where = mount_point(erofs)
    record = where.with_suffix(".verified")
    blob = store.blob_path(erofs.digest)
    with _locked():
        seen = _read_record(record)
        before = json.dumps(seen, sort_keys=True)
        if not _still_verified(where, seen.get("erofs"), blob):
            if os.path.ismount(where):
                # Mounted, but its blob changed since it was hashed (or nobody knows): detach
                # it (running instances keep their view) and verify afresh.
                _check(_libc().umount2(os.fsencode(where), _MNT_DETACH), f"umount {where}")
            step(f"verifying its root filesystem ({erofs.size / 1e6:.1f} MB) and mounting it")
            sweep_mounts()  # (mounting is when one more would count: see sweep_mounts)
            seen = {"erofs": _mount(erofs, blob, where), "layers": {}}
        layers = seen.setdefault("layers", {})
        try:
            now = _identity(os.stat(store.blob_path(layer.digest)))
        except FileNotFoundError:
            raise CorruptBlob(f"blob {layer.digest} is missing from the store") from None
        if layers.get(layer.digest) != now:
            store.verify(layer)  # raises CorruptBlob
            if _identity(os.stat(store.blob_path(layer.digest))) != now:
                raise CorruptBlob(f"blob {layer.digest} changed while it was being verified")
            layers[layer.digest] = now
        if json.dumps(seen, sort_keys=True) != before:
            tmp = record.with_name(f".{record.name}.{os.getpid()}")
            tmp.write_text(json.dumps(seen, sort_keys=True))
            tmp.replace(record)
    return where


def _read_record(record: Path) -> dict[str, Any]:
    try:
        doc = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _still_verified(where: Path, seen: Any, blob: Path) -> bool:
    try:
        mounted = os.stat(where)
        now = os.stat(blob)
    except OSError:
        return False
    if os.major(mounted.st_dev) != LOOP_MAJOR or not os.path.ismount(where):
        return False
    info = _loop_status(_device_path(mounted.st_dev))
    if info is None:
        return False
    device, inode, _rdev, offset, sizelimit, _n, _e, _k, flags = info
    return (
        (device, inode) == (now.st_dev, now.st_ino)
        and (offset, sizelimit) == (0, 0)
        and flags & LO_FLAGS_READ_ONLY != 0
        and seen == _identity(now)
    )


def _device_path(dev: int) -> str:
    """/dev/loopN of a loop device number (N is not the minor where the module has max_part)."""
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    with contextlib.suppress(OSError):
        return f"/dev/{sysfs.resolve(strict=True).name}"
    return f"/dev/loop{os.minor(dev)}"


def _identity(st: os.stat_result) -> dict[str, int]:
    """What must not change in the blob's inode between hashing and any later use."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "ctime_ns": st.st_ctime_ns}


def _loop_status(device: str) -> tuple[int, ...] | None:
    """The loop device's lo_device .. lo_flags (the numbers of its loop_info64)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_INFO.size))
    except OSError:
        return None
    finally:
        os.close(fd)
    return tuple(int(x) for x in _INFO.unpack(raw)[:9])


def _mount(erofs: Descriptor, blob: Path, where: Path) -> dict[str, int]:
    """Hash the blob through one fd and mount that fd; return the identity it was hashed at."""
    try:
        fd = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CorruptBlob(f"blob {erofs.digest} is missing from the store") from None
    try:
        before = os.fstat(fd)
        digest = _hash_fd(fd)
        if digest != erofs.digest or before.st_size != erofs.size:
            raise CorruptBlob(
                f"the image's root filesystem blob {erofs.digest} is corrupt: its content "
                f"hashes to {digest} (refused by the verified run path)"
            )
        if os.fstat(fd).st_ctime_ns != before.st_ctime_ns:
            raise CorruptBlob(f"blob {erofs.digest} changed while it was being verified")
        where.mkdir(mode=0o755, exist_ok=True)
        loop_fd, device = _attach(fd)
        try:
            flags = _MS_RDONLY | _MS_NODEV | _MS_NOSUID
            _check(
                _libc().mount(
                    device.encode(),
                    os.fsencode(where),
                    b"erofs",
                    flags,
                    b"cache_strategy=readaround",
                ),
                f"mount {device} on {where}",
            )
        finally:
            # Autoclear: from here the mount holds the device; it goes with the last unmount.
            os.close(loop_fd)
        return _identity(before)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            raise UserError(
                f"cannot mount the image's verified root filesystem: {e.strerror}; the sandbox "
                "needs root"
            ) from None
        raise
    finally:
        os.close(fd)


def _hash_fd(fd: int) -> str:
    """sha256 of the whole file behind fd, read through fd itself."""
    h = hashlib.sha256()
    view = memoryview(bytearray(1 << 20))
    offset = 0
    while n := os.preadv(fd, [view], offset):
        h.update(view[:n])
        offset += n
    return "sha256:" + h.hexdigest()


def _attach(fd: int) -> tuple[int, str]:
    """A free loop device attached read-only (autoclear) to the file behind fd."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_ATTACH_TRIES):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            device = f"/dev/loop{number}"
            loop_fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            info = _INFO.pack(
                0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0
            )
            try:
                fcntl.ioctl(loop_fd, LOOP_CONFIGURE, _CONFIG.pack(fd, 0, info))
            except OSError as e:
                os.close(loop_fd)
                if e.errno == errno.EBUSY:
                    continue  # taken by someone else since LOOP_CTL_GET_FREE
                raise
            return loop_fd, device
    finally:
        os.close(control)
    raise OSError(errno.EBUSY, "no free loop device")


def is_verified_mount(path: Path) -> bool:
    """Whether path is where this module mounts verified roots (not a folder given by hand)."""
    return path.parent == MOUNT_ROOT


# --- a root folder given by hand (a RunSpec not made from an image: tests, tools) -------------

BIND_ROOT = Path("/run/summon/binds")
_MS_BIND = 0x1000
_MS_REMOUNT = 0x20


def bind_folder(folder: Path, name: str) -> Path:
    """folder bound read-only at BIND_ROOT/name, where the container's root (an unprivileged
    host uid) can reach it whatever the modes of folder's parents are."""
    BIND_ROOT.mkdir(parents=True, exist_ok=True)
    for parent in (BIND_ROOT.parent, BIND_ROOT):
        parent.chmod(0o755)
    where = BIND_ROOT / name
    unbind(where)
    where.mkdir(mode=0o755)
    libc = _libc()
    _check(libc.mount(os.fsencode(folder), os.fsencode(where), None, _MS_BIND, None), "bind")
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
    try:
        _check(libc.mount(None, os.fsencode(where), None, flags, None), "remount read-only")
    except OSError:
        unbind(where)
        raise
    return where


def unbind(where: Path) -> None:
    """Undo bind_folder (idempotent)."""
    # Not os.path.ismount: a bind of a folder on the same filesystem looks like no mount to
    # it. umount2 says EINVAL once nothing is mounted there.
    for _ in range(8):
        if _libc().umount2(os.fsencode(where), _MNT_DETACH) != 0:
            break
    with contextlib.suppress(OSError):
        where.rmdir()
