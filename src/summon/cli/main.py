"""The `summon` command: the group of verbs, each imported only when used, and exit codes.

Each verb lives in a module of its own (images.py, run.py, instances.py, ship.py...) with its
flag parsing and output; the work happens in the packages. Errors summon raises on purpose
(SummonError) become one line and their exit status; anything else is an internal error
whose traceback goes to a log file.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

import summon
from summon import paths
from summon.cli.output import Terminated, fail
from summon.cli.usage import VerbGroup, shows_itself, usage_failed
from summon.errors import CorruptBlob, SummonError

# Every verb, by the module that defines it: `summon run` must not pay for the registry
# client, the gateway or the instance table.
LAZY_COMMANDS = {
    **dict.fromkeys(("build", "images", "inspect", "rmi", "export", "kube"), "summon.cli.images"),
    "run": "summon.cli.run",
    "doctor": "summon.cli.doctor",
    "kernel": "summon.cli.kernel",
    **dict.fromkeys(
        ("push", "pull", "tag", "sign", "verify", "key", "login", "logout"), "summon.cli.ship"
    ),
    **dict.fromkeys(
        ("ps", "logs", "start", "stop", "restart", "rm", "stats"), "summon.cli.instances"
    ),
    "gateway": "summon.cli.gateway",
    "snapshot": "summon.cli.snapshot",
    "volume": "summon.cli.volumes",
}

# Failures of the host the user can fix (a full disk, a read-only or foreign folder, too many
# open files): one line and status 2 wherever they happen, rather than an internal error.
# ENOTDIR: a file where summon's folder should be (XDG_STATE_HOME naming a file, say).
# EISDIR: a folder where summon's file should be (the store's index.json, say).
# ENAMETOOLONG and ELOOP: a name the user gave (`key generate` of 300 letters was an internal
# error: Path.exists() raises them).
USER_ERRNOS = frozenset(
    (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE,
     errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP)
)  # fmt: skip
# Of those, the ones a folder's setting can fix (not a full disk).
FOLDER_ERRNOS = frozenset((errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR))


class SummonGroup(VerbGroup):
    """Finds LAZY_COMMANDS, importing their module on first use; turns errors into one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:  # `summon --bogus`: the group's own flags are parsed here, before invoke
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            if shows_itself(e):
                raise
            usage_failed(e)

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
            message = _damaged(e) if isinstance(e, CorruptBlob) else str(e)
            fail(message, e.exit_status, getattr(e, "detail", ""))
        except click.UsageError as e:
            if shows_itself(e):
                raise
            usage_failed(e)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Terminated as e:
            fail(f"stopped by {e}", 128 + e.signum)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            if not _stdout_gone():
                raise
            # Its reader went away (`summon logs -f web | head`): end as SIGPIPE ends cat,
            # quietly; stdout goes to /dev/null so that the exit's flush has nowhere to fail.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + 13)  # SIGPIPE
        except Exception as e:
            said = _host_failure(e) if isinstance(e, OSError) else None
            if said:
                fail(said, 2)
            # An internal failure: say where the details are.
            log = _write_crash_log()
            fail(f"internal error: {type(e).__name__}: {e} (details in {log})", 1)


def _host_failure(e: OSError) -> str | None:
    """The line for a failure of the host the user can fix, or None (a bug).

    One in summon's folders names the folder and the setting that moves it: XDG_STATE_HOME on
    a read-only mount said only "Read-only file system: .../instances/.lock", and on a folder
    that cannot be made (a dangling link, /proc/self) it was an internal error."""
    folder = paths.folder_of(e.filename) if isinstance(e.filename, (str, Path)) else None
    unmade = folder is not None and not folder.path.is_dir()
    if e.errno not in USER_ERRNOS and not unmade:
        return None
    if folder is not None and e.errno in paths.NO_SPACE:  # a full disk: which, and what to do
        return paths.no_space_line(folder, e.strerror or os.strerror(e.errno or 0))
    line = e.strerror or os.strerror(e.errno or 0)
    if e.filename:
        line += f": {e.filename}"
    if folder is not None and e.errno in FOLDER_ERRNOS | {errno.ENOENT, errno.EEXIST}:
        line += (
            f"; summon keeps {folder.what} in {folder.path}: make that a folder it can write, "
            f"or set {folder.variable} to one"
        )
    return line


def _damaged(e: CorruptBlob) -> str:
    """e's line, naming the images that hold the damaged blob it names (store/damaged.py)."""
    try:
        from summon.store import Store
        from summon.store.damaged import explain

        root = paths.store_dir()
        if not (root / "index.json").is_file():  # not made for a message
            return str(e)
        return explain(Store(root), str(e))
    except Exception:  # a store too damaged to list: the line as it was
        return str(e)


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has closed it."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), 0)  # POLLERR and POLLHUP are always reported
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False


def _write_crash_log() -> Path:
    import datetime  # only after a crash: neither is worth every command's start
    import traceback

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"crash-{stamp}-{os.getpid()}.log"
    text = traceback.format_exc()
    try:
        folder = paths.state_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
        return folder / name
    except OSError:  # the state folder is what is broken: the report goes to /tmp instead
        import tempfile

        fd, where = tempfile.mkstemp(prefix=name.removesuffix(".log") + "-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(where)


@click.group("summon", cls=SummonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(summon.__version__, prog_name="summon")
def cli() -> None:
    """Build Python apps into sealed unikernel images, and run them.

    \b
    summon build examples/http -t http       build an image
    summon run http -p 8080:80               run it sandboxed, serving 127.0.0.1:8080
    summon run -d http / ps / logs / stop    run it in the background, and manage it
    summon start / restart NAME              run a stopped instance again, as it was run
    summon images / inspect / rmi            manage the local store
    summon volume ls / inspect / export      the volumes apps keep their data in
    summon export http --as FORMAT -o PATH   hand an image to another system
    summon doctor                            what this host can run
    """


def main() -> None:
    _closed_streams_read_as_devnull()
    cli(prog_name="summon")


def _closed_streams_read_as_devnull() -> None:
    """A standard stream the caller closed (`summon images >&-`) is /dev/null instead.

    Python leaves sys.stdout None for a closed fd 1, and every verb that printed was an
    internal error (--help a traceback); and the next file summon opened would take the free
    number, where runc, qemu or the app, inheriting it as their output, would write."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))


if __name__ == "__main__":
    main()
