"""The image verbs: build, images, inspect, rmi and export.

Parsing and output only: building is summon.build's, the store summon.store's, and each export
format belongs to the target that provides it (summon.targets.export_formats).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from summon.cli import numbers
from summon.cli.output import (
    err,
    human,
    notice,
    open_store,
    out,
    progress,
    termination_unwinds,
)
from summon.cli.pathflags import NonEmptyPath, check_parent
from summon.errors import SummonError, UserError
from summon.store.image import Image, unpacked_size
from summon.store.layout import Descriptor, normalize_ref

NO_TAG = "<none>"  # what `images` shows for an image a tag moved off (docker's word)

if TYPE_CHECKING:
    from summon.targets.base import SecretFile


@click.command()
@click.argument("app_dir", default=".", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option(
    "-t", "--tag", help="Name the image NAME[:TAG] (default: the manifest's name:version)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option(
    "--whole-stdlib",
    is_flag=True,
    help="Put the whole stdlib in, not only the traced closure (a generic image).",
)
@click.option("--boot", is_flag=True, help="Add the VM boot artifact (kernel, initramfs) now.")
@click.option("--no-verify", is_flag=True, help="Skip importing the entry inside the image.")
@click.option(
    "-f",
    "--manifest",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="Build with this manifest (summon.toml or pyproject.toml) instead of APP_DIR's own.",
)
@click.option(
    "--secret",
    "secret_files",
    multiple=True,
    metavar="NAME=FILE",
    help="Give the build's recording run secret NAME (a stand-in will do); never put in the "
    "image. TLS certificates and keys get throwaway stand-ins without it.",
)
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable for the build's own runs of the app (its import, the check inside "
    "the image, the recording run), as an app reading SECRET_KEY at import needs; never "
    "put in the image (the manifest's env is).",
)
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    metavar="FILE",
    help="Set the variables of FILE (KEY=VALUE lines, as summon run --env-file) for the "
    "build's own runs of the app; -e flags win over it.",
)
def build(
    app_dir: Path,
    tag: str | None,
    quiet: bool,
    whole_stdlib: bool,
    boot: bool,
    no_verify: bool,
    manifest: Path | None,
    secret_files: tuple[str, ...],
    env: tuple[str, ...],
    env_files: tuple[str, ...],
) -> None:
    """Build the app in APP_DIR into an image in the local store."""
    from summon.cli.envflags import parse_env
    from summon.targets import secrets

    if tag == "":  # a variable unset: not the manifest's name:version unasked
        raise UserError("-t '': give the image's NAME[:TAG], such as web:v1")
    given = tuple(secrets.parse(v) for v in secret_files)
    result = build_app(
        app_dir,
        tag,
        whole_stdlib,
        boot,
        verify=not no_verify,
        manifest=manifest,
        secrets=given,
        env=parse_env(env, env_files),
    )
    if quiet:
        out.print(result.image.id)
        return
    for w in result.warnings:
        err.print(f"summon: warning: {w}")
    out.print(
        f"built {result.ref} (ID {result.image.id}): {human(result.layer_size)} compressed, "
        f"{human(result.unpacked)} unpacked; {result.modules} modules kept, "
        f"{result.left_out} that modulefinder would add left out (summon inspect {result.ref})"
    )
    if result.syscalls is not None:
        out.print(
            f"sandbox: {len(result.syscalls.unconditional)} syscalls allowed, recorded in "
            f"{result.syscalls.seconds:.1f} s"
        )
    if result.untagged:
        notice(
            f"the image {result.ref} named before (ID {result.untagged}) is kept as <none>; "
            "`summon rmi --dangling` removes those no instance runs"
        )


def build_app(
    app_dir: Path,
    tag: str | None,
    whole_stdlib: bool = False,
    boot: bool = False,
    verify: bool = True,
    manifest: Path | None = None,
    secrets: tuple[SecretFile, ...] = (),
    env: dict[str, str] | None = None,
) -> Any:
    from summon.build.image import build as build_image
    from summon.store.undo import undone_on_failure

    store = open_store()
    with termination_unwinds(), progress(f"building {app_dir}") as step, undone_on_failure(store):
        return build_image(
            app_dir,
            store,
            tag,
            step,
            whole_stdlib,
            boot,
            verify,
            manifest=manifest,
            secrets=secrets,
            env=env,
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def images(as_json: bool) -> None:
    """List the images in the local store."""
    from summon.store.layout import UNTAGGED

    store = open_store()
    rows: list[dict[str, Any]] = []
    # Tagged images, then those a tag moved away from (docker's <none>), by ID only.
    listed = [*store.refs(), *((NO_TAG, desc) for desc in store.untagged())]
    for ref, desc in listed:
        img = Image(store, desc.short_id if ref == NO_TAG else ref, desc)
        row: dict[str, Any] = {"ref": ref, "id": desc.short_id, "digest": desc.digest}
        if ref == NO_TAG:
            row["untagged_from"] = desc.annotations.get(UNTAGGED, "")
        try:
            size = img.layer.size
            bom = img.bom
        except SummonError as e:
            rows.append({**row, "error": str(e)})
            continue
        rows.append(
            {
                **row,
                "size": size,
                "unpacked": unpacked_size(bom),
                "modules": len(bom.get("modules", [])),
            }
        )
    if as_json:
        out.print_json(json.dumps(rows)) if out.is_terminal else print(json.dumps(rows, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for col in ("IMAGE", "ID", "SIZE", "UNPACKED", "MODULES"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["ref"], r["id"], "damaged", "", r["error"])
        else:
            table.add_row(
                r["ref"], r["id"], human(r["size"]), human(r["unpacked"]), str(r["modules"])
            )
    out.print(table)


@click.command()
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print the whole bill of materials as JSON.")
@click.option(
    "--why",
    metavar="MODULE",
    help="Say which imports brought MODULE in, or why not. With --json: one JSON object, "
    '{"ref", "id", "module", "in_image", "why": [lines]}.',
)
def inspect(image: str, as_json: bool, why: str | None) -> None:
    """Show an image's size breakdown and its bill of materials (or an instance, by ID/name)."""
    from summon.cli.instances import inspect_instance  # instances first: `inspect ID`

    if why is not None and not why.strip():  # `--why "$MOD"` unset printed the whole report
        raise UserError("--why '': give a module name, such as --why ssl")
    if not why and inspect_instance(image, as_json):  # an instance ID, prefix or name first
        return
    from summon.targets.sandbox.seccomp import REPORT_KEY

    img = Image.open(open_store(), image)
    bom = img.bom
    if why:
        from summon.build.why import explain

        lines = explain(bom, why)
        if as_json:  # --json's promise holds for --why too: a document, not the lines
            names = {m.get("name") for m in bom.get("modules", []) if isinstance(m, dict)}
            doc = {"ref": img.ref, "id": img.id, "module": why, "in_image": why in names}
            print(json.dumps({**doc, "why": lines}, indent=2, sort_keys=True))
            return
        out.print("\n".join(lines), markup=False)
        return
    sandbox = _sandbox_summary(img, bom)
    from summon.store.keyscan import scan_stored

    keys = scan_stored(img.store, img.layer)
    app = img.app_config()
    if as_json:
        doc = {
            "ref": img.ref,
            "id": img.id,
            "digest": img.desc.digest,
            "index": img.index,
            "config": img.config,
            "bom": bom,
            REPORT_KEY: sandbox,
            "private_keys": [{"path": path, "why": why} for path, why in keys],
            "secrets": list(app.get("secrets", [])),
            "tls": app.get("tls"),
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    layer = bom.get("layer", {})
    out.print(f"[bold]{escape(img.ref)}[/]  ID {img.id}  {img.desc.digest}", markup=True)
    out.print(
        f"entry {bom.get('entry')}  network {bom.get('app', {}).get('network')}  "
        f"ports {', '.join(bom.get('app', {}).get('ports', [])) or '-'}"
    )
    out.print(
        f"root filesystem: {human(layer.get('size', 0))} compressed, "
        f"{human(layer.get('uncompressed', 0))} as tar"
    )
    how = "recorded at build" if sandbox["derived"] else "the static allowlist"
    learned = (bom.get("app", {}).get("seal") or {}).get("code") or []
    lets = f", letting through {len(learned)} piece(s) of code the build saw" if learned else ""
    out.print(
        f"sandbox: {sandbox['syscalls_allowed']} syscalls allowed ({how}); "
        f"sealed after start: {sandbox['seal']}{lets}\n"
    )
    sizes = Table(title="size by part", box=None, title_justify="left")
    sizes.add_column("part")
    sizes.add_column("bytes", justify="right")
    sizes.add_column("", justify="right")
    total = sum(bom.get("sizes", {}).values()) or 1
    for part, n in bom.get("sizes", {}).items():
        sizes.add_row(part, human(n), f"{100 * n / total:.0f}%")
    out.print(sizes)
    interp = bom.get("interpreter", {})
    out.print(
        f"\ninterpreter {interp.get('path')}  Python {interp.get('version')}  "
        f"({interp.get('package') or 'not from a package'})  {human(interp.get('size', 0))}"
    )
    libs = Table(title="\nshared libraries", box=None, title_justify="left")
    for col in ("soname", "path", "package", "size"):
        libs.add_column(col)
    for lib in bom.get("libraries", []):
        libs.add_row(lib["soname"], lib["path"], lib.get("package", ""), human(lib["size"]))
    out.print(libs)
    if bom.get("packages"):
        pk = Table(title="\nthird-party packages", box=None, title_justify="left")
        for col in ("name", "version", "size", "licence"):
            pk.add_column(col)
        for p in bom["packages"]:
            pk.add_row(p["name"], p["version"], human(p["size"]), p.get("license", ""))
        out.print(pk)
    mods = Table(title="\nmodules", box=None, title_justify="left")
    for col in ("module", "part", "version", "size", "why"):
        mods.add_column(col)
    for mod in bom.get("modules", []):
        mods.add_row(
            mod["name"],
            mod["group"],
            mod.get("version", ""),
            human(mod["size"]) if mod["size"] else "-",
            mod.get("reason", ""),
        )
    out.print(mods)
    files = bom.get("files", [])
    if files:
        ft = Table(title="\napp and data files", box=None, title_justify="left")
        ft.add_column("path")
        ft.add_column("size", justify="right")
        for f in files:
            ft.add_row(f["path"], human(f["size"]))
        out.print(ft)
    if app.get("tls"):
        tls = app["tls"]
        served = f", served by the runtime on {tls['ports']}" if tls.get("ports") else ""
        out.print(f"\nTLS: the {tls['backend']} backend{served}")
    if app.get("secrets"):
        out.print(f"secrets given at run time: {', '.join(app['secrets'])}")
    if keys:
        out.print(f"\n[red]private keys in the image[/] ({len(keys)}): push will refuse it")
        for path, why in keys:
            out.print(f"  {path}: {why}")
    else:
        out.print("\nno private key material in the image (secrets come at run time)")
    left = bom.get("left_out", [])
    if left:
        out.print(
            f"\n{len(left)} modules that modulefinder would add were left out "
            "(`summon inspect --json` lists them with reasons); if the app needs one at run "
            "time, add it to include = [...] in its manifest."
        )


def _sandbox_summary(img: Image, bom: dict[str, Any]) -> dict[str, Any]:
    """The image's sandbox policy: syscalls allowed (derived or static) and its seal mode."""
    from summon.targets.base import SYSCALLS_LABEL
    from summon.targets.sandbox.seccomp import summary

    labels = img.config.get("config", {}).get("Labels") or {}
    label = labels.get(SYSCALLS_LABEL)
    return summary(bom.get("app", {}), label if isinstance(label, str) else None)


@click.command()
@click.argument("images", nargs=-1)
@click.option(
    "--dangling", is_flag=True, help="Also remove every untagged (<none>) image no instance runs."
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Remove every tag of an image named by ID, and an image stopped instances use.",
)
def rmi(images: tuple[str, ...], dangling: bool, force: bool) -> None:
    """Remove images from the local store (and blobs no other image uses).

    A tag removes that tag (the image goes with its last one); an image ID removes the image,
    and refuses one with several tags unless -f. An image a running instance uses is
    refused: stop the instance first. One a stopped instance uses (that `summon start` would
    run again) is refused unless -f: remove the instance first (summon rm).
    """
    from summon.store.image import remove_images

    if not images and not dangling:
        raise click.UsageError("name an image to remove, or give --dangling")
    store = open_store()
    tags = store.refs()
    untag: list[str] = []  # tags, and the digests of untagged images
    for ref in images:
        untag += _named_by(ref, store.resolve(ref), tags, force)
    running, stopped = images_in_use()
    for users_of, error in ((running, in_use_error), ({} if force else stopped, stopped_error)):
        for digest, users in users_of.items():
            left = [r for r, d in tags if d.digest == digest and r not in untag]
            named = [r for r, d in tags if d.digest == digest and r in untag]
            if (named or digest in untag) and not left:
                raise UserError(error((named or [digest[7:19]])[0], users))
    if dangling:  # as docker's image prune: what any instance uses stays
        untag += [d.digest for d in store.untagged() if d.digest not in {**running, **stopped}]
    # The images these refs name: their snapshots go with the last of them (below).
    removing = {d.digest for r, d in tags if r in untag} | {
        r for r in untag if r.startswith("sha256:")
    }
    # One pass, so that a full disk is no obstacle: see Store.remove.
    removed, freed = remove_images(store, untag)
    for r in dict.fromkeys(untag):
        out.print(
            f"removed untagged image {r[7:19]}" if r.startswith("sha256:") else f"untagged {r}"
        )
    out.print(f"removed {removed} blobs, {human(freed)}")
    _remove_snapshots({digest for digest in removing if not store.has(digest)})


def _remove_snapshots(images: set[str]) -> None:
    """Remove the snapshots of images (digests) just removed from the store: nothing could
    restore them any more, and they held their memory (hundreds of MB) until the cache's
    bound evicted them."""
    if not images:
        return
    from summon.targets.snapshots import SnapshotCache

    cache = SnapshotCache()
    try:
        doomed = [
            (key, snap.size)
            for key, snap in cache.entries()
            if not isinstance(snap, Exception) and snap.about.get("image_digest") in images
        ]
        for key, _size in doomed:
            cache.remove(key)
    except (OSError, UserError) as e:  # the images are gone all the same
        notice(f"warning: the removed images' snapshots were not removed: {e}")
        return
    if doomed:
        size = sum(size for _key, size in doomed)
        out.print(f"removed {len(doomed)} snapshot(s) of the removed images, {human(size)}")


def _named_by(
    ref: str, resolved: tuple[str, Descriptor], tags: list[tuple[str, Descriptor]], force: bool
) -> list[str]:
    """What `rmi REF` removes: the tag REF names; for an image ID, the image's every tag
    (docker's rule: several only with -f), or its digest when it has none."""
    full, desc = resolved
    if not full:
        return [desc.digest]
    with contextlib.suppress(UserError):
        if normalize_ref(ref) == full:
            return [full]  # named by its tag
    every = [name for name, d in tags if d.digest == desc.digest]
    if len(every) > 1 and not force:
        raise UserError(
            f"image {desc.digest[7:19]} has {len(every)} tags ({', '.join(every)}): remove "
            "them by name, or give -f to remove the image and every tag"
        )
    return every


GATEWAY_USER = "gateway service "  # inuse.read's users: "gateway service NAME"


def in_use_error(image: str, users: list[str]) -> str:
    """Why rmi refuses image, and what each of its users can do: `summon stop` stops no
    gateway's service (it was the only advice given, and stopped nothing)."""
    hints = []
    if any(not u.startswith(GATEWAY_USER) for u in users):
        hints.append("stop it first (summon stop)")
    if any(u.startswith(GATEWAY_USER) for u in users):
        hints.append(
            "let the gateway's service go idle (idle_timeout) or remove it from the gateway's "
            "config (and SIGHUP)"
        )
    hint = ", ".join(hints)
    return f"image {image} is in use by {', '.join(users)}: {hint}, or tag the image to keep it"


def stopped_error(image: str, users: list[str]) -> str:
    """Why rmi refuses an image stopped instances use: `summon start` of one found the image
    gone ("no longer in the store") long after the rmi that removed it said nothing."""
    users = sorted(users)
    names = " ".join(users)
    return (
        f"image {image} is used by stopped instance{'s' if len(users) > 1 else ''} "
        f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first (summon rm "
        f"{names}), or give -f to remove the image anyway"
    )


def images_in_use() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Image digest -> the instances running it (created, running or restarting), by name,
    and the services of running gateways whose instances are up; and image digest -> the
    stopped instances (exited, not removed) that `summon start` would run it again for."""
    from summon import paths
    from summon.gateway import inuse
    from summon.instances import lifecycle, state

    lifecycle.reconcile_all()  # an instance whose tree was killed is not running it
    users: dict[str, list[str]] = inuse.read(paths.state_dir() / "gateway")
    stopped: dict[str, list[str]] = {}
    for folder in state.all_instances():
        try:
            active = folder.state().get("status") in state.ACTIVE
            digest = str(folder.spec()["image"]["digest"])
        except (UserError, KeyError, TypeError):
            continue  # a damaged record: ps reports it
        (users if active else stopped).setdefault(digest, []).append(folder.name)
    return users, stopped


@click.command()
@click.argument("image")
@click.option(
    "--as",
    "fmt",
    required=True,
    metavar="FORMAT",
    help="What to write; each format is a target's (an unknown one lists them all).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=NonEmptyPath(path_type=Path),
    help="Where to write it (a file or a new folder, as the format says).",
)
def export(image: str, fmt: str, output: Path) -> None:
    """Write IMAGE in a form another system consumes (a site, a profile, manifests...)."""
    from summon import targets

    formats = targets.export_formats()
    if fmt not in formats:
        known = "; ".join(
            f"{name} ({targets.target_class(t).export_formats[name]})"
            for name, t in sorted(formats.items())
        )
        raise UserError(f"--as {fmt}: no target exports that format; known: {known or 'none'}")
    if output.exists():
        raise UserError(f"-o {output}: already exists; remove it or choose another path")
    check_parent("-o", output)
    target = targets.get(formats[fmt])
    img = Image.open(open_store(), image)
    with termination_unwinds(), progress(f"exporting {img.ref} as {fmt}") as step:
        target.export(img, fmt, output, step)
    out.print(f"exported {img.ref} as {fmt} to {output}")


@click.command()
@click.argument("image")
@click.option("--replicas", type=numbers.IntRange(0, 10000), default=1, show_default=True)
@click.option(
    "--port", type=numbers.IntRange(1, 65535), help="The Service's port (default: the app's)."
)
@click.option(
    "--host-port",
    type=numbers.IntRange(1, 65535),
    help="Also publish the app's first TCP port on each node (single-node engines, podman).",
)
@click.option(
    "--image",
    "image_name",
    metavar="REGISTRY/NAME[:TAG]",
    help="Where the cluster pulls the image from (default: IMAGE's name, if it has a registry).",
)
@click.option(
    "-o", "--output", type=NonEmptyPath(path_type=Path), default=Path("-"), help="Default: stdout."
)
def kube(
    image: str,
    replicas: int,
    port: int | None,
    host_port: int | None,
    image_name: str | None,
    output: Path,
) -> None:
    """Print Kubernetes YAML (a Deployment and a Service) running IMAGE with the sandbox's policy.

    \b
    summon kube 127.0.0.1:5000/team/http:v1 --replicas 3 --port 8080 > http.yaml
    summon export 127.0.0.1:5000/team/http:v1 --as seccomp -o http.json   (for each node)
    """
    from summon import targets

    formats = targets.export_formats()
    if "kube" not in formats:
        raise UserError("no target exports Kubernetes manifests here")
    if image_name == "":
        raise UserError("--image '': give REGISTRY/NAME[:TAG], or leave --image out")
    if str(output) != "-":
        check_parent("-o", output)
    img = Image.open(open_store(), image)
    options = {"replicas": replicas, "port": port, "host_port": host_port, "image_name": image_name}
    targets.get(formats["kube"]).export(img, "kube", output, lambda step: None, **options)
