"""Hints for what an app tried that an image cannot do: a module it lacks, fork, exec, a
kernel socket on the direct stack.

The sandbox's seccomp filter answers EPERM to fork, vfork and execve. A pre-forking server
(gunicorn, uvicorn --workers, multiprocessing) then fails with a bare PermissionError; the
runtime adds one line saying why and what to do instead. Imported only on that error path.
"""

from __future__ import annotations

import os
import sys
from errno import EPERM, EROFS

from summon.runtime.config import host_path, parse_json

MODULES_TSV = "/etc/summon/modules.tsv"  # what the build knows of modules the image lacks

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# Names a function calls to make a process, as its code object lists them (co_names);
# subprocess's Popen._execute_child calls _fork_exec or _posix_spawn (3.11 aliases).
FORK_NAMES = frozenset(("fork", "forkpty"))
EXEC_NAMES = frozenset(
    ("fork_exec", "_fork_exec", "_posix_spawn", "execv", "execve", "execvp", "execvpe",
     "execl", "execle", "execlp", "execlpe", "posix_spawn", "posix_spawnp", "spawnv",
     "spawnve", "system", "popen")
)  # fmt: skip
FORK_HINT = (
    "this app tried to fork (pre-forking servers such as gunicorn cannot run here); "
    'serve it with entry = "module:app" so summon\'s runtime serves it'
)
# socket.socket.__init__ calls _socket.socket.__init__: its co_names hold "_socket".
SOCKET_NAMES = frozenset(("_socket",))
SOCKET_HINT = (
    'this app made a kernel socket, which the sandbox denies with network = "direct" (the '
    "app's TCP/IP is summon.net, reached through the Stack device): serve its app with "
    'entry = "module:app", use the Stack device, or build it with network = "socket"'
)
EXEC_HINT = (
    "this app tried to start another program or process, which the sandbox denies: an image "
    "runs one Python process; use threads or asyncio instead"
)


# Servers that start worker processes by default, by a folder their code is in, and how to
# run one process instead (docs/compatibility.md).
SERVER_HINTS = {
    "/sanic/": (
        "Sanic starts worker processes by default, which the sandbox denies (an image runs "
        "one Python process): start it with app.run(..., single_process=True)"
    ),
    # `hypercorn main:app`: its default, --workers 1, is one worker process beside the parent.
    "/hypercorn/run.py": (
        "Hypercorn runs the app in worker processes unless told otherwise, which the sandbox "
        "denies (an image runs one Python process): start it with --workers 0 (config.workers "
        "= 0, no --reload), which serves in its own process"
    ),
    # Granian(...).serve() and its command line: even workers=1 is a process of its own.
    "/granian/server/common.py": (
        "Granian serves in worker processes (workers=1 too), which the sandbox denies (an "
        "image runs one Python process): serve the app with granian.server.embed.Server "
        "(await Server(app, ...).serve(), in this process), or make entry the app itself "
        '(entry = "module:app"), which summon\'s runtime serves'
    ),
    "/uvicorn/supervisors/multiprocess.py": (
        "uvicorn's workers (--workers N, uvicorn.run(workers=N)) are processes, which the "
        "sandbox denies (an image runs one Python process): start it with one worker (the "
        "default), which serves in its own process"
    ),
}


# An auto-reloader runs the app again in a child process that it restarts when a source
# changes: werkzeug's (Flask's and Dash's app.run(debug=True)), uvicorn's reload=True,
# Django's runserver, hupper (pserve --reload), tornado.autoreload. Found by its file's name.
RELOAD_MARKER = "reload"
RELOAD_HINT = (
    "this app's auto-reloader ({file}) runs the app again in a child process, which the "
    "sandbox denies (an image runs one Python process, and its code never changes): turn "
    "reloading off (app.run(debug=False) or use_reloader=False in Flask and Dash, "
    "reload=False in uvicorn.run, --noreload for Django's runserver){call}"
)
APP_DIR = "/app"  # the image's app folder


