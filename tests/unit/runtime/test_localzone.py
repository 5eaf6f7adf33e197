"""TZ set for a run (summon run -e TZ=Europe/Paris) holds in an image with tzdata.

Images ship no /usr/share/zoneinfo, where glibc looks for TZ's zone: time.localtime, logging's
asctime and datetime.astimezone() answered UTC in the sandbox without a word, the zone on the
unix target (the host's folder). tzdata's own folder becomes TZDIR instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from summon.runtime import localzone

SRC = Path(__file__).resolve().parents[3] / "src"
HOST_PARIS = Path("/usr/share/zoneinfo/Europe/Paris")

CHILD = r"""
import json, sys, time
from summon.runtime import localzone
said = []
localzone.hold(sys.argv[1:], said.append, system=sys.argv[1] + "/no-zones")
print(json.dumps({"local": time.strftime("%H:%M %Z", time.localtime(1720000000)),
                  "said": said}))
"""


def child(site: Path, tz: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "TZDIR"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(site)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(SRC), "TZ": tz},
        check=True,
        timeout=60,
    )
    got: dict[str, object] = json.loads(out.stdout)
    return got


@pytest.mark.skipif(not HOST_PARIS.is_file(), reason="no zone file to stand for tzdata's")
def test_a_zone_tzdata_holds_is_the_local_time(tmp_path: Path) -> None:
    # A name the host's own zone folder lacks, so that only tzdata's can answer: glibc read
    # TZ once at the interpreter's start, and a tzset() with TZ unchanged read nothing again.
    site = tmp_path / "site"
    (site / "tzdata/zoneinfo/Summon").mkdir(parents=True)
    shutil.copy(HOST_PARIS, site / "tzdata/zoneinfo/Summon/Paris")
    assert child(site, "Summon/Paris") == {"local": "11:46 CEST", "said": []}
    assert child(site, ":Summon/Paris")["local"] == "11:46 CEST"


LATER = r"""
import os, sys, time
from summon.runtime import localzone
localzone.hold(sys.argv[1:], print, system=sys.argv[1] + "/no-zones")
os.environ["TZ"] = "Summon/Paris"  # as Django does with its TIME_ZONE when settings load
time.tzset()
print(time.strftime("%H:%M %Z", time.localtime(1720000000)))
"""


@pytest.mark.skipif(not HOST_PARIS.is_file(), reason="no zone file to stand for tzdata's")
def test_a_zone_the_app_sets_itself_comes_from_tzdata(tmp_path: Path) -> None:
    # Django (USE_TZ = False: naive datetime.now() is local time) sets TZ to its TIME_ZONE and
    # calls time.tzset(); glibc looked under /usr/share/zoneinfo only, and the local time was
    # UTC in an image with tzdata (Paris on the host and the unix target).
    site = tmp_path / "site"
    (site / "tzdata/zoneinfo/Summon").mkdir(parents=True)
    shutil.copy(HOST_PARIS, site / "tzdata/zoneinfo/Summon/Paris")
    env = {k: v for k, v in os.environ.items() if k not in ("TZDIR", "TZ")}
    out = subprocess.run(
        [sys.executable, "-c", LATER, str(site)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(SRC)},
        check=True,
        timeout=60,
    )
    assert out.stdout == "11:46 CEST\n"


def test_a_zone_the_image_lacks_is_said(tmp_path: Path) -> None:
    got = child(tmp_path, "America/Nowhere")
    assert str(got["local"]).startswith("09:46")  # UTC
    assert got["said"] == [
        "TZ=America/Nowhere names a time zone this image does not hold, so local time is UTC: "
        "add tzdata to the app's requirements and rebuild"
    ]
    # A POSIX rule is no file and glibc reads it as such: nothing to say.
    assert child(tmp_path, "CET-1CEST,M3.5.0,M10.5.0/3")["said"] == []
    assert child(tmp_path, "EST5EDT")["said"] == []


def test_nothing_is_touched_when_the_system_has_the_zone_or_tzdir_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    (tmp_path / "zones/Europe").mkdir(parents=True)
    (tmp_path / "zones/Europe/Paris").write_bytes(b"TZif")
    monkeypatch.setenv("TZ", "Europe/Paris")
    monkeypatch.delenv("TZDIR", raising=False)
    localzone.hold([str(tmp_path)], said.append, system=str(tmp_path / "zones"))
    assert "TZDIR" not in os.environ and said == []
    monkeypatch.setenv("TZDIR", "/elsewhere")
    localzone.hold([str(tmp_path)], said.append, system=str(tmp_path / "none"))
    assert os.environ["TZDIR"] == "/elsewhere" and said == []
    assert localzone.zone_name("/etc/localtime") is None
    assert localzone.zone_name(":Asia/Tokyo") == "Asia/Tokyo"
