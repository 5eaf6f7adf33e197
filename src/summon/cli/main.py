"""The `summon` command: parsing, output and exit codes; the work happens in the packages."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

import summon
from summon import paths
from summon.errors import SummonError, UserError
from summon.store import Store
from summon.store.image import Image, unpacked_size
from summon.targets.base import PortForward, RunSpec, Volume

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, status: int = 2, detail: str = "") -> NoReturn:
    print(f"summon: error: {message}", file=sys.stderr)
    if detail:
        print(detail.rstrip(), file=sys.stderr)
    sys.exit(status)


# Commands that live in modules of their own, imported only when used: every `summon run`
# would otherwise pay for the registry client, the gateway and the instance machinery.
LAZY_COMMANDS = {
    "kernel": "summon.cli.kernel",
    **dict.fromkeys(("push", "pull", "tag", "sign", "verify", "key"), "summon.cli.ship"),
    **dict.fromkeys(("ps", "logs", "stop", "rm", "stats"), "summon.cli.instances"),
    "gateway": "summon.cli.gateway",
}


class SummonGroup(click.Group):
    """Turns summon's own errors into one line and a status; anything else into a log file.

    Also finds the LAZY_COMMANDS, importing their module on first use.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS:
            module = importlib.import_module(LAZY_COMMANDS[name])
            for value in vars(module).values():
                if isinstance(value, click.Command) and value.name == name:
                    self.add_command(value)
                    return value
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SummonError as e:
            fail(str(e), e.exit_status, getattr(e, "detail", ""))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as e:  # an internal failure: say where the details are
            log = _write_crash_log()
            fail(f"internal error: {type(e).__name__}: {e} (details in {log})", 1)


def _write_crash_log() -> Path:
    folder = paths.state_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"crash-{stamp}-{os.getpid()}.log"
    path.write_text(traceback.format_exc())
    return path


def _store() -> Store:
    return Store(paths.store_dir())