def _app_call(exc: BaseException) -> str:
    """Where the app's own code started the reloader: its innermost frame under the app
    folder before the reloader's first in exc's traceback, as "; the app started it at FILE
    line N: CODE" ("" if none is there). A framework's reloader is switched where the app
    starts it (NiceGUI's ui.run(), whose reload=True is the default): the line shows where."""
    folder = host_path(os.environ.get("SUMMON_ROOT") or "/", APP_DIR).rstrip("/") + "/"
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if RELOAD_MARKER in name.rpartition("/")[2]:
            break
        if name.startswith(folder):
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    import linecache  # the error path only

    name = found.tb_frame.f_code.co_filename
    code = linecache.getline(name, found.tb_lineno).strip()
    shown = APP_DIR + "/" + name[len(folder) :]
    return f"; the app started it at {shown} line {found.tb_lineno}" + (f": {code}" if code else "")


def _reloader(exc: BaseException) -> str | None:
    """The file of an auto-reloader a frame of exc's traceback runs, if any."""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        base = name.rpartition("/")[2]
        if RELOAD_MARKER in base:
            parent = name.rpartition("/")[0].rpartition("/")[2]
            return f"{parent}/{base}"
        tb = tb.tb_next
    return None


def _passes_through(exc: BaseException, marker: str) -> bool:
    """Whether a frame of exc's traceback runs code from a file whose path holds marker."""
    tb = exc.__traceback__
    while tb is not None:
        if marker in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: causes, contexts, members of groups."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        pending += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            pending += e.exceptions


def sandbox_hint(exc: BaseException) -> str | None:
    """The hint for a fork or exec denied with EPERM, if that is (behind) `exc`.

    Which call failed is read from the innermost frame: os.fork raises from C, so the last
    Python frame is the one that called it, and its code's co_names hold the name.
    """
    for e in chain(exc):
        if not (isinstance(e, OSError) and e.errno == EPERM):
            continue
        tb = e.__traceback__
        if tb is None:
            continue
        in_popen = False  # subprocess.Popen on its way to a process: its pipes, its fork
        while tb.tb_next is not None:
            in_popen = in_popen or tb.tb_frame.f_code.co_filename.endswith("/subprocess.py")
            tb = tb.tb_next
        in_popen = in_popen or tb.tb_frame.f_code.co_filename.endswith("/subprocess.py")
        names = set(tb.tb_frame.f_code.co_names)
        if names & (FORK_NAMES | EXEC_NAMES) or in_popen:
            # A server whose own default is worker processes has a switch for one.
            for marker, hint in SERVER_HINTS.items():
                if _passes_through(e, marker):
                    return hint
            reloader = _reloader(e)
            if reloader is not None:
                return RELOAD_HINT.format(file=reloader, call=_app_call(e))
        if names & FORK_NAMES:
            return FORK_HINT
        if names & EXEC_NAMES or in_popen:
            return EXEC_HINT
        # Only the direct stack's sandbox denies socket() itself (it passes the TAP as fd 3);
        # elsewhere an EPERM there is about a capability, such as a raw socket's.
        if names & SOCKET_NAMES and os.environ.get("SUMMON_TAP_FD"):
            return SOCKET_HINT
    return None


def missing_module_hint(exc: BaseException) -> str | None:
    """The hint for a module the image lacks, if that is (behind) `exc`."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if type(e).__name__ == "PackageNotFoundError":
            # importlib.metadata's, a ModuleNotFoundError whose name is a distribution's:
            # version("x") or distribution("x") found no .dist-info, not a missing module.
            return _distribution_hint(str(e.args[0]) if e.args else "")
        if isinstance(e, ModuleNotFoundError) and e.name:
            return _hint_for(e.name)
        pending += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            pending += e.exceptions
    return None


def _manifest() -> str:
    """Where the app's manifest keys are written ("summon.toml", "[tool.summon]"), as the
    image's app.json says. Read only here, on the way to a hint."""
    from summon.runtime.config import APP_JSON, manifest_table

    try:
        with open(host_path(os.environ.get("SUMMON_ROOT") or "/", APP_JSON), "rb") as f:
            return manifest_table(parse_json(f.read().decode("utf-8")))
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return manifest_table({})


