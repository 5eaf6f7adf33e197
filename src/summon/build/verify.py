"""The build's last check: import the entry (and run the probe) inside the built image.

The image's own interpreter runs _verify.py in the unpacked root filesystem, with no network:
in the sandbox (runc) when summon runs as root and runc is there, else in a new network
namespace (`unshare -n`), else as a plain process (said once, as a warning). A module the
image lacks then fails the build with one line instead of the first request.

Its answer is read only from lines that carry the run's token, a random word given to
_verify.py on its stdin alone (a pipe, in every one of those ways): what the app prints
shares the same output, and an import that printed a made-up answer and exited had the
build pass an image that lacked a module (rule verify.answer).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summon.build.check import missing_line
from summon.build.readonly import readonly_line, refused_write
from summon.build.zones import missing_zone_line
from summon.errors import BuildError, TargetUnavailable

MARK = ":summon-verify:"  # starts the answer line, followed by the run's token
_SCRIPT = Path(__file__).with_name("_verify.py")
_TAIL = 20  # lines of the app's output shown under a failure

HOW_ISOLATED = "isolated"  # a target with the isolated-run capability (the sandbox, runc)
HOW_NETNS = "netns"  # the rootfs interpreter in a new network namespace
HOW_PLAIN = "plain"  # the rootfs interpreter, with the host's network


class VerifyError(BuildError):
    """The image fails its check; .detail holds the last lines of the app's output."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class VerifyPlan:
    """What to import inside the image."""

    interpreter: str  # image path: /usr/bin/python3.11
    path: tuple[str, ...]  # image paths put in front of sys.path (app.json path + runtime)
    runtime: tuple[str, ...]  # runtime modules
    entry: dict[str, Any]  # {"kind": "function", "module", "function"} or script + imports
    include: tuple[str, ...] = ()
    probe: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    network: str = "socket"
    memory: int = 128 * 1024 * 1024
    pids: int = 64
    # The manifest's `syscalls`: the run allows them beside the static list, as the image will.
    syscalls: tuple[str, ...] = ()
    manifest: str = "the manifest"  # where its keys are written ("summon.toml"), for hints


@dataclass
class Verification:
    how: str  # HOW_*
    seconds: float
    warnings: list[str] = field(default_factory=list)


def verify_image(
    rootfs: Path,
    plan: VerifyPlan,
    *,
    image: str,
    app_config: Mapping[str, Any],
    timeout: float = 60.0,
) -> Verification:
    """Run the plan inside rootfs; raise BuildError (one line) if a module is missing or the
    entry does not import there."""
    started = time.monotonic()
    warnings: list[str] = []
    code = _SCRIPT.read_text()
    token = secrets.token_hex(16)
    output: str | None = None
    status = 0
    reason = ""
    how = HOW_PLAIN
    try:
        cfg = _config(plan, "")
        status, output, reason = _in_sandbox(
            rootfs, plan, code, cfg, image, app_config, timeout, token
        )
        how = HOW_ISOLATED
    except TargetUnavailable:
        pass  # no root or no runc here: the fallbacks below say what they did
    except BuildError:
        raise  # the run itself timed out
    except Exception as e:  # runc, cgroups or the netns unusable here: not the image's fault
        warnings.append(f"verification could not use the sandbox ({e}); trying unshare")
    if output is None:
        cfg = _config(plan, str(rootfs))
        argv = [str(rootfs / plan.interpreter.lstrip("/")), "-S", "-E", "-c", code, cfg]
        unshare = shutil.which("unshare")
        if unshare:
            status, output = _direct(_in_netns(unshare, argv), rootfs, plan, timeout, token)
            how = HOW_NETNS
            if status != 0 and MARK + token not in output and "unshare:" in output:
                warnings.append(f"unshare cannot make a network namespace here ({_last(output)})")
                output = None
        if output is None:
            status, output = _direct(argv, rootfs, plan, timeout, token)
            how = HOW_PLAIN
            warnings.append(
                "the image was verified without network isolation (neither runc as root nor "
                "a working unshare here): the entry's import ran with this host's network"
            )
    warnings += _judge(output, status, plan, token, reason)
    return Verification(how, time.monotonic() - started, warnings)


def _config(plan: VerifyPlan, root: str) -> str:
    cfg = {
        "root": root,
        "path": list(plan.path),
        "runtime": list(plan.runtime),
        "entry": plan.entry,
        "include": list(plan.include),
        "probe": plan.probe,
    }
    return repr(cfg)


def _in_netns(unshare: str, argv: Sequence[str]) -> list[str]:
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    ip = shutil.which("ip")
    if ip is None:
        return [unshare, *flags, "--", *argv]
    # A new namespace's lo is down: bring it up, so that a probe may serve on 127.0.0.1.
    up = f'{ip} link set lo up 2>/dev/null; exec "$@"'
    return [unshare, *flags, "--", "/bin/sh", "-c", up, "sh", *argv]


def _token_pipe(token: str) -> int:
    """The read end of a pipe holding token, its write end closed: _verify.py's stdin."""
    r, w = os.pipe()
    try:
        os.write(w, token.encode() + b"\n")  # far below a pipe's buffer: never blocks
    finally:
        os.close(w)
    return r