@contextlib.contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current step on a terminal; plain step lines otherwise."""
    if err.is_terminal:
        with err.status(title) as status:
            yield lambda step: status.update(f"{title}: {step}")
    else:
        yield lambda step: print(f"{title}: {step}", file=sys.stderr, flush=True)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@click.group(cls=SummonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(summon.__version__, prog_name="summon")
def cli() -> None:
    """Build Python apps into sealed unikernel images, and run them.

    \b
    summon build examples/http -t http       build an image
    summon run http -p 8080:80               run it sandboxed, serving 127.0.0.1:8080
    summon run -d http / ps / logs / stop    run it in the background, and manage it
    summon images / inspect / rmi            manage the local store
    summon doctor                            what this host can run
    """


@cli.command()
@click.argument("app_dir", default=".", type=click.Path(file_okay=False, path_type=Path))
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
def build(
    app_dir: Path, tag: str | None, quiet: bool, whole_stdlib: bool, boot: bool, no_verify: bool
) -> None:
    """Build the app in APP_DIR into an image in the local store."""
    result = _build(app_dir, tag, whole_stdlib, boot, verify=not no_verify)
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


def _build(
    app_dir: Path,
    tag: str | None,
    whole_stdlib: bool = False,
    boot: bool = False,
    verify: bool = True,
) -> Any:
    from summon.build.image import build as build_image

    with _progress(f"building {app_dir}") as step:
        return build_image(app_dir, _store(), tag, step, whole_stdlib, boot, verify)


_PORT_RE = re.compile(
    r"^(?:(?P<addr>[0-9.]+):)?(?P<host>\d+):(?P<guest>\d+)(?:/(?P<proto>tcp|udp))?$"
)


def _parse_ports(values: tuple[str, ...]) -> tuple[PortForward, ...]:
    forwards = []
    for v in values:
        m = _PORT_RE.match(v)
        if not m:
            raise UserError(f"-p {v}: expected HOST:GUEST, ADDR:HOST:GUEST or HOST:GUEST/udp")
        host, guest = int(m["host"]), int(m["guest"])
        if not (1 <= host <= 65535 and 1 <= guest <= 65535):
            raise UserError(f"-p {v}: ports are numbers from 1 to 65535")
        forwards.append(PortForward(host, guest, m["proto"] or "tcp", m["addr"] or "127.0.0.1"))
    return tuple(forwards)


def _parse_volumes(values: tuple[str, ...], target: str) -> tuple[Volume, ...]:
    if values and target != "qemu":
        raise UserError(f"-v: volumes are for --target qemu; {target} has none yet")
    mounts = []
    for v in values:
        vol_name, sep, path = v.partition(":")
        if not sep or not vol_name or not path.startswith("/"):
            raise UserError(f"-v {v}: expected NAME:/PATH, such as data:/data")
        mounts.append(Volume(vol_name, path))
    return tuple(mounts)


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise UserError(f"-e {v}: expected KEY=VALUE with a valid variable name")
        if not sep:
            if key not in os.environ:
                raise UserError(f"-e {key}: not set in this environment; give -e {key}=VALUE")
            value = os.environ[key]
        env[key] = value
    return env


def _targets() -> dict[str, Any]:
    from summon.targets.qemu import QemuTarget
    from summon.targets.sandbox import SandboxTarget
    from summon.targets.unix import UnixTarget

    return {"unix": UnixTarget, "sandbox": SandboxTarget, "qemu": QemuTarget}


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("image")
@click.option(
    "--target",
    type=click.Choice(["unix", "sandbox", "qemu"]),
    help="Where to run it (default: qemu where KVM truly works, else sandbox).",
)
@click.option(
    "--accel",
    type=click.Choice(["kvm", "tcg"]),
    help="qemu: the accelerator (default: KVM where it truly works, else TCG).",
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="NAME:/PATH",
    help="qemu: mount volume NAME (made on first use, kept across runs) at PATH.",
)
@click.option(
    "-p",
    "--publish",
    "ports",
    multiple=True,
    metavar="[ADDR:]HOST:GUEST[/udp]",
    help="Forward a host port (on 127.0.0.1 unless ADDR is given) to the app.",
)
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable.")
@click.option("-m", "--memory", help="Memory limit, e.g. 64M (default: the manifest's).")
@click.option("--name", help="Instance name (default: derived from the image).")
@click.option("-d", "--detach", is_flag=True, help="Run it in the background (see summon ps).")
@click.option(
    "--restart",
    metavar="no|on-failure[:N]|always",
    help="With -d: when to start it again after it exits (default: no).",
)
@click.option(
    "--rm", "remove", is_flag=True, help="Remove the instance's state folder when it exits."
)
@click.option(
    "--verify-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Refuse the image unless signed by this public key (default: config.toml verify_key).",
)
def run(
    image: str,
    target: str | None,
    accel: str | None,
    volumes: tuple[str, ...],
    ports: tuple[str, ...],
    env: tuple[str, ...],
    memory: str | None,
    name: str | None,
    detach: bool,
    restart: str | None,
    remove: bool,
    verify_key: Path | None,
) -> None:
    """Run IMAGE (a name, ID, or an app folder, built first) in the foreground, or with -d."""
    if restart and not detach:
        raise UserError("--restart is for detached instances: add -d")
    from summon.manifest import parse_size

    forwards = _parse_ports(ports)
    overrides = _parse_env(env)
    target_name, why = target or "", ""
    if not target:
        from summon.targets.qemu import default_target

        target_name, why = default_target()
    target_cls = _targets()[target_name]
    mounts = _parse_volumes(volumes, target_name)
    if accel and target_name != "qemu":
        raise UserError(f"--accel is for --target qemu, not {target_name}")
    store = _store()
    if Path(image).is_dir():
        img = _build(Path(image), None).image
    else:
        img = Image.open(store, image)
    from summon.store.signing import default_verify_key, require_signature

    if (key := verify_key or default_verify_key()) is not None:
        require_signature(store, img.desc, img.ref, key)  # before anything starts
    if target is None:
        err.print(f"summon: target {target_name} ({target_cls.description}; {why})")
    rootfs = img.rootfs()
    app = img.app_config()
    mem = app.get("memory", 128 << 20)
    if memory:
        mem = parse_size(memory, lambda why: UserError(f"--memory: {why}"))
    base_name = name or f"{app.get('name', 'app')}-{os.getpid()}"
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", base_name):
        raise UserError(f"--name {base_name!r}: use letters, digits, '.', '_' and '-'")
    state = paths.state_dir() / "instances" / base_name
    if not detach:
        state.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        name=base_name,
        image=img.ref,
        rootfs=rootfs,
        app_config=app,
        argv=tuple(img.config.get("config", {}).get("Entrypoint") or RunSpec.argv),
        env={**app.get("env", {}), **overrides},
        ports=forwards,
        volumes=mounts,
        network=app.get("network", "socket"),
        memory=mem,
        pids=int(app.get("pids", 64)),
        state_dir=state,
    )
    if detach:
        from summon.cli.instances import run_detached

        run_detached(spec, img, target_name, restart, name, remove, accel)
        return
    if target_name == "qemu":
        from summon.cli.kernel import ensure_boot

        ensure_boot(img)  # with progress: the first run of an image may build its kernel
        instance = target_cls(accel=accel).start(spec)
    else:
        instance = target_cls().start(spec)
    for f in forwards:
        err.print(f"summon: {img.ref} serving {f.protocol} on {f.host_addr}:{f.host_port}")

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=instance.stop, daemon=True).start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        status = None
        while status is None:
            status = instance.wait(0.2)
        status = instance.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        instance.stop()
        if remove:
            import shutil

            shutil.rmtree(state, ignore_errors=True)
    sys.exit(status)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def images(as_json: bool) -> None:
    """List the images in the local store."""
    store = _store()
    rows: list[dict[str, Any]] = []
    for ref, desc in store.refs():
        img = Image(store, ref, desc)
        try:
            size = img.layer.size
            bom = img.bom
        except SummonError as e:
            rows.append({"ref": ref, "id": desc.short_id, "digest": desc.digest, "error": str(e)})
            continue
        rows.append(
            {
                "ref": ref,
                "id": desc.short_id,
                "digest": desc.digest,
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


@cli.command()
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print the whole bill of materials as JSON.")
@click.option("--why", metavar="MODULE", help="Say which imports brought MODULE in, or why not.")
def inspect(image: str, as_json: bool, why: str | None) -> None:
    """Show an image's size breakdown and its bill of materials (or an instance, by ID/name)."""
    from summon.cli.instances import inspect_instance

    if not why and inspect_instance(image, as_json):  # an instance ID, prefix or name first
        return
    img = Image.open(_store(), image)
    bom = img.bom
    if why:
        from summon.build.why import explain

        out.print("\n".join(explain(bom, why)), markup=False)
        return
    if as_json:
        doc = {
            "ref": img.ref,
            "id": img.id,
            "digest": img.desc.digest,
            "index": img.index,
            "config": img.config,
            "bom": bom,
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    layer = bom.get("layer", {})
    out.print(f"[bold]{img.ref}[/]  ID {img.id}  {img.desc.digest}")
    out.print(
        f"entry {bom.get('entry')}  network {bom.get('app', {}).get('network')}  "
        f"ports {', '.join(bom.get('app', {}).get('ports', [])) or '-'}"
    )
    out.print(
        f"root filesystem: {human(layer.get('size', 0))} compressed, "
        f"{human(layer.get('uncompressed', 0))} as tar\n"
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
        for col in ("name", "version", "size"):
            pk.add_column(col)
        for p in bom["packages"]:
            pk.add_row(p["name"], p["version"], human(p["size"]))
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
    left = bom.get("left_out", [])
    if left:
        out.print(
            f"\n{len(left)} modules that modulefinder would add were left out "
            "(`summon inspect --json` lists them with reasons); if the app needs one at run "
            "time, add it to include = [...] in its manifest."
        )


@cli.command()
@click.argument("images", nargs=-1, required=True)
def rmi(images: tuple[str, ...]) -> None:
    """Remove images from the local store (and blobs no other image uses)."""
    store = _store()
    for ref in images:
        full, desc = store.resolve(ref)
        names = [r for r, d in store.refs() if d.digest == desc.digest]
        for r in names if full == desc.digest or not full else [full]:
            store.untag(r)
            out.print(f"untagged {r}")
    removed, freed = store.gc()
    out.print(f"removed {removed} blobs, {human(freed)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(as_json: bool) -> None:
    """Say what this host can run, and what to install for the rest."""
    from summon.build.python import probe_interpreter
    from summon.manifest import DEFAULT_PYTHON

    checks: list[dict[str, Any]] = []
    try:
        interp = probe_interpreter(DEFAULT_PYTHON)
        checks.append(
            {
                "target": "build",
                "what": f"image interpreter {DEFAULT_PYTHON} (Python {interp.version})",
                "ok": True,
                "fix": "",
            }
        )
    except SummonError as e:
        checks.append(
            {
                "target": "build",
                "what": f"image interpreter {DEFAULT_PYTHON}",
                "ok": False,
                "fix": str(e),
            }
        )
    for name, cls in _targets().items():
        for c in cls.check():
            checks.append({"target": name, "what": c.what, "ok": c.ok, "fix": c.fix})
    if as_json:
        print(json.dumps(checks, indent=2))
        return
    for c in checks:
        mark = "[green]ok[/]  " if c["ok"] else "[red]no[/]  "
        out.print(
            f"{mark}{c['target']:8} {c['what']}"
            + (f"\n            fix: {c['fix']}" if c["fix"] else "")
        )
    usable = sorted({c["target"] for c in checks} - {c["target"] for c in checks if not c["ok"]})
    out.print(f"\nusable here: {', '.join(usable) or 'none'}")


def main() -> None:
    cli(prog_name="summon")


if __name__ == "__main__":
    main()