def _hint_for(name: str) -> str:
    rebuild = f"in {_manifest()} and rebuild"
    known = _module_table(name)
    if known is not None:
        state, detail = known
        if state == "excluded":
            return (
                f"module {name!r} is not in this image: {detail} leaves it out; remove it "
                "from exclude and rebuild"
            )
        if state == "missing":
            return (
                f"module {name!r} is not in this image; it comes from the distribution "
                f"{detail}: add it to requirements {rebuild}"
            )
        if state == "vendored":
            return (
                f"module {name!r} is not in this image although its distribution {detail} is; "
                f"add it to include = [...] {rebuild}, and report a closure bug"
            )
    if name.partition(".")[0] in sys.stdlib_module_names:
        return f"module {name!r} is not in this image; add it to include = [...] {rebuild}"
    return (
        f"module {name!r} is not in this image; add the distribution that provides it "
        f"to requirements {rebuild}"
    )


def _distribution_hint(name: str) -> str:
    return (
        f"no distribution {name!r} is installed in this image (importlib.metadata found no "
        f"metadata for it); add it to requirements in {_manifest()}, or, if it is the app's "
        "own project, give name and version in pyproject.toml's [project], and rebuild"
    )


def _module_table(name: str) -> tuple[str, str] | None:
    """(state, detail) for name or its nearest package in MODULES_TSV, written by the build
    for the modules its code names (module TAB state TAB detail per line). Read only here,
    on the way to a hint: no cost at start."""
    root = os.environ.get("SUMMON_ROOT") or "/"
    try:
        with open(host_path(root, MODULES_TSV), encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
    except OSError:
        return None
    table = {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        found = table.get(".".join(parts[:i]))
        if found is not None:
            return found
    return None


def environ_hint(exc: BaseException) -> str | None:
    """The hint for os.environ["NAME"] of a variable the run does not set, if that is (behind)
    `exc`: the build's runs had it (summon build -e), a run must be given its own."""
    for e in chain(exc):
        if type(e) is not KeyError or not e.args or not isinstance(e.args[0], str):
            continue
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        if code is None or code.co_name != "__getitem__":
            continue
        if code.co_filename in ("<frozen os>", "os.py") or code.co_filename.endswith("/os.py"):
            name = e.args[0]
            return (
                f"the app reads the variable {name}, which this run does not set: give it "
                f"with summon run -e {name}=VALUE (or a default in the manifest's env)"
            )
    return None


def volume_hint(exc: BaseException) -> str | None:
    """The hint for a write the read-only image refused, if that is (behind) `exc`: a volume
    the manifest declares that this run did not mount, or /app written to."""
    sure = unsure = False
    for e in chain(exc):
        text = str(e)
        if (isinstance(e, OSError) and e.errno == EROFS) or "readonly database" in text:
            sure = True
        elif "unable to open database file" in text:
            unsure = True  # sqlite's: a folder that is not there, or one it cannot write
    if not (sure or unsure):
        return None
    mounted = {
        item.partition("=")[0].rstrip("/")
        for item in os.environ.get("SUMMON_VOLUMES", "").split(":")
        if item
    }
    declared: list[str] = []
    root = os.environ.get("SUMMON_ROOT") or "/"
    try:
        with open(host_path(root, "/etc/summon/app.json"), encoding="utf-8") as f:
            doc = parse_json(f.read())
        found = doc.get("volumes") if isinstance(doc, dict) else None
        declared = [v.rstrip("/") for v in found or () if isinstance(v, str)]
    except (OSError, ValueError, AttributeError):
        pass
    missing = [v for v in declared if v not in mounted]
    if missing:
        return (
            f"the image is read-only and this run mounts no volume at {missing[0]}: give it "
            f"one with summon run -v NAME:{missing[0]} (a named volume, made on first use)"
        )
    if sure:
        return (
            "the image is read-only, its app folder /app included: keep what the app writes "
            'on a volume (volumes = ["/data"] in the manifest, summon run -v NAME:/data) and '
            "point the app there"
        )
    if not declared:
        # sqlite names no path: a database beside the app's code (Django's startproject,
        # sqlite:///app.db), which `python manage.py runserver` creates on the host, is the
        # usual one. With volumes declared and mounted, the path is the app's to check.
        return (
            "sqlite could not open or create its database file; if it is in the app's folder, "
            "that is read-only in an image (/app): keep the database on a volume "
            '(volumes = ["/data"] in the manifest, summon run -v NAME:/data) and point the '
            "app there"
        )
    return None
