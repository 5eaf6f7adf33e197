"""Detached instances on disk: one folder each, its spec and state files, names and ID lookup.

    <state>/instances/<id>/
        spec.json       what to run, written once by `summon run -d` (RunSpec, image, policy)
        state.json      what is happening: written by the instance's monitor (see STATES)
        monitor.lock    flock held by the instance's init/monitor for as long as either lives
        control.sock    the monitor's control socket (control.py)
        logs/           console.log (+ .1), monitor.log
        bundle/ ...     the target's own files (RunSpec.state_dir is this folder)

Every JSON file is written to a temporary name and renamed over the old one, so a reader
sees the old document or the new one, never half of one. A folder appears whole: it is
filled under a dot-name and renamed into place. The lock, not a pid, says whether anything
still supervises the instance: the kernel drops it when its holders die, however they die.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import UserError
from summon.targets.base import RunSpec

# created: folder made, monitor starting; running: the app runs; restarting: between two runs
# (waiting out the backoff); exited: for good, with exit_code and/or reason.
STATES = ("created", "running", "restarting", "exited")
ACTIVE = ("created", "running", "restarting")
SHORT = 12
_ID = re.compile(r"^[0-9a-f]{64}\Z")
NAME_MAX = 64  # a hostname's limit: the app finds itself by this name in /etc/hosts
NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_MAX - 1}}}\Z")
# RunSpec fields that only mean something inside one process.
_LOCAL_FIELDS = ("stdout", "handoff")


def check_name(name: str) -> None:
    """Refuse an instance name that is not 1-64 letters, digits, '.', '_' and '-'."""
    if len(name) > NAME_MAX:
        raise UserError(
            f"--name {name[:20]!r}...: at most {NAME_MAX} characters ({len(name)} given)"
        )
    if not NAME.match(name):
        raise UserError(
            f"--name {name!r}: use ASCII letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


def base_name(candidate: str) -> str:
    """The stem of a derived name (stem-N): the candidate cut to leave room for -N, or
    'app' when it is no name."""
    stem = candidate[: NAME_MAX - 8].rstrip("._-")
    return stem if NAME.match(stem) else "app"


class UnknownInstance(UserError):
    """No instance answers to that ID, prefix or name (or more than one does)."""


class AmbiguousInstance(UnknownInstance):
    """An ID prefix that more than one instance's ID starts with."""


class DamagedInstance(UnknownInstance):
    """The ID or prefix names an instance whose spec.json cannot be read: only `rm -f` (which
    needs nothing of the spec) can act on it."""

    def __init__(self, folder: InstanceFolder) -> None:
        super().__init__(
            f"instance {folder.short_id} is damaged ({folder.spec_path} cannot be read): "
            f"`summon rm -f {folder.short_id}` stops it and removes it"
        )
        self.folder = folder


class NameInUse(UserError):
    """Another instance has that name."""


def root() -> Path:
    return paths.state_dir() / "instances"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def parse_time(text: object) -> datetime.datetime | None:
    """A time now() wrote; None for anything else (state.json edited by hand: a number, a
    time without its zone, which could not be compared with now's)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def write_json(path: Path, doc: Any, durable: bool = True) -> None:
    """Write doc to path atomically: a temporary name in the same folder, then rename.

    durable: fsync before the rename, so a crash of the host cannot leave the new name empty
    (4-6 ms on this kind of disk). Without it a reader still never sees half a document.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def initial_state() -> dict[str, Any]:
    return {
        "status": "created",
        "pid": None,  # host pid of the app's top process (runc's container init, QEMU...)
        "monitor_pid": None,  # host pids; init is the one to SIGKILL to end it all
        "init_pid": None,
        "init_start": None,  # init's start time in clock ticks: guards against pid reuse
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "restarts": 0,
        "reason": "",  # why it exited: "exited", "stopped", "monitor died", "start failed: ..."
        "updated_at": now(),
    }


