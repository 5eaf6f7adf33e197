"""The unix target: the image's interpreter and app run as a plain host process, for development.

No isolation: the app sees the host's files and network. Its socket stack binds the host port
of each -p forward on 127.0.0.1 directly (SUMMON_PORTS), so no proxy is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from summon.errors import UserError
from summon.targets import secrets, volumes
from summon.targets.base import (
    ARGS,
    SECRETS,
    VOLUMES,
    VOLUMES_ENV,
    Check,
    Instance,
    RunSpec,
    Stats,
    Target,
    notice_sayer,
    process_stats,
    volumes_environment,
)

if TYPE_CHECKING:
    from summon.store.image import Image

    Step = Callable[[str], None]

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class UnixInstance(Instance):
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        secrets_dir: Path | None = None,
        leases: list[volumes.Lease] | None = None,
    ) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self._secrets = secrets_dir  # on /dev/shm: removed once the app is gone
        self._leases = leases or []  # the named volumes it uses, held while it runs

    def _forget_secrets(self) -> None:
        if self._secrets is not None:
            secrets.release(self._secrets)
            self._secrets = None
        for held in self._leases:
            held.close()
        self._leases = []

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            status = _status(self._proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None
        self._forget_secrets()
        return status

    def stop(self, grace: float = 10.0) -> int:
        with self._lock:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(grace)
                except subprocess.TimeoutExpired:
                    # The app ignored SIGTERM; take its whole process group down.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait()
            self._forget_secrets()
            return _status(self._proc.returncode)

    def stats(self) -> Stats:
        return process_stats(self.pid)


def _status(code: int) -> int:
    """Popen's -N for death by signal N becomes the shell's 128+N."""
    return 128 - code if code < 0 else code


class UnixTarget(Target):
    name: ClassVar[str] = "unix"
    description: ClassVar[str] = "a plain host process (development; no isolation)"
    capabilities: ClassVar[frozenset[str]] = frozenset({ARGS, SECRETS, VOLUMES})
    held_limits: ClassVar[frozenset[str]] = frozenset()  # no cgroup: a host process
    export_formats: ClassVar[dict[str, str]] = {
        "rootfs": "the image's root filesystem as a folder, as the unix target runs it"
    }

    def export(self, image: Image, fmt: str, dest: Path, step: Step, **options: Any) -> None:
        """rootfs: a copy of the unpacked (verified) root filesystem at dest."""
        if fmt not in self.export_formats:
            super().export(image, fmt, dest, step)
        step("unpacking the root filesystem")
        source = image.rootfs()
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        step(f"copying it to {dest}")
        try:
            shutil.copytree(source, tmp, symlinks=True)
            os.rename(tmp, dest)
        except BaseException as e:  # Ctrl-C too: no half copy left beside dest
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(e, OSError):
                raise
            raise UserError(f"-o {dest}: cannot write the root filesystem: {_why(e)}") from None

    @classmethod
    def check(cls) -> list[Check]:
        return [Check("unix: host processes", True)]

    def ports_ignored(self, spec: RunSpec) -> str:
        if spec.app_config.get("entry", {}).get("kind") == "script":
            # A plain script binds where its own code says: nothing maps its ports.
            return (
                "-p does not apply to a plain script on the unix target: it listens on the "
                "ports its code opens, on the host (apps using the Stack device, or served by "
                "the runtime, follow -p)"
            )
        return ""

    _listener: Callable[[str], None] | None = None

    def hear_notices(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    def _sayer(self, spec: RunSpec) -> Callable[[str], None]:
        """How a start of spec says a notice: on summon's stderr (the terminal of a foreground
        run; a detached one's monitor.log), to whoever hears this target (the monitor of
        `summon run -d`, which prints them) and as a `summon:` line on the spec's console (what
        `summon logs` shows)."""
        return notice_sayer(_notice, self._listener, spec.stdout)

    def start(self, spec: RunSpec) -> Instance:
        say = self._sayer(spec)
        root = spec.rootfs
        argv = [str(root / a.lstrip("/")) if a.startswith("/") else a for a in spec.argv]
        argv = [*through_image_loader(root, argv), *spec.args]  # the app's: never mapped
        env = {
            "PATH": "/usr/bin:/bin",
            **spec.env,
            "SUMMON_ROOT": str(root),
            "SUMMON_BIND": "127.0.0.1",
        }
        if spec.ports and not self.ports_ignored(spec):
            env["SUMMON_PORTS"] = ",".join(
                f"{p.guest_port}/{p.protocol}={p.host_port}" for p in spec.ports
            )
        # The app sees the host's files: each volume is its host folder, which the runtime
        # finds through SUMMON_VOLUMES (the image path -> that folder).
        mounts, leases = volumes.folder_mounts(spec, say)
        if mounts:
            env[VOLUMES_ENV] = volumes_environment([(p, str(f)) for p, f in mounts])
            for vol in spec.volumes:
                if why := unreached_volume(vol.path, spec.app_config):
                    say(f"warning: -v {vol}: {why}")
        folder = secrets.private_folder(spec.name, spec.secrets) if spec.secrets else None
        if folder is not None:
            env["SUMMON_SECRETS"] = str(folder)
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=root,
                start_new_session=True,
                stdout=spec.stdout,
                stderr=spec.stdout,
                preexec_fn=_die_with(os.getpid()),
            )
        except BaseException:
            if folder is not None:
                secrets.release(folder)
            for held in leases:
                held.close()
            raise
        return UnixInstance(proc, folder, leases)


def unreached_volume(path: str, app_config: dict[str, Any]) -> str:
    """Why a volume at path is not what the app's own file calls see on this target, or ""
    when only the image's stores (its KV devices, which are told the folder) live there."""
    if volumes.holds_stores(path, app_config):
        return ""
    return (
        f"a plain host process has no mounts of its own: the app's stores would use the "
        f"volume, but a file the app opens under {path} itself is the host's {path}; run it "
        "with --target sandbox to have the volume there"
    )


