"""Which images a running gateway's instances run, for `summon rmi` to see.

A gateway's instances are not recorded as `summon ps` instances, so each gateway keeps a
small file of its own beside its instances' state, `in-use.PID.json`: its pid, the start time
of that pid (so a pid reused by another process is not taken for it), and image digest ->
the services running it. It is rewritten (atomically) when the set changes and removed when
the gateway closes; a file whose gateway is gone is ignored, and removed by the next reader.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

PREFIX = "in-use."


def _started(pid: int) -> str | None:
    """The start time of pid (field 22 of /proc/PID/stat), or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def write(folder: Path, images: dict[str, list[str]]) -> None:
    """This gateway's images (digest -> services), replacing what it wrote before."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PREFIX}{os.getpid()}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    doc = {"pid": os.getpid(), "started": _started(os.getpid()), "images": images}
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a full disk leaves no half-written file behind
        raise


def remove(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / f"{PREFIX}{os.getpid()}.json").unlink()


def read(folder: Path) -> dict[str, list[str]]:
    """Image digest -> "gateway service NAME" for every live gateway's instances."""
    users: dict[str, list[str]] = {}
    try:
        paths = sorted(folder.glob(f"{PREFIX}*.json"))
    except OSError:
        return users
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            pid, images = int(doc["pid"]), dict(doc["images"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or damaged: the gateway writes it again
        if _started(pid) != doc.get("started"):
            with contextlib.suppress(OSError):
                path.unlink()  # its gateway is gone
            continue
        for digest, services in images.items():
            users.setdefault(str(digest), []).extend(f"gateway service {s}" for s in services)
    return users