class InstanceFolder:
    """One instance's folder. Reads are fresh each time; only the current owner writes state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self._spec: dict[str, Any] | None = None

    @property
    def short_id(self) -> str:
        return self.id[:SHORT]

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.path / "monitor.lock"

    @property
    def control_path(self) -> Path:
        return self.path / "control.sock"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def spec(self) -> dict[str, Any]:
        if self._spec is None:
            doc = _read_json(self.spec_path)
            if not _well_formed(doc):
                raise UserError(f"instance {self.short_id}: {self.spec_path} is unreadable")
            assert isinstance(doc, dict)
            self._spec = doc
        return self._spec

    @property
    def name(self) -> str:
        return str(self.spec().get("name", ""))

    def state(self) -> dict[str, Any]:
        doc = _read_json(self.state_path)
        state = initial_state()
        if isinstance(doc, dict):
            state.update(doc)
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        state["updated_at"] = now()
        # Not fsynced: it is written several times on the way to the app's start, each fsync
        # is milliseconds, and after a crash of the host nothing it says is true any more:
        # state() reads a lost one as "created" and reconcile() records the instance exited.
        write_json(self.state_path, state, durable=False)

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = self.state()
        state.update(changes)
        self.write_state(state)
        return state

    def run_spec(self) -> RunSpec:
        return decode_run_spec(self.spec()["run"])

    def supervised(self) -> bool:
        """Whether the instance's init or monitor is alive (they hold the lock)."""
        with self.unsupervised() as free:
            return not free

    @contextlib.contextmanager
    def unsupervised(self) -> Iterator[bool]:
        """Take the lock if nobody holds it; yield whether we got it (no monitor then).

        Opened for reading only: flock needs no write access, and `summon ps` of a state
        folder the user can only read (another user's, a read-only mount) must list it."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"InstanceFolder({self.short_id}, {self.name!r})"


# The keys of spec.json whose type every reader takes for granted, as create() writes them.
_SHAPE = {"name": str, "run": dict, "target": str, "created": str, "restart": str,
          "image": dict, "target_options": dict}  # fmt: skip


def _well_formed(doc: Any) -> bool:
    """Whether doc is a spec as create() writes it: JSON of another shape (edited by hand,
    another version's) is as damaged as JSON cut short, rather than an internal error in
    every verb that lists instances."""
    if not isinstance(doc, dict) or "name" not in doc or "run" not in doc:
        return False
    if any(key in doc and not isinstance(doc[key], kind) for key, kind in _SHAPE.items()):
        return False
    try:
        decode_run_spec(doc["run"])
    except Exception:  # any value of a field of the wrong shape: TypeError, AttributeError...
        return False
    return True


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def all_instances() -> list[InstanceFolder]:
    """Every instance folder with a readable spec, newest first."""
    try:
        entries = list(root().iterdir())
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if _ID.match(entry.name) and (entry / "spec.json").is_file():
            folder = InstanceFolder(entry)
            with contextlib.suppress(UserError):
                folder.spec()
                found.append(folder)
    found.sort(key=lambda f: str(f.spec().get("created", "")), reverse=True)
    return found


def damaged_instances() -> list[InstanceFolder]:
    """Instance folders whose spec.json cannot be read (edited by hand, a damaged disk):
    every listing leaves them out, so that a running one could be neither seen nor stopped."""
    try:
        entries = list(root().iterdir())
    except FileNotFoundError:
        return []
    found = []
    for entry in sorted(entries):
        if _ID.match(entry.name) and entry.is_dir():
            folder = InstanceFolder(entry)
            try:
                folder.spec()
            except UserError:
                found.append(folder)
    return found


def find(query: str) -> InstanceFolder:
    """An instance by full ID, name, or unambiguous ID prefix, in that order."""
    instances = all_instances()
    for folder in instances:
        if folder.id == query:
            return folder
    for folder in instances:
        if folder.name == query:
            return folder
    hits = [f for f in instances if query and f.id.startswith(query.lower())]
    if len(hits) == 1:
        return hits[0]
    if hits:
        shown = ", ".join(f"{f.short_id} ({f.name})" for f in hits[:4])
        raise AmbiguousInstance(
            f"instance ID prefix {query!r} is ambiguous: it matches {shown}; give more of it"
        )
    # By ID only (it has no name that can be read): a damaged one is named as such, so that
    # `rm -f` can be rid of it and every other verb says why it cannot act.
    damaged = [f for f in damaged_instances() if query and f.id.startswith(query.lower())]
    if len(damaged) == 1:
        raise DamagedInstance(damaged[0])
    raise UnknownInstance(f"no instance {query!r}; see `summon ps -a`")


def lookup(query: str) -> InstanceFolder | None:
    """find(), but None when nothing matches (an ambiguous prefix is still an error)."""
    try:
        return find(query)
    except (AmbiguousInstance, DamagedInstance):
        raise
    except UnknownInstance:
        return None


@contextlib.contextmanager
def _registry_locked(base: Path) -> Iterator[None]:
    """Serialise name allocation among concurrent `summon run -d`."""
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create(
    spec: dict[str, Any], name: str | None, base_name: str, durable: bool = True
) -> tuple[InstanceFolder, int]:
    """Make a new instance folder holding spec.json and state.json (created).

    Allocates the ID and the name (given, or base_name-N, the first N free). Returns the
    folder and an fd holding its lock: pass it on to the monitor, so the instance is never
    seen unsupervised while it starts. durable: spec.json survives a crash of the host (an
    attached run, which ends with its CLI anyway, need not pay the fsync).
    """
    base = root()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    if name is not None:
        check_name(name)
    with _registry_locked(base):
        taken = {f.name: f for f in all_instances()}
        if name is not None and name in taken:
            raise NameInUse(
                f"the name {name!r} is in use by instance {taken[name].short_id}: "
                f"remove it (summon rm {name}) or choose another name"
            )
        if name is None:
            n = 1
            while f"{base_name}-{n}" in taken:
                n += 1
            name = f"{base_name}-{n}"
        # os.urandom, not the secrets module: that loads hmac and OpenSSL (~2 ms of every run)
        ident = os.urandom(32).hex()
        final = base / ident
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".new-"))
        lock_fd = -1
        try:
            tmp.chmod(0o700)
            (tmp / "logs").mkdir()
            doc = {**spec, "id": ident, "name": name, "created": now()}
            # The target knows the instance by its short ID: unique on the host, whichever
            # state folder is in use (runc container ids, netns names and cgroups are global).
            doc["run"] = {
                **doc["run"], "name": ident[:SHORT], "state_dir": str(final), "hostname": name,
            }  # fmt: skip
            write_json(tmp / "spec.json", doc, durable)
            write_json(tmp / "state.json", initial_state(), durable=False)
            lock_fd = os.open(tmp / "monitor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, final)
        except BaseException as e:
            if lock_fd >= 0:
                os.close(lock_fd)
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(
                    f"cannot record the instance in {base}: {e.strerror}; free some space "
                    "there (summon rm removes exited instances and their logs)"
                ) from None
            raise
    return InstanceFolder(final), lock_fd


def remove(folder: InstanceFolder) -> None:
    """Delete the folder: renamed out of sight first, so nobody reads half of it.

    A folder gone already is no error: an instance run with --rm removes its own once it
    stops, which `summon rm -f` (stop, then remove) races with.
    """
    gone = folder.path.with_name(f".gone-{folder.id}")
    try:
        os.rename(folder.path, gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


# --- RunSpec <-> JSON ------------------------------------------------------------------------


def encode_run_spec(spec: RunSpec) -> dict[str, Any]:
    """Every RunSpec field, generically (so fields added later travel too), as plain JSON."""
    return {
        f.name: _encode(getattr(spec, f.name))
        for f in dataclasses.fields(spec)
        if f.name not in _LOCAL_FIELDS
    }


def decode_run_spec(doc: dict[str, Any]) -> RunSpec:
    """The RunSpec encode_run_spec made; unknown keys are dropped, missing ones defaulted."""
    decoded = _decode(RunSpec, doc)
    assert isinstance(decoded, RunSpec)
    return decoded


def _encode(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


@functools.cache
def _fields(tp: type) -> dict[str, Any]:
    """A dataclass's decodable fields and their types (typing.get_type_hints evaluates every
    annotation: a millisecond or two a call, for every instance every listing reads)."""
    hints = typing.get_type_hints(tp)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(tp)
        if f.init and f.name not in _LOCAL_FIELDS
    }


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    if tp is Path:
        return Path(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        fields = _fields(tp)
        return tp(**{k: _decode(fields[k], v) for k, v in value.items() if k in fields})
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and args:
        return tuple(_decode(args[0], v) for v in value)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    return value
