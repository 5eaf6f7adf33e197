"""The shipping commands: push, pull, tag, sign, verify and key; cli/main.py registers them.

Parsing and output only: the work is in summon.store.registry and summon.store.signing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from summon.cli.output import animated, err, notice, open_store, out, termination_unwinds
from summon.cli.pathflags import NonEmptyPath
from summon.cli.usage import VerbGroup
from summon.errors import UserError

if TYPE_CHECKING:
    from summon.store.registry import Transfer

# httpx and cryptography take a fifth of a second to import: the commands import them when run,
# so every other summon command stays quick.


class _TransferView:
    """Renders registry transfers: a bar per blob on a terminal, a line per blob otherwise."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        from summon.store.image import BOM_TYPE
        from summon.store.layout import CONFIG, EMPTY, LAYER_GZIP
        from summon.store.rootfs_artifact import EROFS_TYPE, FILES_TYPE
        from summon.store.signing import PAYLOAD_TYPE

        self.kinds = {
            LAYER_GZIP: "root filesystem",
            CONFIG: "config",
            BOM_TYPE: "bill of materials",
            PAYLOAD_TYPE: "signature payload",
            EMPTY: "empty config",
            EROFS_TYPE: "root filesystem (erofs)",
            FILES_TYPE: "file list",
        }
        if animated():
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
            )

    def __enter__(self) -> _TransferView:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress:
            self.progress.stop()

    def __call__(self, t: Transfer) -> None:
        kind = self.kinds.get(t.media_type, t.media_type)
        label = f"{t.digest[7:19]} {kind}"
        if self.progress is None:
            if t.state == "exists":
                print(f"{self.verb}: {label} ({decimal(t.total)}) already there", file=sys.stderr)
            elif t.state == "done":
                print(f"{self.verb}: {label} ({decimal(t.total)}) done", file=sys.stderr)
            return
        if t.digest not in self.tasks:
            self.tasks[t.digest] = self.progress.add_task(label, total=t.total)
        note = " (already there)" if t.state == "exists" else ""
        self.progress.update(self.tasks[t.digest], completed=t.done, description=label + note)


_insecure = click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify the registry's TLS certificate, and allow plain HTTP (always allowed "
    "for a registry on this machine).",
)
_ca_file = click.option(
    "--ca-file",
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="Trust this CA certificate (PEM) for the registry, beside the system's and certs.d.",
)


@click.command("push")
@click.argument("image")
@click.argument("destination", required=False)
@_insecure
@_ca_file
@click.option("--no-signatures", is_flag=True, help="Leave the image's signatures behind.")
@click.option(
    "--force", is_flag=True, help="Push even when a file in the image holds a private key."
)
def push_command(
    image: str,
    destination: str | None,
    insecure: bool,
    ca_file: Path | None,
    no_signatures: bool,
    force: bool,
) -> None:
    """Send IMAGE to a registry: to DESTINATION, or to where IMAGE's name says.

    \b
    summon tag http:v1 127.0.0.1:5000/team/http:v1
    summon push 127.0.0.1:5000/team/http:v1
    summon push http:v1 registry.example.com/team/http:v1
    """
    from summon.store.reference import RemoteRef
    from summon.store.signing import SIGNATURE_TYPE
    from summon.store.sync import push

    remote = RemoteRef.parse(image if destination is None else destination)
    types = () if no_signatures else (SIGNATURE_TYPE,)
    if not force:
        refuse_keys(image)
    with termination_unwinds(), _TransferView("push") as view:
        result = push(
            open_store(),
            image,
            remote,
            insecure=insecure,
            ca_file=ca_file,
            progress=view,
            referrer_types=types,
        )
    sigs = f", {result.referrers} signature(s)" if result.referrers else ""
    out.print(
        f"pushed {remote} ({result.digest}): {result.blobs_sent} blobs sent "
        f"({decimal(result.bytes_sent)}), {result.blobs_skipped} already there{sigs}"
    )


