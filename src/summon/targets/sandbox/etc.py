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


def write_etc(
    bundle: Path,
    rootfs: Path,
    names: Sequence[str],
    *,
    resolved: Mapping[str, Sequence[str]] = {},
    nameserver: str | None = None,
) -> dict[str, Path]:
    """Write the instance's /etc files under bundle/etc; return image path -> file for the
    ones the image has a mount point for. nameserver (egress on): resolv.conf and
    nsswitch.conf too."""
    files = {"/etc/hosts": hosts_text(names, resolved)}
    if nameserver is not None:
        files["/etc/resolv.conf"] = f"nameserver {nameserver}\noptions attempts:2 timeout:2\n"
        files["/etc/nsswitch.conf"] = NSSWITCH
    folder = bundle / "etc"
    folder.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    for image_path, text in files.items():
        if not (rootfs / image_path.lstrip("/")).is_file():
            continue
        dest = folder / image_path.rsplit("/", 1)[1]
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.rename(dest)
        out[image_path] = dest
    return out
