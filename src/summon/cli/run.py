"""`summon run`: parse the flags, prepare the image for its target, start the instance.

Foreground and detached runs are the same instance machinery (summon.instances); the
foreground one is attached to this process. Everything a target needs comes from
summon.targets by name: nothing here knows one target from another.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from summon import targets
from summon.cli import numbers, output
from summon.cli.envflags import NOT_TEXT, is_text, parse_env
from summon.cli.output import notice, open_store, progress
from summon.cli.pathflags import NonEmptyPath
from summon.cli.ports import check_ports_free, parse_ports, runs
from summon.errors import UserError
from summon.targets import secrets
from summon.targets.base import ARGS, SECRETS, VOLUMES, PortForward, RunSpec, Volume

MIN_MEMORY = 8 * 1024 * 1024  # below this Python does not start


class TargetChoice(click.ParamType):  # type: ignore[type-arg]
    """--target: one of the registered targets, looked up when parsed (fakes in tests too)."""

    name = "target"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(targets.names()) + "]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        if value in targets.names():
            return str(value)
        self.fail(f"{value!r} is not one of {', '.join(targets.names())}", param, ctx)


def check_guest_ports(forwards: tuple[PortForward, ...], app_config: dict[str, Any]) -> None:
    """A forward to a port the image does not list: an error for an app summon's runtime
    serves (it listens on the listed port only: the requests would wait for nobody), a
    warning for one that opens its own listeners."""
    listed = [p if "/" in p else f"{p}/tcp" for p in map(str, app_config.get("ports", []))]
    entry = app_config.get("entry")
    served = isinstance(entry, dict) and entry.get("kind") in ("wsgi", "asgi")
    unlisted = [f for f in forwards if f"{f.guest_port}/{f.protocol}" not in listed]
    for run in runs(unlisted):  # a -p range unlisted: one line, not one per port
        f, last = run[0], run[-1]
        host = f"{f.host_port}-{last.host_port}" if len(run) > 1 else f"{f.host_port}"
        guest_ports = f"{f.guest_port}-{last.guest_port}" if len(run) > 1 else f"{f.guest_port}"
        flag = f"-p {host}:{guest_ports}" + ("/udp" if f.protocol == "udp" else "")
        ports = ", ".join(listed) or "none"
        same = [p for p in listed if p.endswith(f"/{f.protocol}")]
        if served:
            hint = f"; did you mean -p {f.host_port}:{same[0].partition('/')[0]}?" if same else ""
            raise UserError(
                f"{flag}: the image's app is served on port(s) {ports} (its manifest's ports), "
                f"not {guest_ports}/{f.protocol}{hint}"
            )
        guest = f"{guest_ports}/{f.protocol}"
        notice(
            f"warning: {flag}: the image lists port(s) {ports}, not {guest}; connections "
            "reach the app only if it listens there itself"
            if listed
            else f"warning: {flag}: the image lists no ports; connections reach the app only "
            f"if it listens on {guest} itself"
        )


def unmounted_volumes(mounts: tuple[Volume, ...], app_config: dict[str, Any]) -> list[str]:
    """The image's volume paths (its manifest's volumes) that no -v mounts; not those of
    its stores (the runtime refuses to start those with a line of its own)."""
    from summon.targets.volumes import holds_stores

    given = {m.path.rstrip("/") for m in mounts}
    out = []
    for path in map(str, app_config.get("volumes", [])):
        path = path.rstrip("/") or "/"
        if path not in given and not holds_stores(path, app_config):
            out.append(path)
    return out


def served_args_warning(args: tuple[str, ...], app_config: dict[str, Any]) -> str | None:
    """What to say when a run gives ARGS to an image whose entry is a WSGI or ASGI app.

    The runtime serves such an app whatever its sys.argv holds: `summon run site -- migrate`
    on a Django image whose entry is mysite.wsgi:application started the server and migrated
    nothing, without a word."""
    entry = app_config.get("entry")
    if not args or not isinstance(entry, dict) or entry.get("kind") not in ("wsgi", "asgi"):
        return None
    kind = str(entry["kind"]).upper()
    app = f"{entry.get('module')}:{entry.get('attr')}"
    return (
        f"warning: ARGS {' '.join(args)!r}: the image's entry is the {kind} app {app}, which "
        "the runtime serves whatever sys.argv holds, so no command runs; a command such as "
        '`manage.py migrate` needs an image whose entry is its script (entry = "manage.py")'
    )


def parse_volumes(values: tuple[str, ...]) -> tuple[Volume, ...]:
    """-v NAME:/PATH (a named volume) or -v /HOST/FOLDER:/PATH (a host folder, bound)."""
    from summon.targets import volumes

    mounts: list[Volume] = []
    for v in values:
        source, sep, path = v.rpartition(":")
        if sep and ":/" in source and not path.startswith("/"):  # docker's -v data:/data:ro
            raise UserError(
                f"-v {v}: summon's -v takes no options after the path ({path}); "
                "give NAME:/PATH or /HOST/FOLDER:/PATH"
            )
        if not sep or not source or not path.startswith("/"):
            raise UserError(f"-v {v}: expected NAME:/PATH or /HOST/FOLDER:/PATH, like data:/data")
        if why := volumes.mount_path_problem(path):
            raise UserError(f"-v {v}: {path}: {why}")
        if any(m.path == path for m in mounts):  # said here, before an instance is recorded
            raise UserError(f"-v {v}: two volumes at {path}")
        if source.startswith("/"):
            if not os.path.isdir(source):
                raise UserError(f"-v {v}: {source} is not a folder on this host")
            source = os.path.realpath(source)
            if not source.isascii() and not _utf8(source):
                # The instance's config (JSON, UTF-8) cannot name it: the start failed with
                # "'utf-8' codec can't encode character '\udcff'", exit status 1.
                raise UserError(f"-v {v!r}: the folder's name {source!r} is not UTF-8; rename it")
        elif source.startswith((".", "~")):
            raise UserError(f"-v {v}: give a host folder as an absolute path, like $PWD/{source}")
        else:
            volumes.check_name(source)
        mounts.append(Volume(source, path))
    return tuple(mounts)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a name the host's file system took bytes for
        return False
    return True


def parse_memory(text: str) -> int:
    """-m: a size between MIN_MEMORY and this host's memory."""
    from summon.manifest import host_memory, parse_size

    size = parse_size(text, lambda why: UserError(f"--memory: {why}"))
    total = host_memory()
    if size < MIN_MEMORY:
        raise UserError(f"--memory {text}: at least 8M is needed to start Python")
    if total and size > total:
        raise UserError(f"--memory {text}: more than this host has ({total // 2**20}M)")
    return size


