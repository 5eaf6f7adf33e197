"""Zip archives the site serves, written reproducibly: same entries, same bytes.

Fixed timestamps and modes, entries in the order given, deflate at level 9 (the archives are
compressed once at export and downloaded by every visitor), written under a temporary name,
synced and renamed, so a reader never sees half an archive.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def write_zip(dest: Path, entries: Iterable[tuple[str, bytes]]) -> int:
    """Write (name, data) entries to dest; a name ending in "/" is a folder. Its size."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                for name, data in entries:
                    info = zipfile.ZipInfo(name, EPOCH)
                    if name.endswith("/"):
                        info.external_attr = (0o40755 << 16) | 0x10
                        zf.writestr(info, b"")
                        continue
                    info.external_attr = 0o100644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, data, compresslevel=9)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest.stat().st_size
