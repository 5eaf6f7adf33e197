"""Which Debian package (and version) each host file in an image came from, for the BOM."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def owners(files: Iterable[Path]) -> dict[Path, str]:
    """Map each file to "package version"; files dpkg does not know are left out.

    Debian 12 merged /lib into /usr/lib, but dpkg still records many files under /lib, so each
    file is asked for under both spellings.
    """
    if shutil.which("dpkg-query") is None:
        return {}
    spellings: dict[str, Path] = {}
    for f in files:
        s = str(f)
        spellings[s] = f
        if s.startswith("/usr/lib/"):
            spellings[s[4:]] = f
        elif s.startswith("/lib/") or s.startswith("/lib64/"):
            spellings["/usr" + s] = f
    if not spellings:
        return {}
    out = subprocess.run(
        ["dpkg-query", "-S", *spellings], capture_output=True, text=True, check=False
    ).stdout
    package_of: dict[Path, str] = {}
    for line in out.splitlines():
        pkgs, sep, path = line.partition(": ")
        if sep and path in spellings and "diversion" not in pkgs:
            package_of[spellings[path]] = pkgs.split(",")[0].strip()
    names = sorted(set(package_of.values()))
    if not names:
        return {}
    versions = dict(
        line.split(" ", 1)
        for line in subprocess.run(
            ["dpkg-query", "-W", "-f=${Package}:${Architecture} ${Version}\\n", *names],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        if " " in line
    )
    result = {}
    for f, pkg in package_of.items():
        key = pkg if ":" in pkg else next((k for k in versions if k.split(":")[0] == pkg), pkg)
        result[f] = f"{pkg.split(':')[0]} {versions.get(key, '?')}"
    return result
