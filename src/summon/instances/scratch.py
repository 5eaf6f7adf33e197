"""Instances summon starts in its own process (a build's verify and recording runs, a
gateway's services): leased.

An instance `summon run` starts has an instance folder, a lock its init and monitor hold, and
reconciling (summon.instances.lifecycle) for when they are killed. A build's runs and a
gateway's instances have none of that: they are started in the build's or the gateway's own
process, which stops them itself (a gateway's, through release_for). Killed outright
(SIGKILL, an OOM kill, a CI job's timeout) it would leave them behind: a container still
running, its network namespace, mounts and a temporary folder, with nothing left to name
them.

So each such run holds a lease while it lives: a file in LEASES, named for the instance,
holding its target, its RunSpec, the folder to delete and summon's state folder (where runc
keeps its containers), and locked (flock) by the process that started it. The lock goes with
that process however it ends. Whoever takes a lease next first sweeps: a lease nobody holds
is a dead owner's, and its target's clean_up releases what the instance left (runc deletes a
running container by force), then its folder goes. Only a summon with the same state folder
sweeps a lease: another one's runc would not know the container.

A lease file is written under a temporary name, locked, then renamed into place: the name a
sweeper opens always belongs to a locked file while its owner lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from summon import paths
from summon.targets.base import RunSpec

LEASES = Path("/run/summon/scratch")


class Lease:
    """A held lease: its file, and the fd whose lock says its owner lives."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._lock = threading.Lock()

    @classmethod
    def take(
        cls, target: str, spec: RunSpec, *, remove: Path | None = None, swept: bool = True
    ) -> Lease | None:
        """A lease on spec's instance (on target); remove: a folder of the instance's to
        delete should its owner die (its state folder). Sweeps dead owners' leases first,
        unless swept is False (a gateway sweeps once at its start, not on a boot's path).
        None where no lease can be written (not root: no target that runs such instances
        works then either)."""
        if swept:
            sweep()
        from summon.instances.state import encode_run_spec

        doc = {
            "state": str(paths.state_dir()),
            "target": target,
            "run": encode_run_spec(spec),
            "remove": str(remove) if remove else None,
        }
        path = LEASES / f"{spec.name}.json"
        try:
            LEASES.mkdir(parents=True, exist_ok=True, mode=0o700)
            return cls(path, _locked_file(path, json.dumps(doc).encode()))
        except OSError:
            return None

    def release(self) -> None:
        """The instance is stopped and released: the lease goes (idempotent)."""
        with self._lock:
            if self._fd is None:
                return
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def is_leased(name: str) -> bool:
    """Whether a lease on the instance called name is held (or was, by an owner that died
    since the last sweep)."""
    return (LEASES / f"{name}.json").exists()


@contextlib.contextmanager
def lease(target: str, spec: RunSpec, *, remove: Path | None = None) -> Iterator[None]:
    """Hold a lease on spec's instance while the block runs (Lease.take)."""
    held = Lease.take(target, spec, remove=remove)
    try:
        yield
    finally:
        if held is not None:
            held.release()


# Leases of long-lived instances (a gateway's), by the instance they are for: released by
# whoever stops it (release_for), wherever that is.
_held: dict[int, tuple[object, Lease]] = {}
_held_lock = threading.Lock()


def hold(instance: object, held: Lease | None) -> None:
    """Keep held until release_for(instance)."""
    if held is not None:
        with _held_lock:
            _held[id(instance)] = (instance, held)


def release_for(instance: object) -> None:
    """Release the lease hold() keeps for instance, if any (call once it is stopped)."""
    with _held_lock:
        entry = _held.pop(id(instance), None)
    if entry is not None:
        entry[1].release()


def _locked_file(path: Path, data: bytes) -> int:
    """path made with data, under a temporary name then renamed; an fd that holds its lock."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return fd


def sweep() -> int:
    """Release what every dead owner's leased instance left behind; how many were."""
    try:
        entries = sorted(LEASES.iterdir())
    except OSError:
        return 0
    swept = 0
    for path in entries:
        if path.name.startswith("."):
            _sweep_temporary(path)
        elif path.suffix == ".json":
            swept += _sweep_one(path)
    return swept


def _sweep_one(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its owner lives
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return 0  # its owner finished and another took the name meanwhile
        except FileNotFoundError:
            return 0  # its owner finished (it unlinks before it lets go)
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None  # not a lease summon wrote whole: nothing it names can be released
        if isinstance(doc, dict) and doc.get("state") != str(paths.state_dir()):
            return 0  # another state folder's (another user's, a test's): its runc root too
        _release(doc)
        path.unlink()
        return 1 if doc is not None else 0
    except OSError:
        return 0
    finally:
        os.close(fd)


def _release(doc: object) -> None:
    """Have the lease's target release its instance; delete its folder."""
    if not isinstance(doc, dict) or not isinstance(doc.get("run"), dict):
        return
    from summon import targets
    from summon.errors import UserError
    from summon.instances.state import decode_run_spec

    with contextlib.suppress(UserError, TypeError, ValueError):
        targets.get(str(doc.get("target"))).clean_up(decode_run_spec(doc["run"]))
    if isinstance(remove := doc.get("remove"), str) and os.path.isabs(remove):
        import shutil  # here: a gateway at rest (which sweeps at start) loads no shutil

        shutil.rmtree(remove, ignore_errors=True)


def _sweep_temporary(path: Path) -> None:
    """A lease its owner died writing (before the rename): gone unless someone holds it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
