"""Running the closure trace (_trace.py) under the image's interpreter, and its modulefinder twin.

The trace is a child process in its own session, bounded by a timeout; its answer is a JSON
file. modulefinder, which only feeds the report of what was left out, runs beside it in the
background and is waited for only when someone reads the comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from summon.build.python import Interpreter
from summon.errors import BuildError

_TRACE = Path(__file__).with_name("_trace.py")
_TAIL = 40  # lines of the app's own output shown under a failure


class TraceError(BuildError):
    """The app failed during the trace; .detail holds the traceback and the app's output."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Comparison:
    """A modulefinder child still running; owns the trace's temporary folder until done."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        work: Path,
        started: float,
        timeout: float,
        failed: Mapping[str, str],
    ) -> None:
        self.proc = proc
        self.work = work
        self.started = started
        self.timeout = timeout
        self.failed = dict(failed)
        # Never leave the child or the folder behind, even if nobody reads left_out.
        self._finalizer = weakref.finalize(self, _cleanup, proc, work)

    def result(self) -> tuple[dict[str, object] | None, float, str]:
        """(modulefinder's answer or None, seconds it took, why there is none)."""
        try:
            remaining = max(0.0, self.started + self.timeout - time.monotonic())
            if not wait(self.proc, remaining):
                return None, 0.0, f"modulefinder did not finish within {self.timeout:g} s"
            took = time.monotonic() - self.started
            mf = load(self.work / "mf.out")
            if mf is None:
                return None, took, "modulefinder failed: " + tail(self.work / "mf.log", 1)
            return mf, took, ""
        finally:
            self._finalizer()


def _cleanup(proc: subprocess.Popen[bytes], work: Path) -> None:
    if proc.poll() is None:
        kill(proc)
    shutil.rmtree(work, ignore_errors=True)


def shielded(
    argv: list[str],
    volumes: Sequence[str],
    app_dir: Path | None = None,
    scratch: Path | None = None,
) -> list[str]:
    """argv with a fresh, empty tmpfs over each of the app's volume paths that exist on this
    host, in a mount namespace of its own. The build imports the app here, on the host: an
    app that writes its data at import (Django's migrate at start, a sqlite file) would
    write the host's folder of that name. Root only (unprivileged, the app can write no
    more than its user may); a path the host lacks is left as it is.

    With app_dir and scratch: the app's folder too is seen through an overlay whose writes
    land in scratch/upper (app_writes_warnings names them), so that what the app writes into its own
    folder at import (Flask's instance/ database) neither changes the developer's folder
    nor goes into the image, where /app is read-only."""
    present = [v for v in volumes if os.path.isdir(v)]
    overlay: list[str] = []
    if app_dir is not None and scratch is not None and not set(str(app_dir)) & set(",:\\"):
        overlay = [str(app_dir), str(scratch / "upper"), str(scratch / "work")]
    if not (present or overlay) or os.geteuid() != 0 or shutil.which("unshare") is None:
        return argv
    script = (
        'while [ "$1" != -- ]; do mount -t tmpfs -o mode=1777,size=256m summon-build "$1" '
        '|| exit 125; shift; done; shift; if [ "$1" != -- ]; then mkdir -p "$2" "$3" && '
        'mount -t overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" summon-build "$1" '
        '2>/dev/null; shift 3; fi; shift; cd "$PWD" && exec "$@"'
    )  # cd: a working folder opened before the overlay is the folder under it
    private = ["unshare", "--mount", "--propagation", "private", "--"]
    return [*private, "/bin/sh", "-c", script, "sh", *present, "--", *overlay, "--", *argv]


def app_writes_warnings(scratch: Path) -> list[str]:
    """A warning naming the files the app wrote into its own folder under shielded()'s
    overlay (none if it wrote none)."""
    upper = scratch / "upper"
    if not upper.is_dir():
        return []
    written = sorted(
        p.relative_to(upper).as_posix()
        for p in upper.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    if not written:
        return []
    more = f" and {len(written) - 3} more" if len(written) > 3 else ""
    return [
        f"the app wrote {', '.join(written[:3])}{more} into its own folder when the build "
        "imported it (kept out of that folder and of the image): /app is read-only in an "
        "image, so such a write fails there; keep what the app writes on a volume (volumes = "
        '["/data"] in the manifest, summon run -v NAME:/data) and point the app there'
    ]


def unless_kept(warnings: Sequence[str], failed: object, kept: Mapping[str, object]) -> list[str]:
    """The trace's warnings, where those saying that a module the app's code imports "does
    not import here ...; it is left out" (`failed`, name -> why) name a module the closure
    keeps all the same (`kept`) become one line saying so: a Wagtail project's urls.py,
    imported alone, needs Django's settings, and the build said thirteen modules were left
    out that the image held and served."""
    why: dict[str, object] = failed if isinstance(failed, dict) else {}
    said = {f" imports {n}, which does not import here (": n for n in why if n in kept}
    out: list[str] = []
    seen: set[str] = set()
    for line in warnings:
        found = [n for s, n in said.items() if s in line]
        seen.update(found)
        if not found:
            out.append(line)
    names = sorted(seen)
    if names:
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        out.append(
            f"{len(names)} module(s) the app's code imports did not import here on their own "
            f"and go in all the same (they may need what the app sets up first, as Django's "
            f"settings): {shown}; {names[0]} said {why[names[0]]}"
        )
    return out


def start(
    interp: Interpreter,
    args: list[str],
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
    volumes: Sequence[str] = (),
    scratch: Path | None = None,
) -> subprocess.Popen[bytes]:
    # -S -E as in the image; -B only so that the trace leaves no __pycache__ in the app
    # folder (it does not change what gets imported).
    argv = [str(interp.executable), "-S", "-E", "-B", str(_TRACE), *args]
    with log.open("wb") as out:
        return subprocess.Popen(
            shielded(argv, volumes, cwd if scratch is not None else None, scratch),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            # Its own process group, so that a timeout also stops whatever the app started.
            start_new_session=True,
        )


def start_trace(
    interp: Interpreter,
    cfg: dict[str, object],
    work: Path,
    cwd: Path,
    env: Mapping[str, str],
    volumes: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    (work / "trace.in").write_text(repr(cfg))
    args = [str(work / "trace.in"), str(work / "trace.out"), str(work / "trace.phase")]
    return start(interp, args, work / "trace.log", cwd, env, volumes, work / "app-writes")


def finish_trace(
    interp: Interpreter,
    proc: subprocess.Popen[bytes],
    work: Path,
    timeout: float,
    volumes: Sequence[str] = (),
    table: str = "the manifest",
) -> dict[str, object]:
    """Wait for the trace started by start_trace; its result, or TraceError (table: where
    the manifest's keys are written, for its hint)."""
    out_file, phase_file, log = work / "trace.out", work / "trace.phase", work / "trace.log"
    if not wait(proc, timeout):
        phase = read(phase_file) or "starting"
        raise TraceError(
            f"the closure trace was stopped after {timeout:g} s while {phase}; "
            "make the app's import (and probe) finish sooner",
            tail(log),
        )
    result = load(out_file)
    if result is None:
        raise TraceError(
            f"the closure trace under {interp.executable} exited with status "
            f"{proc.returncode} before reporting; the app may have called os._exit "
            "or crashed the interpreter at import (its output follows)",
            tail(log),
        )
    if result["error"]:
        raise trace_error(result["error"], log, volumes, table)
    return result


def wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        kill(proc)
        return False


def kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tail(log: Path, lines: int = _TAIL) -> str:
    text = read(log)
    return "\n".join(text.splitlines()[-lines:])


def trace_error(
    error: object, log: Path, volumes: Sequence[str] = (), table: str = "the manifest"
) -> TraceError:
    assert isinstance(error, dict)
    phase, message, detail = error["phase"], error["message"], error["detail"]
    hints = {
        "probe": "; fix the probe or remove probe = ... from the manifest",
        "include": "; remove it from include or add what provides it to requirements",
        "entry-function": "; fix entry = ... in the manifest",
    }
    output = tail(log)
    if output:
        detail = f"{detail}\noutput of the app during the trace (last lines):\n{output}"
    line = " ".join(str(message).split())
    hint = hints.get(phase, "")
    missing = error.get("missing")
    if not hint and isinstance(missing, str) and missing:
        from summon.build.distributions import requirement_hint

        hint = "; " + requirement_hint(missing, table=table)
    optional = error.get("optional")
    if not hint and isinstance(optional, str) and optional:
        hint = (
            f"; that stdlib module defines some names only with {optional}, which the stdlib "
            f"imports optionally and images leave out unless asked: add include = "
            f"[{optional!r}] to {table} and build again"
        )
    variable = error.get("env")
    if not hint and isinstance(variable, str) and variable:
        hint = (
            f"; the app reads the variable {variable} at import: give the build a value with "
            f"summon build -e {variable}=VALUE (used by the build's runs only, never kept in "
            f"the image) and each run its own with summon run -e {variable}=VALUE"
        )
    absent = [v for v in volumes if not os.path.isdir(v)]
    if not hint and absent and phase == "entry":
        # The app may have failed writing its volume at import (Django's migrate, a sqlite
        # file): the shield puts scratch folders only over volume paths this host has.
        hint = (
            f"; if the app writes its volume at import: the build imports it on this host, "
            f"which has no {absent[0]}"
            + (
                f", so it had no scratch folder there; create the folder (mkdir -p "
                f"{absent[0]}: the build mounts an empty one over it and never writes the "
                "host's) and build again"
                if os.geteuid() == 0
                else "; build as root, with the folder created (the build then mounts an "
                "empty one over it and never writes the host's)"
            )
        )
    return TraceError(line + hint, detail)
