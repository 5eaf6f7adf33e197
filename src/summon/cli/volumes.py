"""`summon volume ...`: named volumes, made, listed, inspected, removed, exported and imported.

A named volume keeps an app's data (its KV_RW stores) apart from the sealed image, across
runs, image upgrades and targets; summon.targets.volumes says how it is kept on disk and
summon.targets.volume_stores how its stores travel as Git bundles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from summon.cli.output import human, notice, out, print_json
from summon.cli.pathflags import NonEmptyPath
from summon.cli.usage import VerbGroup
from summon.errors import UserError
from summon.targets import volume_stores, volumes


def users(name: str) -> list[str]:
    """The instances (running, or restarting) that were started with volume `name`."""
    from summon.instances import lifecycle, state

    lifecycle.reconcile_all()  # an instance whose monitor died uses nothing
    found = []
    for folder in state.all_instances():
        if folder.state().get("status") not in state.ACTIVE:
            continue
        run = folder.spec().get("run") or {}
        if any(v.get("name") == name for v in run.get("volumes") or []):
            found.append(folder.name)
    return found


def describe(name: str) -> dict[str, Any]:
    """What ls and inspect show of volume `name`, as JSON."""
    vol = volumes.info(name)
    used_by = users(name)
    if vol.busy and not used_by:
        used_by = ["(another process: a gateway's instance, or a summon volume command)"]
    doc: dict[str, Any] = {
        "name": vol.name,
        "kind": vol.kind,
        "path": str(vol.path),
        "size": vol.size,
        "capacity": vol.capacity,
        "in_use_by": used_by,
    }
    return doc


@click.group(cls=VerbGroup)
def volume() -> None:
    """Named volumes: where apps keep data (KV_RW stores) across runs, upgrades and targets.

    \b
    summon run -v todo:/data todo         a folder for sandbox and unix, made on first use
    summon run -v todo:/data --target qemu   the same volume, moved into an ext4 disk
    summon volume export todo -o todo.bundle   its store's history: git clone todo.bundle
    """


@volume.command("create")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(volumes.KINDS),
    default=volumes.FOLDER,
    show_default=True,
    help="A folder (sandbox, unix) or an ext4 disk (qemu); it moves when a target needs the other.",
)
@click.option("--size", default="1G", show_default=True, help="An ext4 disk's size (sparse).")
def create_cmd(name: str, kind: str, size: str) -> None:
    """Make the volume NAME (summon run -v makes one on first use, too)."""
    from summon.manifest import parse_size

    nbytes = parse_size(size, lambda why: UserError(f"--size: {why}"))
    if nbytes < 8 * 1024 * 1024:
        raise UserError(f"--size {size}: an ext4 disk needs at least 8M")
    out.print(str(volumes.create(name, kind, nbytes)))


@volume.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List the volumes: kind, size on disk, who uses them, where they are."""
    rows = [describe(name) for name, _path in volumes.list_volumes()]
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("VOLUME", "KIND", "SIZE", "IN USE BY", "PATH"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["kind"], human(r["size"]), ", ".join(r["in_use_by"]) or "-", r["path"]
        )
    out.print(table)


@volume.command("inspect")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_cmd(name: str, as_json: bool) -> None:
    """Show the volume NAME: host path, kind, size, who uses it, and its stores (a folder's)."""
    doc = describe(name)
    if doc["kind"] == volumes.FOLDER:
        doc["stores"] = volume_stores.find_stores(Path(doc["path"]))
    if as_json:
        print_json(doc)
        return
    for key in ("name", "kind", "path"):
        out.print(f"{key + ':':<11} {doc[key]}")
    out.print(f"{'size:':<11} {human(doc['size'])} on disk")
    if doc["capacity"] is not None:
        out.print(f"{'capacity:':<11} {human(doc['capacity'])}")
    out.print(f"{'in use by:':<11} {', '.join(doc['in_use_by']) or '-'}")
    if "stores" in doc:
        out.print(f"{'stores:':<11} {', '.join(doc['stores']) or '-'}")


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-f", "--force", is_flag=True, help="Remove it even while instances use it (their data goes)."
)
def rm_cmd(names: tuple[str, ...], force: bool) -> None:
    """Remove the volumes NAMES and everything in them."""
    names = tuple(dict.fromkeys(names))  # `volume rm v v`: v once, not v and "no volume 'v'"
    for name in names:  # a typo, or a volume in use, fails before any data goes
        volumes.require(name)
        used_by = users(name)
        if used_by and not force:
            raise UserError(
                f"volume {name} is in use by {', '.join(used_by)}; stop it first, or give --force"
            )
    for name in names:
        volumes.remove(name, force=force)
        out.print(name)


@volume.command("export")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    required=True,
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="The bundle file to write.",
)
@click.option("--store", help="The store's folder in the volume (default: the only one).")
def export_cmd(name: str, output: Path, store: str | None) -> None:
    """Write the history of the store in volume NAME as a Git bundle (git clone FILE reads it).

    An ext4 volume (used by qemu) is read with debugfs, without mounting it.
    """
    try:
        which = volume_stores.export(name, output, store)
    except volumes.VolumeInUse:
        if not (used_by := users(name)):
            raise
        raise UserError(
            f"volume {name} is in use by {', '.join(used_by)}; stop it first to export it"
        ) from None
    notice(f"volume {name}: store {which} written to {output} (git clone {output} reads it)")


@volume.command("import")
@click.argument("name")
@click.argument("bundle", type=NonEmptyPath(dir_okay=False, path_type=Path))
@click.option(
    "--store",
    help="The store's folder in the new volume (default: NAME), as the app's manifest puts it: "
    'stores = { todo = "/data/todo" } with -v NAME:/data wants --store todo.',
)
def import_cmd(name: str, bundle: Path, store: str | None) -> None:
    """Make the new volume NAME holding a store made from the Git bundle BUNDLE."""
    volume_stores.import_bundle(name, bundle, store or name)
    notice(f"volume {name}: store {store or name} made from {bundle}")