def through_image_loader(root: Path, argv: list[str]) -> list[str]:
    """argv run by the image's own dynamic loader over the image's library folders.

    The host's loader would look for the image's libraries on the host: those a wheel brings
    in a `*.libs` folder (numpy's OpenBLAS, Pillow's libtiff), which the image keeps in its
    own library folder, are not there. The image's loader, told its folders, loads the image's
    set, as in the sandbox and the VM. An image without a loader of its own runs as it is."""
    loaders = sorted(root.glob("lib64/ld-linux*.so*")) + sorted(root.glob("lib/ld-linux*.so*"))
    if not loaders or not argv or not argv[0].startswith(str(root)):
        return argv
    folders = [
        *sorted(root.glob("lib/*-linux-gnu*")),
        *sorted(root.glob("usr/lib/*-linux-gnu*")),
        root / "lib",
        root / "usr/lib",
    ]
    path = ":".join(str(f) for f in folders if f.is_dir())
    return [str(loaders[0]), "--argv0", argv[0], "--library-path", path, *argv]


def _why(e: OSError) -> str:
    """An OSError's reason; copytree's Error (strerror None) gathers its files' errors as
    text, of which the first says it ("[Errno 28] No space left on device: '...'")."""
    if e.strerror:
        return e.strerror
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        why = str(e.args[0][0][-1])
        found = re.match(r"\[Errno \d+\] ([^:]+)", why)
        return found[1] if found else why
    return str(e) or type(e).__name__


def _notice(line: str) -> None:
    print(f"summon: {line}", file=sys.stderr, flush=True)


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the app gets SIGKILL when the thread that started it dies, however.

    So a summon (or a detached instance's monitor) killed outright leaves no app behind.
    """

    def arm() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before we armed: nobody would kill us later
            os.kill(os.getpid(), signal.SIGKILL)

    return arm