def refuse_keys(image: str) -> None:
    """A private key in the image is a secret about to leave: refuse, naming the files."""
    from summon.store.image import Image
    from summon.store.keyscan import scan_stored

    img = Image.open(open_store(), image)
    found = scan_stored(img.store, img.layer)
    if found:
        files = ", ".join(f"{path} ({why})" for path, why in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise UserError(
            f"image {img.ref} holds private keys: {files}{more}; give keys at run time with "
            "--secret NAME=FILE and rebuild without them, or push --force if they are meant "
            "to be public"
        )


@click.command("pull")
@click.argument("reference")
@_insecure
@_ca_file
@click.option("--no-signatures", is_flag=True, help="Do not fetch the image's signatures.")
def pull_command(reference: str, insecure: bool, ca_file: Path | None, no_signatures: bool) -> None:
    """Fetch REFERENCE (REGISTRY/NAME[:TAG] or REGISTRY/NAME@DIGEST) into the local store."""
    from summon.store.reference import RemoteRef
    from summon.store.signing import SIGNATURE_TYPE
    from summon.store.sync import pull

    remote = RemoteRef.parse(reference)
    types = () if no_signatures else (SIGNATURE_TYPE,)
    with termination_unwinds(), _TransferView("pull") as view:
        result = pull(
            open_store(),
            remote,
            insecure=insecure,
            ca_file=ca_file,
            progress=view,
            referrer_types=types,
        )
    sigs = f", {result.referrers} signature(s)" if result.referrers else ""
    out.print(
        f"pulled {result.local} ({result.digest}): {result.blobs_fetched} blobs fetched "
        f"({decimal(result.bytes_fetched)}), {result.blobs_present} already here{sigs}"
    )


@click.command("login")
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for on a terminal if not given).")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@_insecure
@_ca_file
def login_command(
    registry: str,
    username: str | None,
    password_stdin: bool,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Log in to REGISTRY (HOST[:PORT]) and keep the credentials where docker, podman and
    skopeo find them too ($REGISTRY_AUTH_FILE, else ~/.docker/config.json, or its helper)."""
    from summon.store import credentials
    from summon.store.auth import Credentials
    from summon.store.reference import RemoteRef, registry_problem
    from summon.store.registry import Registry

    if "/" in registry or not registry:
        raise UserError(f"{registry!r}: give the registry as HOST or HOST:PORT, no path")
    if why := registry_problem(registry):  # before a password is asked for
        raise UserError(why)
    if username is None:
        if not sys.stdin.isatty():
            raise UserError("no --username, and no terminal to ask for one on")
        username = click.prompt("Username", err=True)
    if password_stdin:
        password = sys.stdin.readline(1 << 20).rstrip("\r\n")  # `yes |`: one line, bounded
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, err=True)
    else:
        raise UserError("give the password on standard input with --password-stdin")
    if not username or not password:
        raise UserError("the user name and the password must not be empty")
    given = Credentials(username, password, Path("(the command line)"))
    probe = RemoteRef.parse(f"{registry}/summon/login:check")
    with Registry(probe, insecure=insecure, ca_file=ca_file, credentials=given) as reg:
        reg.ping()  # a refused login fails here, before anything is written
    where = credentials.login(registry, username, password)
    out.print(f"logged in to {registry} as {username} (credentials in {where})")


@click.command("logout")
@click.argument("registry")
def logout_command(registry: str) -> None:
    """Forget the login for REGISTRY."""
    from summon.store import credentials

    if "/" in registry or not registry:  # as login says it: "not logged in to  (...)" before
        raise UserError(f"{registry!r}: give the registry as HOST or HOST:PORT, no path")
    if credentials.logout(registry):
        out.print(f"logged out of {registry}")
    else:
        raise UserError(f"not logged in to {registry} ({credentials.auth_file()})")


@click.command("tag")
@click.argument("source")
@click.argument("target")
def tag_command(source: str, target: str) -> None:
    """Give the image SOURCE (a name or ID) another name, TARGET.

    A TARGET that names another image already moves to SOURCE's; that image is kept, as
    <none> (`summon images`), usable by its ID.
    """
    store = open_store()
    _, desc = store.resolve(source)
    moved = store.tag(target, desc)
    full, _ = store.resolve(target)
    out.print(f"tagged {full} ({desc.short_id})")
    if moved is not None:  # the tag left an image: it was silently <none>
        notice(
            f"the image {full} named before (ID {moved.short_id}) is kept as <none>; "
            f"`summon tag {moved.short_id} NAME` names it again"
        )


@click.command("sign")
@click.argument("image")
@click.option(
    "--key",
    "key",
    required=True,
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="PEM private key (`summon key generate`); its password in $SUMMON_KEY_PASSWORD.",
)
def sign_command(image: str, key: Path) -> None:
    """Sign IMAGE's digest; the signature is kept with it and travels with push and pull."""
    from summon.store.signing import sign

    result = sign(open_store(), image, key)
    if result.already:
        out.print(f"{result.ref} ({result.digest}) is signed by key {result.key_id} already")
    else:
        out.print(
            f"signed {result.ref} ({result.digest}) with key {result.key_id}: signature "
            f"{result.signature[:19]}"
        )


@click.command("verify")
@click.argument("image")
@click.option(
    "--key",
    "key",
    required=True,
    type=NonEmptyPath(dir_okay=False, path_type=Path),
    help="PEM public key (the .pub of `summon key generate`, or a cosign.pub).",
)
def verify_command(image: str, key: Path) -> None:
    """Check that IMAGE carries a signature of its digest by KEY; exit 2 if not."""
    from summon.store.signing import verify

    v = verify(open_store(), image, key)
    out.print(f"verified {v.ref} ({v.digest}): signed by key {v.key_id} as {v.identity or '-'}")


@click.group("key", cls=VerbGroup)
def key_group() -> None:
    """Signing keys."""


@key_group.command("generate")
@click.argument("name", type=click.Path(dir_okay=False, path_type=Path))
def key_generate(name: Path) -> None:
    """Make an ECDSA P-256 key pair: NAME.key (private, mode 0600) and NAME.pub.

    The private key is encrypted with the password in $SUMMON_KEY_PASSWORD when it is set.
    """
    from summon.store.signing import PASSWORD_ENV, generate_key

    if name.name in ("", ".", ".."):  # '' (a variable unset): Path('') is '.', no name
        raise UserError("key generate '': give the key pair's name, such as ci-key")
    key_path, pub_path = generate_key(name, os.environ.get(PASSWORD_ENV) or None)
    out.print(f"wrote {key_path} (keep it secret) and {pub_path} (give it to verifiers)")


COMMANDS: tuple[click.Command, ...] = (
    push_command,
    pull_command,
    tag_command,
    sign_command,
    verify_command,
    key_group,
)
