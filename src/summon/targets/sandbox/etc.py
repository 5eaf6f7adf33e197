"""The sandbox's /etc files, written into the instance's bundle and bound read-only over the
image's own (config.py): hosts always (localhost and the instance's names, plus the names an
egress allowlist resolved), resolv.conf and nsswitch.conf when egress is on.

Images carry these paths as files (build/image.py ETC_FILES) because runc would otherwise
create the mount points in the image's unpacked root; an older image without them simply
keeps what it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from summon.targets import tmpfs

LOOPBACK_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# Files first: the names egress resolved are in hosts, and a lookup that hosts answers
# never reaches the resolver.
NSSWITCH = "hosts: files dns\n"


def hosts_text(names: Sequence[str], resolved: Mapping[str, Sequence[str]] = {}) -> str:
    """/etc/hosts: loopback, the instance's own names on 127.0.0.1, then resolved names."""
    own = " ".join(dict.fromkeys(n for n in names if n and n != "localhost"))
    lines = [LOOPBACK_HOSTS]
    if own:
        lines.append(f"127.0.0.1\t{own}\n")
    for name, addresses in sorted(resolved.items()):
        lines.extend(f"{address}\t{name}\n" for address in addresses)
    return "".join(lines)


def etc_files(
    rootfs: Path,
    names: Sequence[str],
    *,
    resolved: Mapping[str, Sequence[str]] = {},
    nameserver: str | None = None,
) -> dict[str, bytes]:
    """The instance's /etc files (image path -> content) the image has a mount point for.
    nameserver (egress on): resolv.conf and nsswitch.conf too."""
    files = {"/etc/hosts": hosts_text(names, resolved)}
    if nameserver is not None:
        files["/etc/resolv.conf"] = f"nameserver {nameserver}\noptions attempts:2 timeout:2\n"
        files["/etc/nsswitch.conf"] = NSSWITCH
    return {
        path: text.encode() for path, text in files.items() if (rootfs / path.lstrip("/")).is_file()
    }


def mount_etc(bundle: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """The files on a read-only tmpfs at bundle/etc (so the instance's mountinfo names no
    host path); image path -> the file to bind over it. unmount_etc() undoes it."""
    folder = bundle / "etc"
    by_name = {path.rsplit("/", 1)[1]: data for path, data in files.items()}
    tmpfs.mount_files(folder, by_name, what="the instance's /etc files")
    return {path: folder / path.rsplit("/", 1)[1] for path in files}


def unmount_etc(bundle: Path) -> None:
    tmpfs.unmount(bundle / "etc")
