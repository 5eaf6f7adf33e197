"""Time zone data in an image: UTC always where zoneinfo is, the rest only from tzdata.

The host's /usr/share/zoneinfo is not shipped (about 5 MB; an image holds what its app
needs). Without any data, `ZoneInfo("UTC")`, which Django's USE_TZ and many libraries ask
for, raised ZoneInfoNotFoundError in every image whose closure held zoneinfo: so UTC (a
114-byte TZif file, made here rather than copied, so that the image does not depend on the
host's tzdata version) is put where the image's interpreter looks first (its TZPATH starts
with /usr/share/zoneinfo), as UTC and Etc/UTC, and as /etc/localtime: the local zone is
UTC. Any other zone needs the tzdata distribution, which zoneinfo finds by itself; the build
says so when the app's own code names one, and stays quiet for apps that only import
zoneinfo through a library (FastAPI, pydantic, orjson), which warned on every build before.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path

from summon.build.closure import Closure
from summon.build.vendor import Package

ZONE_DIR = "/usr/share/zoneinfo"


def _utc_tzif() -> bytes:
    """RFC 8536 version 2: no transitions, one local time type (UT+0, "UTC"), the footer TZ
    string UTC0; the v1 block and the 64-bit one are the same when nothing has a time."""
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)  # isut, isstd, leap, time, type, char
    block = b"TZif2" + bytes(15) + counts + struct.pack(">lBB", 0, 0, 0) + b"UTC\0"
    return block + block + b"\nUTC0\n"


UTC_TZIF = _utc_tzif()
# Image path -> content.
# /etc/localtime too: what tzlocal (APScheduler's) reads for the local zone, and warned
# without ("Can not find any timezone configuration, defaulting to UTC").
ZONE_FILES = {
    f"{ZONE_DIR}/Etc/UTC": UTC_TZIF,
    f"{ZONE_DIR}/UTC": UTC_TZIF,
    "/etc/localtime": UTC_TZIF,
}

# A zone named in code: an Area/Location literal (not UTC), or ZoneInfo() of anything but UTC.
_AREAS = (
    "Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|"
    "US|Canada|Brazil|Mexico|Chile|Etc"
)
_ZONE_LITERAL = re.compile(rf"""["']((?:{_AREAS})/[A-Za-z0-9_+\-/]+)["']""")
_ZONE_CALL = re.compile(r"""ZoneInfo\(\s*(?!["'](?:Etc/)?UTC["']\s*\))[^)\s]+""")


def needs_zones(closure: Closure, packages: Iterable[Package]) -> bool:
    """Whether the image gets ZONE_FILES: zoneinfo is in it, and tzdata is not."""
    return "zoneinfo" in closure.modules and not _has_tzdata(packages)


def _has_tzdata(packages: Iterable[Package]) -> bool:
    return any(p.name.lower() == "tzdata" for p in packages)


def zone_warnings(closure: Closure, packages: list[Package], sources: list[Path]) -> list[str]:
    """A warning when the app's own code names a zone the image has no data for."""
    if not needs_zones(closure, packages):
        return []
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        named = _ZONE_LITERAL.search(text)
        if named is not None and named[1] != "Etc/UTC":
            return [_warning(path, repr(named[1]))]
        if (call := _ZONE_CALL.search(text)) is not None:
            return [_warning(path, call[0] + "...)")]
    return []


def _warning(path: Path, what: str) -> str:
    return (
        f"{path.name} names a time zone ({what}), but the image holds no time zone data "
        f"but UTC (the host's {ZONE_DIR} is not shipped): any other zone raises "
        "ZoneInfoNotFoundError; add tzdata to the requirements"
    )


# What an app's import says of a zone the image has no data for: Django's settings check
# (the zone file under /usr/share/zoneinfo, which holds UTC only; TIME_ZONE defaults to
# America/Chicago when the settings name none) and zoneinfo's own error.
_DJANGO_ZONE = re.compile(r"Incorrect timezone setting: (\S+)")
_ZONEINFO_KEY = re.compile(r"No time zone found with key ([^\s'\"]+)")


def missing_zone_line(what: str, problem: str) -> str | None:
    """The build's error for an import that failed on a time zone the image lacks, or None."""
    if (django := _DJANGO_ZONE.search(problem)) is not None:
        zone, whose = (
            django[1],
            (
                " (Django's TIME_ZONE, America/Chicago when the settings name none; or set "
                'TIME_ZONE = "UTC")'
            ),
        )
    elif (key := _ZONEINFO_KEY.search(problem)) is not None:
        zone, whose = key[1], ""
    else:
        return None
    return (
        f"{what} does not import inside the image: {problem}; the image holds no time zone "
        f"data but UTC (the host's {ZONE_DIR} is not shipped): add tzdata to the requirements "
        f"for {zone}{whose}"
    )