def _image_or_folder(store: Any, image: str) -> Any:
    """The image IMAGE names: an app folder is built first. A bare name that is both an image
    and a folder here is the image (as docker run's): ./NAME is the folder."""
    from summon.store.image import Image

    if Path(image).is_dir():
        if "/" not in image and image not in (".", ".."):
            try:
                img = Image.open(store, image)
            except UserError:
                pass
            else:
                notice(f"running the image {img.ref}; to build and run the folder, give ./{image}")
                return img
        from summon.cli.images import build_app

        return build_app(Path(image), None).image
    return Image.open(store, image)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("image")
@click.argument("args", nargs=-1, metavar="[-- ARGS...]")
@click.option(
    "--target",
    type=TargetChoice(),
    help="Where to run it (default: the best this host has; see summon doctor).",
)
@click.option("--accel", help="VM targets: the accelerator, kvm or tcg (default: KVM if usable).")
@click.option(
    "--snapshot/--no-snapshot",
    default=None,
    help="Targets with snapshots: restore the app from its snapshot when one matches, saving "
    "one when none does (the default); --no-snapshot boots every time.",
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    metavar="NAME|/HOST/FOLDER:/PATH",
    help="Mount volume NAME (made on first use, kept across runs; see summon volume) or a "
    "host folder /HOST/FOLDER at PATH.",
)
@click.option(
    "-p",
    "--publish",
    "ports",
    multiple=True,
    metavar="[[ADDR:]HOST:]GUEST[/udp]",
    help="Forward a host port (on 127.0.0.1 unless ADDR, an IPv4 address of this host or "
    "0.0.0.0, is given; the guest's port number unless HOST is given) to the app. HOST "
    "and GUEST may be ranges of one length: -p 21000-21010:21000-21010.",
)
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable.")
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    metavar="FILE",
    help="Set the variables of FILE: KEY=VALUE lines (values as written), KEY alone for this "
    "environment's value, # comments; -e flags win over it.",
)
@click.option(
    "--secret",
    "secret_files",
    multiple=True,
    metavar="NAME=FILE",
    help="Give the app the secret NAME, read from FILE at each start (never put in the image).",
)
@click.option(
    "-m",
    "--memory",
    help="Memory limit, e.g. 64M (default: the manifest's; held by sandbox and qemu).",
)
@click.option(
    "--pids",
    type=numbers.IntRange(1, 32768),
    help="Most processes and threads (default: the manifest's; held by the sandbox).",
)
@click.option("--name", help="Instance name (default: derived from the image).")
@click.option("-d", "--detach", is_flag=True, help="Run it in the background (see summon ps).")
@click.option(
    "--restart",
    metavar="no|on-failure[:N]|always",
    help="With -d: when to start it again after it exits (default: no).",
)
@click.option("--rm", "remove", is_flag=True, help="Remove the instance when it exits.")
@click.option(
    "--verify-key",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="Refuse the image unless signed by this public key (default: config.toml verify_key).",
)
def run(
    image: str,
    args: tuple[str, ...],
    target: str | None,
    accel: str | None,
    snapshot: bool | None,
    volumes: tuple[str, ...],
    ports: tuple[str, ...],
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secret_files: tuple[str, ...],
    memory: str | None,
    pids: int | None,
    name: str | None,
    detach: bool,
    restart: str | None,
    remove: bool,
    verify_key: Path | None,
) -> None:
    """Run IMAGE (a name, ID, or an app folder, built first) in the foreground, or with -d.

    ARGS, after the image (and after `--` when one starts with '-'), are the app's arguments
    for this run, instead of the manifest's args: `summon run site -v db:/data -- migrate`
    runs `manage.py migrate` in the image. Arguments are data: no new code comes with them.
    """
    from summon.instances import lifecycle, state
    from summon.instances.restart import RestartPolicy

    if not image:  # Path("") is ".": the folder the user happens to be in, built unasked
        raise UserError("IMAGE '': give an image's name or ID, or an app folder (. for this one)")
    if restart is not None and not detach:
        raise UserError("--restart is for detached instances: add -d")
    if bad := next((n for n, arg in enumerate(args, 1) if not is_text(arg)), 0):
        raise UserError(f"ARGS: argument {bad} is not UTF-8 text{NOT_TEXT}")
    # '' (a variable unset) is refused, not taken for the default
    policy = RestartPolicy.parse("no" if restart is None else restart)
    if remove and policy.mode != "no":  # the policy won: it ran again and again, never removed
        raise UserError(
            f"--rm and --restart {restart}: choose one (an instance removed when it exits is "
            "not started again)"
        )
    forwards = parse_ports(ports)
    overrides = parse_env(env, env_files)
    mounts = parse_volumes(volumes)
    given = tuple(secrets.parse(v) for v in secret_files)
    if twice := sorted({s.name for s in given if [g.name for g in given].count(s.name) > 1}):
        raise UserError(f"--secret {twice[0]}: given twice; give each secret once")
    size = parse_memory(memory) if memory is not None else None
    if name is not None:
        state.check_name(name)
    target_name, why = (target, "") if target else targets.choose_default()
    options = {"accel": accel, "snapshot": snapshot}
    chosen = targets.get(target_name, **options)
    if mounts and VOLUMES not in chosen.capabilities:
        takers = [n for n in targets.names() if VOLUMES in targets.target_class(n).capabilities]
        raise UserError(f"-v: target {target_name} has no volumes (targets with volumes: "
                        f"{', '.join(takers) or 'none'})")  # fmt: skip
    if args and ARGS not in chosen.capabilities:
        takers = [n for n in targets.names() if ARGS in targets.target_class(n).capabilities]
        raise UserError(f"ARGS {' '.join(args)!r}: target {target_name} cannot give the app "
                        f"arguments (targets that can: {', '.join(takers) or 'none'})")  # fmt: skip
    if overrides and not chosen.env_at_run:
        raise UserError(f"-e: target {target_name} runs the app from a static site, whose "
                        "environment is the manifest's env: set it there and rebuild")  # fmt: skip
    if given and SECRETS not in chosen.capabilities:
        raise UserError(f"--secret: target {target_name} cannot give an instance secrets")
    check_ports_free(forwards)
    lifecycle.reconcile_all()  # what a killed run left behind goes first
    store = open_store()
    img = _image_or_folder(store, image)
    from summon.store.policy import config_rule, default_verify_key

    if (key := verify_key or default_verify_key()) is not None:
        from summon.store.signing import require_signature  # cryptography: ~50 ms to import

        rule = "--verify-key" if verify_key else config_rule()
        require_signature(store, img.desc, img.ref, key, rule)  # before anything starts
    if not target:
        notice(f"target {target_name} ({chosen.description}; {why})")
    with progress(f"preparing {img.ref} for {target_name}") as step:
        img = chosen.prepare(img, step)
    if lacking := secrets.missing(list(img.app_config().get("secrets", [])), given):
        flags = " ".join(f"--secret {n}=FILE" for n in lacking)
        raise UserError(f"image {img.ref} needs the secrets {', '.join(lacking)}: add {flags}")
    spec = RunSpec.for_image(
        img,
        name="",
        state_dir=Path(),
        ports=forwards,
        volumes=mounts,
        env=overrides,
        memory=size,
        secrets=given,
    )
    if pids is not None:
        spec.pids = pids
    spec.args = args
    # Its warnings before the instance exists go to its log too (for `summon logs`).
    with output.noticed() as warned:
        limits = {
            "memory": "--memory" if size else "",
            "pids": "--pids" if pids is not None else "",
        }
        if unheld := [
            flag for limit, flag in limits.items() if flag and limit not in chosen.held_limits
        ]:
            verb = "are" if len(unheld) > 1 else "is"
            notice(
                f"warning: {' and '.join(unheld)} {verb} ignored on target {target_name}, "
                f"{chosen.description}"
            )
        if forwards and (ignored := chosen.ports_ignored(spec)):
            notice(f"warning: {ignored}")
            forwards = spec.ports = ()
        if chosen.forwards_to_app_ports:
            check_guest_ports(forwards, spec.app_config)
        if mounts:  # as the target's start would, but before an instance is recorded
            from summon.targets.volume_stores import misplaced_stores
            from summon.targets.volumes import check_declared

            check_declared(spec)
            for misplaced in misplaced_stores(spec):
                notice(misplaced)
        for path in unmounted_volumes(mounts, spec.app_config):
            notice(
                f"warning: the image has a volume at {path} and this run mounts none there: the "
                f"app finds an empty, read-only folder; add -v NAME:{path} (a named volume, made "
                "on first use) to keep its data"
            )
        if warning := served_args_warning(args, spec.app_config):
            notice(warning)
    base = str(spec.app_config.get("name") or "app")
    started = lifecycle.start(
        spec,
        target=target_name,
        target_options={k: v for k, v in options.items() if v is not None},
        restart=policy,
        name=name,
        base_name=state.base_name(base),
        remove=remove,
        attached=not detach,
        notices=[line for line in warned if line.startswith("warning:")],
    )
    folder = started.folder
    for run in runs(list(forwards)):  # a -p range: one line, not one per port
        f, last = run[0], run[-1]
        shown = f"{f.host_port}-{last.host_port}" if len(run) > 1 else f"{f.host_port}"
        notice(f"{folder.name} ({folder.short_id}) serving {f.protocol} on {f.host_addr}:{shown}")
    if detach:
        output.out.print(folder.id)
        return
    from summon.instances.attach import wait_attached

    status = wait_attached(started)
    reason = str(folder.state().get("reason") or "")
    if reason.startswith("killed:"):  # what the status alone does not say: an OOM kill
        notice(f"{folder.name} ({folder.short_id}) {reason}")
    sys.exit(status)
