"""The local time zone a run names with TZ (summon run -e TZ=Europe/Paris), made to hold.

glibc finds a zone named by TZ under /usr/share/zoneinfo, which images do not ship (UTC
only: build/zones.py), and falls back to UTC without a word; time.localtime, logging's
asctime and datetime.astimezone() then answered UTC in the sandbox and a VM, and the zone
on the host and the unix target. When the image holds the tzdata distribution, its
zoneinfo folder (compiled TZif files, the format glibc reads) becomes TZDIR, where glibc
looks instead; without it, the run is told what to add.

Image-side: stdlib only, imported at every start (a few stat calls).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

SYSTEM_ZONES = "/usr/share/zoneinfo"


def zone_name(tz: str) -> str | None:
    """The zone file TZ names (relative to the zone folder), or None: empty, or a path of
    its own ("/etc/localtime", ":/usr/share/...")."""
    name = tz[1:] if tz.startswith(":") else tz
    if not name or name.startswith("/") or ".." in name.split("/"):
        return None
    return name


def hold(paths: Sequence[str], say: Callable[[str], None], system: str = SYSTEM_ZONES) -> None:
    """Make os.environ["TZ"] resolve: set TZDIR to the tzdata folder on paths that has the
    zone (and time.tzset()), or say that none has it. With no TZ at the start, TZDIR is
    still the tzdata folder when there is one: an app that sets TZ itself (Django, which
    puts its TIME_ZONE there and calls time.tzset() when its settings load) then gets local
    time in its zone, not UTC. Nothing when TZDIR is set already, or the system's zone
    folder has the zone (UTC, or the unix target's host).
    """
    tz = os.environ.get("TZ", "")
    name = zone_name(tz)
    if "TZDIR" in os.environ or (name and os.path.isfile(os.path.join(system, name))):
        return
    for path in paths:
        folder = os.path.join(path, "tzdata", "zoneinfo")
        if name is None:
            if os.path.isdir(folder):
                os.environ["TZDIR"] = folder  # read by glibc at the app's own tzset()
                return
        elif os.path.isfile(os.path.join(folder, name)):
            os.environ["TZDIR"] = folder
            # glibc reads the zone again only when TZ changes (its tzset compares TZ with
            # the value it last read, at the interpreter's start): change it, then put it back.
            os.environ["TZ"] = "UTC0"
            time.tzset()
            os.environ["TZ"] = tz
            time.tzset()
            return
    if name is None:
        return
    # A POSIX rule ("CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT") is no file, and glibc reads it
    # as a rule: only an Area/Location name is surely a zone the image lacks.
    if "/" in name and "," not in name:
        say(
            f"TZ={tz} names a time zone this image does not hold, so local time is UTC: add "
            "tzdata to the app's requirements and rebuild"
        )
