"""`summon snapshot ls|rm`: the snapshots targets restore instances from, and removing them.

The cache itself is summon.targets.snapshots (which target saved each snapshot is in its
record); nothing here knows one target from another.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

import click
from rich.table import Table

from summon.cli.output import human, human_duration, notice, out, print_json
from summon.cli.usage import VerbGroup
from summon.errors import UserError
from summon.targets.snapshots import CONFIG_KEY, CorruptSnapshot, SnapshotCache


@click.group(cls=VerbGroup)
def snapshot() -> None:
    """Snapshots of apps at their ready point, which later starts restore instead of booting."""


@snapshot.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List the snapshots, most recently used first, with their sizes and keys.

    Those past the cache's bound (a lowered snapshot_cache_size; 0 keeps none) go first,
    least recently used first, as the next start would remove them, and that is said.
    """
    cache = _cache()
    _trim(cache)
    rows: list[dict[str, Any]] = []
    for key, entry in cache.entries():
        size = cache.folder_size(key)
        if isinstance(entry, CorruptSnapshot):
            rows.append({"key": key, "size": size, "error": str(entry)})
            continue
        rows.append(
            {
                "key": key,
                "size": size,
                "target": entry.target,
                "digest": entry.digest,
                "image": entry.about.get("image", ""),
                "memory": entry.about.get("memory"),
                "created": entry.created,
                "last_used": entry.last_used,
            }
        )
    total = sum(int(r["size"]) for r in rows)
    if as_json:
        print_json({"snapshots": rows, "total": total, "limit": cache.limit})
        return
    table = Table(box=None, pad_edge=False)
    for col in ("KEY", "TARGET", "IMAGE", "SIZE", "MEMORY", "LAST USED", "DIGEST"):
        table.add_column(col)
    now = time.time()
    for r in rows:
        if "error" in r:
            table.add_row(r["key"][:12], "-", "-", human(r["size"]), "-", "-", f"[{r['error']}]")
            continue
        memory = r["memory"]
        table.add_row(
            r["key"][:12],
            r["target"],
            str(r["image"]),
            human(r["size"]),
            human(memory) if isinstance(memory, int) else "-",
            human_duration(now - r["last_used"]) + " ago",
            r["digest"][:19],
        )
    out.print(table)
    bound = f"of {human(cache.limit)}" if cache.limit else f"({CONFIG_KEY} = 0: snapshots are off)"
    out.print(f"{len(rows)} snapshot(s), {human(total)} {bound}")


def _cache() -> SnapshotCache:
    """The user's cache; UserError if its folder is not one (SUMMON_SNAPSHOTS a file, say)."""
    cache = SnapshotCache()
    try:
        is_folder = stat.S_ISDIR(os.stat(cache.root).st_mode)
    except FileNotFoundError:
        return cache  # none yet: no snapshots
    except OSError as e:  # a file on the way to it (NotADirectoryError), no access
        raise UserError(f"snapshot cache {cache.root}: {e.strerror or e}") from None
    if not is_folder:
        raise UserError(f"snapshot cache {cache.root} is not a folder")
    return cache


def _trim(cache: SnapshotCache) -> None:
    """Hold the cache to its bound (read first: a bad value is ls's one error line)."""
    limit = cache.limit
    try:
        removed = cache.evict()
    except OSError as e:  # a read-only cache is still listed
        notice(
            f"warning: the snapshots over the bound ({CONFIG_KEY}) cannot be removed from "
            f"{cache.root}: {e.strerror or e}"
        )
        return
    if removed:
        bound = "0: keep none" if limit == 0 else human(limit)
        notice(
            f"removed {len(removed)} snapshot(s) over the cache's bound ({CONFIG_KEY} = {bound}): "
            + " ".join(key[:12] for key in removed)
        )


@snapshot.command("rm")
@click.argument("keys", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Remove every snapshot.")
def rm_cmd(keys: tuple[str, ...], everything: bool) -> None:
    """Remove snapshots by KEY (or a unique prefix of one); the next start boots and saves anew."""
    cache = _cache()
    known = [key for key, _ in cache.entries()]
    if everything and keys:
        raise UserError("snapshot rm: give KEYs (see summon snapshot ls) or --all, not both")
    if not everything and not keys:
        raise UserError("snapshot rm: give the KEYs to remove (see summon snapshot ls) or --all")
    chosen = known if everything else [_one(prefix, known) for prefix in keys]
    for key in chosen:
        try:
            gone = cache.remove(key)
        except OSError as e:  # what was removed before is printed already
            raise UserError(
                f"snapshot rm: cannot remove {key[:12]} from {cache.root}: {e.strerror or e}"
            ) from None
        if gone:
            out.print(key)


def _one(prefix: str, known: list[str]) -> str:
    hits = [key for key in known if key.startswith(prefix.lower())]
    if not prefix or not hits:
        raise UserError(f"snapshot rm: no snapshot {prefix!r} (see summon snapshot ls)")
    if len(hits) > 1:
        raise UserError(f"snapshot rm: {prefix!r} names {len(hits)} snapshots; give more of it")
    return hits[0]