def _direct(
    argv: Sequence[str], rootfs: Path, plan: VerifyPlan, timeout: float, token: str
) -> tuple[int, str]:
    env = {"PATH": "/usr/bin:/bin", **plan.env, "SUMMON_ROOT": str(rootfs)}
    stdin = _token_pipe(token)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=rootfs,
                env=env,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(stdin)
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise BuildError(_timeout_line(timeout)) from None
        out.seek(0)
        return status, out.read().decode(errors="replace")


def _in_sandbox(
    rootfs: Path,
    plan: VerifyPlan,
    code: str,
    cfg: str,
    image: str,
    app_config: Mapping[str, Any],
    timeout: float,
    token: str,
) -> tuple[int, str, str]:
    """The run's status, output and the target's word on why it ended (out of memory)."""
    from summon import targets
    from summon.build.syscalls import scratch_volumes
    from summon.instances import scratch
    from summon.targets.base import ISOLATED_RUN, RunSpec

    isolating = [n for n in targets.names() if ISOLATED_RUN in targets.target_class(n).capabilities]

    stdin = _token_pipe(token)
    with (
        _closing(stdin),
        tempfile.TemporaryDirectory(prefix="summon-verify-") as state,
        tempfile.TemporaryFile() as out,
    ):
        spec = RunSpec(
            name=f"verify-{os.getpid()}-{secrets.token_hex(3)}",
            image=image,
            rootfs=rootfs,
            app_config=dict(app_config),
            argv=(plan.interpreter, "-S", "-E", "-c", code, cfg),
            env=dict(plan.env),
            network=plan.network,
            memory=plan.memory,
            pids=plan.pids,
            state_dir=Path(state),
            stdout=out.fileno(),
            stdin=stdin,
            syscalls=_allowed(plan),
            # An empty folder at each of the image's volumes, as the recording run has: an
            # app that opens its database there at import (Django's migrate at start).
            volumes=scratch_volumes(app_config, Path(state)),
        )
        with scratch.lease(isolating[0], spec, remove=Path(state)):
            instance = targets.get(isolating[0]).start(spec)
            try:
                status = instance.wait(timeout)
            finally:
                instance.stop(grace=0)
        if status is None:
            raise BuildError(_timeout_line(timeout))
        out.seek(0)
        return status, out.read().decode(errors="replace"), instance.exit_reason() or ""


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[None]:
    try:
        yield
    finally:
        os.close(fd)


def _allowed(plan: VerifyPlan) -> tuple[str, ...] | None:
    """The run's allowlist: the static one (None), with the manifest's syscalls if any."""
    from summon.build.syscalls import static_with

    kept = static_with(plan.network, plan.syscalls)
    return kept.allowed if kept is not None else None


def _timeout_line(timeout: float) -> str:
    return (
        f"verifying the image: importing the entry inside it did not finish within "
        f"{timeout:g} s; make the app's import (and probe) finish sooner, or build with "
        "--no-verify"
    )


def _judge(output: str, status: int, plan: VerifyPlan, token: str, reason: str = "") -> list[str]:
    """Warnings from a run's output; BuildError for a failure. Only a line with the run's
    token answers; any other, one that looks like an answer too, is the app's output."""
    head = MARK + token + "\t"
    lines = output.split("\n")
    answer = next((line for line in reversed(lines) if line.startswith(head)), None)
    shown = "\n".join(line for line in lines if not line.startswith(head)).strip("\n")
    tail = "\n".join(shown.splitlines()[-_TAIL:])
    if answer is None and reason.startswith("killed: out of memory"):
        raise VerifyError(
            f"verifying the image: importing the entry inside it was {reason}; give the app "
            f'more, such as memory = "256M" in {plan.manifest} (the same limit holds when it '
            "runs)",
            tail,
        )
    if answer is None:
        raise VerifyError(
            f"verifying the image: its interpreter exited with status {status} before "
            "answering (the output follows); build with --no-verify to skip this check",
            tail,
        )
    fields = answer.split("\t")[1:]
    kind = fields[0] if fields else ""
    if kind == "ok":
        return []
    if kind == "missing" and len(fields) >= 4:
        raise VerifyError(missing_line(fields[1], fields[2], int(fields[3] or 0)), tail)
    if kind == "probe" and len(fields) >= 2:
        return [
            f"the probe {plan.probe} raised {fields[1]} inside the image (it passed on the "
            "host, where it may read files the image does not hold); the modules it imported "
            "before that were checked"
        ]
    what, problem = (fields[1], fields[2]) if len(fields) >= 3 else ("the entry", " ".join(fields))
    if refused_write(problem) is not None:
        # The host's folder was writable; /app in an image is not (Flask's instance/).
        raise VerifyError(readonly_line(f"{what} does not import inside the image", problem), tail)
    if (zone_line := missing_zone_line(what, problem)) is not None:
        raise VerifyError(zone_line, tail)
    raise VerifyError(
        f"{what} does not import inside the image: {problem} (it did on the host during the "
        "trace); build with --no-verify to skip this check",
        tail,
    )


def _last(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
