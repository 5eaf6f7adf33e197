"""The initramfs QEMU loads: the image's, unpacked once into the cache, plus the run's settings.

The kernel unpacks archives one after the other, each compressed or not on its own, so the
run's settings (environment, volumes, modules) go in as a small second archive per run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import CorruptBlob
from summon.runtime import vm as guest
from summon.store.layout import Descriptor, Store

# Memory beyond twice the image (archive and unpacked files, both in RAM for a moment) under
# which the initramfs goes in gzip'd: the kernel, the interpreter and the app need about this.
RAW_INITRD_HEADROOM = 32 * 1024 * 1024


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


def unpacked_initramfs(store: Store, desc: Descriptor) -> Path:
    """The initramfs blob decompressed into the cache (checked against its digest on the way).

    The guest then only copies it: gunzip in an emulated CPU costs more than the transfer.
    """
    folder = paths.cache_dir() / "initramfs"
    dest = folder / f"{desc.digest.split(':', 1)[1]}.cpio"
    if dest.is_file():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}.{os.getpid()}.tmp"
    try:
        with store.open_verified(desc) as blob:
            with gzip.open(blob, "rb") as gz, tmp.open("wb") as out:
                shutil.copyfileobj(gz, out, 1 << 20)
        os.rename(tmp, dest)
    except (OSError, EOFError) as e:
        raise CorruptBlob(f"the initramfs blob {desc.digest} cannot be read: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def unpacked_size(store: Store, desc: Descriptor) -> int:
    """The size of the decompressed initramfs (what the guest holds in RAM), unpacking it
    only if the cache has no copy: a restore needs the size, not the bytes."""
    cached = paths.cache_dir() / "initramfs" / f"{desc.digest.split(':', 1)[1]}.cpio"
    try:
        return cached.stat().st_size
    except FileNotFoundError:
        return unpacked_initramfs(store, desc).stat().st_size


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
