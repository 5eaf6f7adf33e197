"""What the CLI does to instances: start (detached or attached, or again), stop, remove,
sample, reconcile.

Reconciling is how a dead monitor shows: if state.json says an instance is active but
nobody holds its lock (init and monitor both gone, say after a SIGKILL to init), the
instance is recorded as exited with the reason "monitor died", and what its target left
outside the dead processes is released. Any command that reads an instance does this first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from summon import targets
from summon.errors import UserError
from summon.instances import console, control, state, supervise
from summon.instances.restart import RestartPolicy
from summon.instances.state import ACTIVE, InstanceFolder
from summon.targets.base import RunSpec, Volume

# After the monitor reported the instance exited, init still has to clear up.
SETTLE_SECONDS = 15.0
# Beyond the grace period, time for the monitor to tear the target down.
STOP_SLACK = 10.0


class StartFailed(UserError):
    """The instance did not start; it stays recorded as exited with the reason."""

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class Started:
    """A started instance: its folder, and for an attached one the launcher the CLI waits on."""

    folder: InstanceFolder
    launcher: int = 0  # pid, attached only


def start(
    run: RunSpec,
    *,
    target: str,
    restart: RestartPolicy,
    name: str | None,
    base_name: str,
    remove: bool = False,
    target_options: dict[str, Any] | None = None,
    attached: bool = False,
    notices: list[str] | None = None,
) -> Started:
    """Record a new instance and start its process tree; return once it runs.

    Raises StartFailed when it does not (the instance stays recorded as exited, with why).
    attached: the tree is tied to this process (a foreground run; see tree.py), which must
    then wait for Started.launcher. run.name and run.state_dir are replaced by the short ID
    and the instance folder. notices: what `summon run` said of it before it existed (an
    ignored flag), which a detached instance's console log begins with at each start.
    """
    doc = {
        "version": 1,
        "image": {
            "ref": run.image,
            "digest": run.image_digest,
            "id": run.image_digest.removeprefix("sha256:")[:12],
        },
        "target": target,
        "target_options": target_options or {},
        "restart": str(restart),
        "remove": remove,
        "attached": attached,
        "run": state.encode_run_spec(run),
        **({"notices": list(notices)} if notices else {}),
    }
    refuse_open_stores(run)
    folder, lock_fd = state.create(doc, name, base_name, durable=not attached)
    read_end, write_end = os.pipe()
    launcher = 0
    try:
        if attached:
            launcher = _fork_launcher(folder, read_end, write_end, lock_fd)
        else:
            _spawn_launcher(folder, write_end, lock_fd)
    finally:
        os.close(lock_fd)  # init holds the lock through its own copy now
        os.close(write_end)
    _await_start(folder, read_end, launcher)
    return Started(folder, launcher)


def start_again(folder: InstanceFolder) -> None:
    """Start an exited instance again, detached, as it was recorded (`summon start`): the
    same image by digest, target, ports, volumes, secrets (read again) and restart policy.

    UserError if it runs; StartFailed when it does not start (recorded exited, with why).
    """
    reconcile(folder)
    refuse_open_stores(folder.run_spec(), folder.id)
    lock_fd = os.open(folder.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise UserError(f"instance {folder.name} ({folder.short_id}) is running") from None
    read_end, write_end = os.pipe()
    try:
        folder.write_state(state.initial_state())  # nothing of the last run is current
        _spawn_launcher(folder, write_end, lock_fd)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(lock_fd)  # init holds the lock through its own copy now
        os.close(write_end)
    _await_start(folder, read_end)


def refuse_open_stores(run: RunSpec, own_id: str = "") -> None:
    """VolumeInUse, naming the instance, if a KV_RW store of run's image in one of its
    volumes is open already: its app would fail at the store's lock, after the start."""
    if not run.volumes:
        return
    from summon.targets.volume_stores import open_stores
    from summon.targets.volumes import VolumeInUse

    for vol, store in open_stores(run):
        users = [f for f in state.all_instances() if f.id != own_id and _uses(f, vol)]
        who = ", ".join(f"{f.name} ({f.short_id})" for f in users if f.supervised())
        raise VolumeInUse(
            f"-v {vol}: the store {store} in it is open by "
            f"{f'instance {who}' if who else 'another process'}; one writer per store: "
            "stop that first, or give this run another volume"
        )


def _uses(folder: InstanceFolder, vol: Volume) -> bool:
    try:
        theirs = folder.run_spec().volumes
    except (UserError, KeyError, TypeError):
        return False
    if not vol.is_bind:
        return any(v.name == vol.name for v in theirs)
    return any(v.is_bind and os.path.realpath(v.name) == os.path.realpath(vol.name) for v in theirs)


def _await_start(folder: InstanceFolder, read_end: int, launcher: int = 0) -> None:
    """Return once the monitor reports the instance runs; else StartFailed, with why."""
    reply = _read_report(read_end)
    if reply is not None:
        _say_notices(reply)
    if reply is not None and reply.get("ok"):
        return
    if launcher:
        os.waitpid(launcher, 0)
    if reply is None:
        # The monitor died before it could say; init records why, or we do.
        _wait_unsupervised(folder, SETTLE_SECONDS)
        final = reconcile(folder, "start failed: the monitor exited before the instance ran")
        logs = folder.logs / "monitor.log"
        raise StartFailed(f"{final['reason']} (see {logs})", 1)
    _wait_unsupervised(folder, SETTLE_SECONDS)
    raise StartFailed(str(reply.get("error")), int(reply.get("exit_status", 2)))


