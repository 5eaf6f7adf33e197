"""The gateway's own process: `summon gateway` checks its flags and config, then becomes this.

`python -S -P -m summon.gateway.main --config PATH [-v]`, with PYTHONPATH naming the folders
the CLI's interpreter had on sys.path: no site.py (the .pth files of site-packages import
what they like: certifi, a setuptools hook) and no click, ~1.4 MB less at rest (measured:
23.6 -> 22.3 MB resident with one service) in a process that stays up for days. It also
keeps OpenSSL out, which the gateway never uses (without_unused_libraries), is handed the
config the CLI checked rather than parsing TOML (CHECKED_CONFIG), and runs its blocking calls
on workers that end when idle (rest.py): the gateway's memory at rest is a goal of its own
(benchmarks/bench_perf.py).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from summon.errors import SummonError, UserError

if TYPE_CHECKING:
    from collections.abc import Sequence

ORIGINAL_PYTHONPATH = "SUMMON_GATEWAY_PYTHONPATH"  # what the user had, for the instances
# The config the CLI read and checked, as JSON: this process then parses no TOML (the TOML
# parser and datetime, ~0.4 MB, load on a reload only), and serves the file that was checked.
CHECKED_CONFIG = "SUMMON_GATEWAY_CONFIG"
CHECKED_LIMIT = 100_000  # characters; Linux takes at most 128 KiB in one environment string
# What the host's user can fix (cli/main.py says these as one line and status 2 too).
USER_ERRNOS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE)
)


def without_unused_libraries() -> None:
    """Keep OpenSSL out of the gateway's process, ~8 MB of its resident memory at rest.

    The gateway never speaks TLS: asyncio imports ssl only to offer it (libssl, ~5 MB), and
    hashlib takes OpenSSL's digests when it can (libcrypto, ~3.5 MB) where its own built-in
    SHA-256 does for the few small blobs the gateway reads. Both modules then fail to import
    and their users fall back, as on a Python built without OpenSSL. (bz2 and lzma stay: a
    qemu service's boot reads its kernel image with lzma.) Only in a fresh process.
    """
    if not {"ssl", "_hashlib", "hashlib", "asyncio"} & set(sys.modules):
        sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl: ImportError
        sys.modules["_hashlib"] = None  # type: ignore[assignment]


def lean_command(
    config: Path, verbose: bool, checked: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of the gateway's own process (see the module docstring);
    checked: the config file's document, as read and checked (else the process reads it)."""
    import json

    env = dict(os.environ)
    env[ORIGINAL_PYTHONPATH] = env.get("PYTHONPATH", "")
    env.pop(CHECKED_CONFIG, None)
    try:
        text = json.dumps(checked) if checked is not None else ""
    except (TypeError, ValueError):  # a TOML date or time somewhere: JSON has none
        text = ""
    if text and len(text) <= CHECKED_LIMIT:
        env[CHECKED_CONFIG] = text
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    # -P: `-m` would put the working folder first on sys.path, where any file could shadow
    # a module the gateway imports; the console script never had it there.
    argv = [sys.executable, "-S", "-P", "-m", "summon.gateway.main", "--config", str(config)]
    return argv + (["-v"] if verbose else []), env


async def serve(path: Path, checked: dict[str, Any] | None = None) -> None:
    """Run the gateway of the config at `path` (checked: its document, already read) until
    SIGINT or SIGTERM; SIGHUP reloads the file."""
    import asyncio

    from summon.gateway import config as config_mod
    from summon.gateway.rest import IdleWorkers
    from summon.gateway.server import CannotListen, Gateway

    asyncio.get_running_loop().set_default_executor(IdleWorkers())
    config = config_mod.parse(checked, path) if checked is not None else config_mod.load(path)
    config_mod.check_paths(config)
    del checked  # the document stays in no frame for the gateway's lifetime (~0.5 KB a service)
    gateway = Gateway(config)
    if gateway.in_use_dir is not None:
        writable(gateway.in_use_dir)
    try:
        await gateway.start()
    except OSError as e:
        await gateway.close()
        said = e.strerror if isinstance(e, CannotListen) else f"cannot listen: {e.strerror or e}"
        raise UserError(f"gateway: {said}") from None
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
            config_mod.check_paths(new)
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


def writable(folder: Path) -> None:
    """UserError unless folder (the instances' bundles and logs) can be made and written to:
    the gateway started, and each boot failed with "[Errno 2] No such file or directory:
    '/proc/nope'" (XDG_STATE_HOME=/proc/nope), or the like."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600))  # gone once closed
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR):  # a file system without it
                raise
            if not os.access(folder, os.W_OK):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES)) from None
    except OSError as e:
        why = e.strerror or os.strerror(e.errno or 0)
        from summon import paths

        moved = paths.folder_of(folder)
        fix = f"; make it one it can write, or set {moved.variable} to one" if moved else ""
        raise UserError(f"gateway: cannot write to its state folder {folder}: {why}{fix}") from None


def main(argv: Sequence[str]) -> int:
    """`--config PATH [-v]`, as `summon gateway` hands them over; the exit status."""
    without_unused_libraries()
    args = list(argv)
    verbose = "-v" in args
    if verbose:
        args.remove("-v")
    if len(args) != 2 or args[0] != "--config":
        print("usage: summon gateway --config PATH [-v]", file=sys.stderr)
        return 2
    original = os.environ.pop(ORIGINAL_PYTHONPATH, None)
    if original is not None:  # the instances this starts get the user's, not this one's
        if original:
            os.environ["PYTHONPATH"] = original
        else:
            os.environ.pop("PYTHONPATH", None)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="summon gateway: %(message)s",
    )
    import asyncio

    from summon.gateway.sharing import raise_file_limit

    raise_file_limit()
    try:
        # the document is held by no frame of this one: serve drops it once parsed
        asyncio.run(serve(Path(args[1]), _checked(os.environ.pop(CHECKED_CONFIG, ""))))
    except SummonError as e:
        print(f"summon: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        if e.errno not in USER_ERRNOS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"summon: error: {e.strerror or os.strerror(e.errno or 0)}{where}", file=sys.stderr)
        return 2
    return 0


def _checked(text: str) -> dict[str, Any] | None:
    if not text:
        return None
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        return None  # the file is read instead
    return doc if isinstance(doc, dict) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
