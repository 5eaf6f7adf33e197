"""Kernel images as QEMU loads them: the ELF inside a bzImage, its PVH note, its footprint.

Parsing only (the x86 boot protocol header, ELF program headers and notes); the kernel itself
is built by summon.build.kernel.
"""

from __future__ import annotations

import os
from pathlib import Path

from summon import paths
from summon.store.layout import Descriptor, Store


def boot_kernel(store: Store, desc: Descriptor) -> Path:
    """What QEMU should load for the kernel blob: its ELF, when it has a PVH entry, else itself.

    A bzImage decompresses itself, which under TCG takes most of a second; QEMU starts the
    ELF inside it directly through its PVH entry point (CONFIG_PVH). The ELF is taken out of
    the bzImage once (its payload, xz or gzip, per the boot protocol header) into the cache.
    """
    blob = store.verify(desc)
    folder = paths.cache_dir() / "kernel-elf"
    dest = folder / desc.digest.split(":", 1)[1]
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
