"""This host's own keys: 32 random bytes per purpose, made on first use, readable by root only.

summon signs what it derives on this host and trusts only on this host with them (HMAC): the
verified root filesystem of an image (store/rootfs_artifact.py), the records of the qemu
target's snapshots (targets/snapshots.py). Each key is <state>/<purpose>.key, written to a
temporary name, fsynced and linked into place, so two processes racing to make it agree on
the first one's; a key file of another length (cut short) is replaced.
"""

from __future__ import annotations

import contextlib
import os

from summon import paths
from summon.errors import SummonError

KEY_BYTES = 32


def host_key(purpose: str) -> bytes:
    """The key for `purpose` ("rootfs", "snapshot"), made now if this host has none."""
    path = paths.state_dir() / f"{purpose}.key"
    damaged = False
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        damaged = True  # cut short (a full disk, say): a weak key, replaced below
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{purpose}.key.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if damaged:  # what the old key signed fails its check, and is made again
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # of two racing processes the first wins; the other reads its
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise SummonError(f"{path}: a key of {len(key)} bytes, not {KEY_BYTES}; remove it")
    return key