def _say_notices(reply: dict[str, Any]) -> None:
    """Print what the target said while it started (a detached run's monitor reports it: a
    snapshot refused or not saved), as the target itself does on a foreground run's terminal."""
    told = reply.get("notices")
    if not isinstance(told, list):
        return
    for line in told:
        # Shown as `summon logs` shows the console: a line may quote QEMU or the image's name.
        print(f"summon: {console.shown(str(line))}", file=sys.stderr, flush=True)


def _spawn_launcher(folder: InstanceFolder, write_end: int, lock_fd: int) -> None:
    """Run `python -m summon.instances.tree ID` in a session of its own; it exits at once."""
    folder.logs.mkdir(mode=0o700, exist_ok=True)  # removed by hand to free room, say
    with open(folder.logs / "monitor.log", "ab") as log:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "summon.instances.tree",
                folder.id,
                "--ready-fd",
                str(write_end),
                "--lock-fd",
                str(lock_fd),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_end, lock_fd),
            start_new_session=True,
            cwd="/",
        )
    launcher.wait()  # it only forks init and exits


def _fork_launcher(folder: InstanceFolder, read_end: int, write_end: int, lock_fd: int) -> int:
    """Fork an attached launcher (tree.launch); its pid. No exec: a fork costs milliseconds."""
    from summon.instances import tree

    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            tree.launch(folder, write_end, lock_fd, attached=True, parent=parent)
        finally:
            os._exit(tree.NO_STATUS)
    return pid


def _read_report(read_end: int) -> dict[str, Any] | None:
    """The monitor's first report (one JSON line), None if it closed the pipe unsaid."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
    try:
        reply = json.loads(data) if data.strip() else None
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _wait_unsupervised(folder: InstanceFolder, timeout: float) -> bool:
    """Wait until init and monitor are gone (the lock is free); False on timeout."""
    deadline = time.monotonic() + timeout
    while folder.supervised():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def reconcile(folder: InstanceFolder, reason: str = "monitor died") -> dict[str, Any]:
    """The instance's state, first recorded as exited if nothing supervises it any more."""
    with folder.unsupervised() as free:
        current = folder.state()
        if not free or current["status"] not in ACTIVE or not folder.spec_path.exists():
            return current  # (no spec: removed meanwhile, by its init after --rm)
        changes = {"status": "exited", "reason": reason, "finished_at": state.now(), "pid": None}
        if not os.access(folder.path, os.W_OK):
            # A state folder this user can only read (a read-only mount, another user's):
            # what is true is shown (exited); the record and the clean-up are left for
            # whoever can write it.
            return {**current, **changes}
        spec = folder.spec()
        with contextlib.suppress(Exception):
            target = targets.get(str(spec["target"]), **(spec.get("target_options") or {}))
            target.clean_up(folder.run_spec())
        final = folder.update_state(**changes)
        if spec.get("remove"):  # its init was killed before it could remove it
            state.remove(folder)
        return final


def reconcile_all() -> None:
    """Reconcile every instance: what a killed tree left behind is released here."""
    for folder in state.all_instances():
        with contextlib.suppress(OSError, UserError):
            reconcile(folder)


def stop(folder: InstanceFolder, grace: float) -> dict[str, Any]:
    """Stop the instance through its monitor; after grace (+ slack) kill its process tree.

    Returns once nothing of the instance runs any more, with its final state.
    """
    if not folder.supervised():
        return reconcile(folder)
    reply = _ask_to_stop(folder, grace)
    if reply.get("ok") and _wait_unsupervised(folder, SETTLE_SECONDS):
        return folder.state()
    kill(folder)
    return reconcile(folder, f"killed: the monitor did not stop it within {grace:g}s")


def _ask_to_stop(folder: InstanceFolder, grace: float) -> dict[str, Any]:
    """The monitor's answer to `stop`, {} if it cannot be asked.

    An instance still starting (`run -d` a moment ago) has no control socket yet, nor a
    monitor pid to kill: wait for its monitor to listen, while it is alive and starting.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            return control.request(folder.path, {"op": "stop", "grace": grace}, grace + STOP_SLACK)
        except (FileNotFoundError, ConnectionRefusedError):
            starting = folder.state()["status"] == "created"
            if not starting or time.monotonic() > deadline or not folder.supervised():
                return {}
            time.sleep(0.02)
        except OSError:
            return {}


def kill(folder: InstanceFolder) -> None:
    """SIGKILL the monitor (init then kills the rest), and init itself if it lingers."""
    current = folder.state()
    for role in ("monitor", "init"):
        pid, started = current.get(f"{role}_pid"), current.get(f"{role}_start")
        if isinstance(pid, int) and started is not None and supervise.start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if _wait_unsupervised(folder, 5.0):
            return


def remove(folder: InstanceFolder, force: bool) -> None:
    """Delete a stopped instance's folder; with force, stop (kill) a running one first."""
    if folder.supervised():
        if not force:
            raise UserError(
                f"instance {folder.name} ({folder.short_id}) is running: stop it first "
                f"(summon stop {folder.name}), or use summon rm -f"
            )
        stop(folder, 0)
    reconcile(folder)
    with folder.unsupervised() as free:
        if not free:
            raise UserError(f"instance {folder.name} ({folder.short_id}) started again; retry")
        state.remove(folder)


def sample(folder: InstanceFolder) -> dict[str, Any] | None:
    """Memory and CPU time from the instance's monitor; None if it is not running."""
    try:
        reply = control.request(folder.path, {"op": "stats"}, 5.0)
    except OSError:
        return None
    if not reply.get("ok") or not reply.get("running"):
        return None
    return reply
