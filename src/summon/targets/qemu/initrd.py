"""The initramfs QEMU loads: the image's, unpacked once into the cache, plus the run's settings.

The kernel unpacks archives one after the other, each compressed or not on its own, so the
run's settings (environment, volumes, modules) go in as a small second archive per run.

The decompressed copy in the cache is not trusted: the boot artifact's config records the
sha256 of the uncompressed archive (build/boot.py), the copy is checked against it before each
boot (a copy that differs is decompressed again), and hashed again as it is copied into the
instance's own initrd, which is what QEMU loads. An older artifact without that record is
decompressed afresh from its verified blob for each boot.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import CorruptBlob
from summon.runtime import vm as guest
from summon.store.layout import Descriptor, Store

# Memory beyond twice the image (archive and unpacked files, both in RAM for a moment) under
# which the initramfs goes in gzip'd: the kernel, the interpreter and the app need about this.
RAW_INITRD_HEADROOM = 32 * 1024 * 1024


def run_archive(settings: dict[str, Any], secrets: dict[str, bytes] | None = None) -> bytes:
    """The run's settings as a cpio archive holding /etc/summon/run.json, and the run's
    secrets under /run/secrets (RAM only in the guest: the initramfs is its root)."""
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
    if secrets:
        cpio.add("run", 0o040755)
        cpio.add("run/secrets", 0o040755)
        for name, value in sorted(secrets.items()):
            cpio.add(f"run/secrets/{name}", 0o100444, value)
    cpio.close()
    return b"".join(buf.parts)


def unpacked_initramfs(
    store: Store, desc: Descriptor, boot_config: dict[str, Any] | None = None
) -> tuple[Path, str]:
    """The initramfs blob decompressed into the cache, and the sha256 it must have.

    The guest then only copies it: gunzip in an emulated CPU costs more than the transfer.
    A cached copy is used when it hashes to what the boot config records; otherwise (or when
    the config records nothing, an older artifact) it is decompressed again from the blob,
    which is checked against its digest on the way.
    """
    expect = str((boot_config or {}).get("initramfs", {}).get("sha256") or "") or None
    folder = paths.cache_dir() / "initramfs"
    dest = folder / f"{desc.digest.split(':', 1)[1]}.cpio"
    if expect is not None and dest.is_file():
        if _sha256(dest) == expect:
            return dest, expect
        print(
            f"summon: warning: the decompressed initramfs {dest} differs from its image's boot "
            "artifact; not using it, decompressing it again",
            file=sys.stderr,
            flush=True,
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    try:
        with store.open_verified(desc) as blob:
            with gzip.open(blob, "rb") as gz, tmp.open("wb") as out:
                while chunk := gz.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        found = "sha256:" + digest.hexdigest()
        if expect is not None and found != expect:
            raise CorruptBlob(
                f"the initramfs blob {desc.digest} decompresses to {found}, not the {expect} "
                "its boot config records"
            )
        os.rename(tmp, dest)
    except (OSError, EOFError) as e:
        raise CorruptBlob(f"the initramfs blob {desc.digest} cannot be read: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest, found


def unpacked_size(store: Store, desc: Descriptor) -> int:
    """The size of the decompressed initramfs (what the guest holds in RAM), unpacking it
    only if the cache has no copy: a restore needs the size, not the bytes."""
    cached = paths.cache_dir() / "initramfs" / f"{desc.digest.split(':', 1)[1]}.cpio"
    try:
        return cached.stat().st_size
    except FileNotFoundError:
        return unpacked_initramfs(store, desc)[0].stat().st_size


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def write_initrd(
    image: Path,
    settings: dict[str, Any],
    dest: Path,
    gzip_run: bool,
    expect: str | None = None,
    secrets: dict[str, bytes] | None = None,
) -> None:
    """The file QEMU loads: the image's initramfs, then the run's settings as a second archive.

    The kernel unpacks archives one after the other, each compressed or not on its own.
    expect: the sha256 the image's archive must have; it is hashed as it is copied, so what
    QEMU loads is what was checked. The file is the owner's only (0600): with secrets, the
    instance deletes it once QEMU has read it.
    """
    run = run_archive(settings, secrets)
    tmp = dest.with_name(dest.name + ".tmp")
    digest = hashlib.sha256()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, image.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.write(gzip.compress(run, mtime=0) if gzip_run else run)
        found = "sha256:" + digest.hexdigest()
        if expect is not None and found != expect:
            raise CorruptBlob(
                f"the initramfs {image} hashes to {found}, not the {expect} of its image's boot "
                "artifact: refused (verified run path); run again to decompress it afresh"
            )
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)
