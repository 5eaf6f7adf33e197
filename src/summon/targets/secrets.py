"""Delivering a run's secrets (--secret NAME=FILE) to an instance without touching the image.

Each target puts them where the runtime's Secrets device reads them (/run/secrets in the
instance, or SUMMON_SECRETS): the sandbox on a small tmpfs mounted read-only into the
container, the unix target in a private folder on /dev/shm, a VM in its per-run initramfs
piece (RAM only). Never on a disk the instance's image lives on, never in a layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets as token
import shutil
from pathlib import Path

from summon.errors import UserError
from summon.targets.base import MAX_SECRET_BYTES, SecretFile

IMAGE_PATH = "/run/secrets"  # summon.runtime.injection.SECRETS_PATH
SHM = Path("/dev/shm")
_LIBC = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MNT_DETACH = 2


def parse(value: str) -> SecretFile:
    """--secret NAME=FILE, checked: a valid name, a readable file of at most 1 MiB."""
    from summon.secrets import check_name

    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--secret {value}: expected NAME=FILE, such as tls.key=./server.key")
    try:
        check_name(name)
    except ValueError as e:
        raise UserError(f"--secret {value}: {e}") from None
    secret = SecretFile(name, Path(path).resolve())
    secret.read()  # unreadable or too big: one line now, not at the instance's start
    return secret


def missing(declared: list[str], given: tuple[SecretFile, ...]) -> list[str]:
    """The secrets an image declares (manifest `secrets`, TLS keys) that a run does not give."""
    names = {s.name for s in given}
    return [n for n in declared if n not in names]


def write_all(folder: Path, secrets: tuple[SecretFile, ...], mode: int = 0o444) -> None:
    """Write each secret whole into folder (temporary name, rename), readable as mode says."""
    for secret in secrets:
        data = secret.read()
        tmp = folder / f".{secret.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, folder / secret.name)


def private_folder(instance: str, secrets: tuple[SecretFile, ...]) -> Path:
    """A 0700 folder on /dev/shm (RAM) holding the secrets, for a host-process instance."""
    base = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None
    if base is None:
        raise UserError("--secret needs /dev/shm (a tmpfs) to keep secrets off the disk")
    folder = base / f"summon-secrets-{instance}-{token.token_hex(6)}"
    folder.mkdir(mode=0o700)
    try:
        write_all(folder, secrets, 0o400)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def mount_tmpfs(folder: Path, secrets: tuple[SecretFile, ...]) -> None:
    """A small tmpfs at folder holding the secrets, then made read-only (root only)."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    size = sum(len(s.read()) for s in secrets) + 64 * 1024
    size = min(size, len(secrets) * MAX_SECRET_BYTES + 64 * 1024)
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    options = f"size={size},mode=0755".encode()
    if _LIBC.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise UserError(f"cannot mount a tmpfs for the secrets at {folder}: {os.strerror(err)}")
    try:
        write_all(folder, secrets)
        remount = flags | _MS_REMOUNT | _MS_RDONLY
        if _LIBC.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", remount, options) != 0:
            err = ctypes.get_errno()
            raise UserError(f"cannot make the secrets' tmpfs read-only: {os.strerror(err)}")
    except BaseException:
        unmount(folder)
        raise


def unmount(folder: Path) -> None:
    """Undo mount_tmpfs (never raises; the folder goes too)."""
    with contextlib.suppress(OSError):
        _LIBC.umount2(os.fsencode(folder), _MNT_DETACH)
        folder.rmdir()
