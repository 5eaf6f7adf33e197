"""`summon gateway`: parsing and signals only; the work is in summon.gateway.

cli/main.py registers COMMANDS.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from summon.errors import UserError

if TYPE_CHECKING:
    import asyncio


def _without_openssl() -> None:
    """Keep OpenSSL out of the gateway's process, ~8 MB of its resident memory at rest.

    The gateway never speaks TLS: asyncio imports ssl only to offer it (libssl, ~5 MB), and
    hashlib takes OpenSSL's digests when it can (libcrypto, ~3.5 MB) where its own built-in
    SHA-256 does for the few small blobs the gateway reads. Both modules then fail to import
    and their users fall back, as they do on a Python built without OpenSSL. Only in a fresh
    process (a test running the command in its own has them, or asyncio, loaded already).
    """
    if not {"ssl", "_hashlib", "hashlib", "asyncio"} & set(sys.modules):
        sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl: ImportError
        sys.modules["_hashlib"] = None  # type: ignore[assignment]


def _trim_heap() -> None:
    """Give the heap pages that starting up used and freed back to the system (~1 MB of the
    gateway's resident memory at rest): glibc keeps them otherwise."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


async def _serve(path: Path) -> None:
    import asyncio

    from summon.gateway import config as config_mod
    from summon.gateway.server import Gateway

    gateway = Gateway(config_mod.load(path))
    try:
        await gateway.start()
    except OSError as e:
        await gateway.close()
        raise UserError(f"gateway: cannot listen: {e.strerror or e}") from None
    _trim_heap()
    cfg = gateway.config
    print(
        f"summon gateway: DNS on {cfg.dns[0]}:{cfg.dns[1]} for {cfg.zone}, "
        f"status on http://{cfg.status[0]}:{cfg.status[1]}/",
        file=sys.stderr,
    )
    for name, svc in gateway.services.items():
        ports = ",".join(map(str, svc.config.ports))
        print(f"  {name}.{cfg.zone} -> {svc.address}:{ports} ({svc.config.image})", file=sys.stderr)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    reloads: list[asyncio.Task[None]] = []

    async def reload() -> None:
        try:
            new = config_mod.load(path)
        except UserError as e:  # a bad edit keeps the running config
            print(f"summon gateway: reload refused: {e}", file=sys.stderr)
            return
        await gateway.reload(new)
        print(f"summon gateway: reloaded {path}", file=sys.stderr)

    loop.add_signal_handler(signal.SIGINT, done.set)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reloads.append(loop.create_task(reload())))
    try:
        await done.wait()
    finally:
        print("summon gateway: stopping every instance", file=sys.stderr)
        await gateway.close()


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The gateway config file (TOML; see docs/gateway.md).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log boots, stops and failures.")
def gateway_command(config_path: Path, verbose: bool) -> None:
    """Serve services on demand: boot on DNS query or connection, stop when idle."""
    _without_openssl()
    from summon.gateway import config as config_mod

    config_mod.load(config_path)  # a bad file fails here, before anything listens
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="summon gateway: %(message)s",
    )
    import asyncio

    asyncio.run(_serve(config_path))


COMMANDS: tuple[click.Command, ...] = (gateway_command,)
