"""Delivering a run's secrets (--secret NAME=FILE) to an instance without touching the image.

Each target puts them where the runtime's Secrets device reads them (/run/secrets in the
instance, or SUMMON_SECRETS): the sandbox on a small tmpfs mounted read-only into the
container, the unix target in a private folder on /dev/shm, a VM in its per-run initramfs
piece (RAM only). Never on a disk the instance's image lives on, never in a layer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import time
from pathlib import Path

from summon.errors import UserError
from summon.targets import tmpfs
from summon.targets.base import MAX_SECRET_BYTES, SecretFile, not_a_file

IMAGE_PATH = "/run/secrets"  # summon.runtime.injection.SECRETS_PATH
SHM = Path("/dev/shm")
_HELD: dict[str, int] = {}  # private_folder() -> the fd holding its flock


def parse(value: str) -> SecretFile:
    """--secret NAME=FILE, checked: a valid name, a readable file of at most 1 MiB."""
    from summon.secrets import check_name

    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--secret {value}: expected NAME=FILE, such as tls.key=./server.key")
    try:
        check_name(name)
    except ValueError as e:  # a KeyError too, whose str() is its message's repr
        raise UserError(f"--secret {value}: {e.args[0] if e.args else e}") from None
    try:  # before resolve(): a pipe's /dev/fd/63 resolves to a name that does not exist
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG  # read() says why
    if not stat.S_ISREG(mode):
        raise UserError(f"--secret {value}: {not_a_file(mode)}")
    secret = SecretFile(name, Path(path).resolve())
    secret.read()  # unreadable or too big: one line now, not at the instance's start
    return secret


def missing(declared: list[str], given: tuple[SecretFile, ...]) -> list[str]:
    """The secrets an image declares (manifest `secrets`, TLS keys) that a run does not give."""
    names = {s.name for s in given}
    return [n for n in declared if n not in names]


def write_all(folder: Path, secrets: tuple[SecretFile, ...], mode: int = 0o444) -> None:
    """Write each secret whole into folder (temporary name, rename), readable as mode says."""
    tmpfs.write_files(folder, {s.name: s.read() for s in secrets}, mode)


def private_folder(instance: str, secrets: tuple[SecretFile, ...]) -> Path:
    """A 0700 folder on /dev/shm (RAM) holding the secrets, for a host-process instance.

    This process holds a flock on it until release(): a summon killed outright (SIGKILL, the
    OOM killer) takes its app along (PDEATHSIG) but cannot remove the folder, and the secrets
    stayed in /dev/shm until the next boot; the next private_folder() sweeps such folders.
    """
    base = SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None
    if base is None:
        raise UserError("--secret needs /dev/shm (a tmpfs) to keep secrets off the disk")
    sweep(base)
    name = f"summon-secrets-{instance}-{os.urandom(6).hex()}"
    making = base / f".{name}"  # not swept while it is made and locked
    making.mkdir(mode=0o700)
    fd = -1
    try:
        fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write_all(making, secrets, 0o400)
        folder = base / name
        os.rename(making, folder)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(making, ignore_errors=True)
        raise
    _HELD[str(folder)] = fd
    return folder


def release(folder: Path) -> None:
    """Remove a private_folder() and drop its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    fd = _HELD.pop(str(folder), -1)
    if fd >= 0:
        os.close(fd)


def sweep(base: Path) -> None:
    """Remove the secrets folders in `base` that no process holds (see private_folder)."""
    old = time.time() - 60
    for entry in [*base.glob("summon-secrets-*"), *base.glob(".summon-secrets-*")]:
        try:
            st = entry.lstat()
            if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode):
                continue
            if entry.name.startswith(".") and st.st_mtime > old:
                continue  # being made
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its instance runs
        else:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)


def mount_tmpfs(folder: Path, secrets: tuple[SecretFile, ...]) -> None:
    """A small tmpfs at folder holding the secrets, then made read-only (root only)."""
    contents = {s.name: s.read() for s in secrets}
    limit = len(secrets) * MAX_SECRET_BYTES + tmpfs.SLACK
    tmpfs.mount_files(folder, contents, what="the secrets", limit=limit)


def unmount(folder: Path) -> None:
    """Undo mount_tmpfs (never raises; the folder goes too)."""
    tmpfs.unmount(folder)
