"""One sandboxed instance: a container started with `runc run`, and what it owns.

It owns its network namespace (netns.py), port forwarder (portfwd.py), TAP device in direct
mode (tap.py), seccomp exec gate (seccomp.py), runc state and bundle, and releases all of
them whichever way the app ends. runc keeps the stopped container (`run --keep`) until
summon has read from its cgroup whether the kernel's OOM killer ended the app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from summon.errors import SummonError, UserError
from summon.runtime.config import manifest_table
from summon.targets import secrets, volumes
from summon.targets.base import Instance, NotReady, PortForward, RunSpec, Stats
from summon.targets.sandbox import appstats, cgroups, freezer, listen, rootmount, seccomp
from summon.targets.sandbox.config import container_id, oci_config, secrets_folder
from summon.targets.sandbox.etc import etc_files, mount_etc, unmount_etc
from summon.targets.sandbox.gate import ExecGate
from summon.targets.sandbox.netns import NetNamespace
from summon.targets.sandbox.spawn import Spawned, spawn

if TYPE_CHECKING:
    from summon.targets.sandbox.egress import Egress
    from summon.targets.sandbox.portfwd import PortForwarder
    from summon.targets.sandbox.tap import DirectNetwork

START_TIMEOUT = 15.0  # seconds for runc to have the container created
FULL_BELOW = 256 * 1024  # bytes free under which a failed start blames the disk


class SandboxInstance(Instance):
    """One container started with `runc run`; owns its netns, forwarder, exec gate and bundle."""

    def __init__(
        self,
        runc: str,
        root: Path,
        spec: RunSpec,
        *,
        record: bool = False,
        heard: Callable[[str], None] | None = None,
    ) -> None:
        """heard: also told each notice of the start (Target.hear_notices: `summon run -d`
        prints them)."""
        self.spec = spec
        self._heard = heard
        self.record = record  # the recording seccomp profile: the gate notes each call
        self.container_id = container_id(spec.name)
        self.bundle = spec.state_dir / "bundle"
        self.netns = NetNamespace(self.container_id)
        self.forwarder: PortForwarder | None = None
        self.direct: DirectNetwork | None = None  # network = "direct": the app's TAP
        self.gate: ExecGate | None = None
        self.egress: Egress | None = None  # the route out and its allowlist (egress.py)
        self.handed: listen.HandedSockets | None = None  # listeners and channel for the app
        self._runc = runc
        self._root = root
        self._proc: Spawned | None = None
        self._pid = 0
        self._lock = threading.RLock()
        self._released = False
        self._owns_id = False
        self._bound: Path | None = None  # a root folder given by hand, bound for runc
        self._exit_reason = ""
        self._leases: list[volumes.Lease] = []  # the named volumes this instance holds
        # Our own copy of the spec's stdout fd for summon's lines on the app's console (the
        # gate's, while the app runs): the caller may close its copy once start() returns
        # (the gateway does), and the number could then be a client's socket. Closed at release.
        self._console: int | None = None
        if spec.stdout is not None:
            with contextlib.suppress(OSError):
                self._console = os.dup(spec.stdout)

    # --- starting ----------------------------------------------------------------------------

    def _start(self) -> None:
        spec = self.spec
        self._clear_stale()
        # From here on everything made is this instance's, and _release takes it down.
        self._owns_id = True
        self.bundle.mkdir(parents=True, exist_ok=True)
        self.bundle.chmod(0o700)
        self.netns.create()
        self.gate = ExecGate(
            self._socket_path(),
            network=spec.network,
            record=self.record,
            outside=(
                seccomp.outside_ceiling(spec.syscalls or (), spec.network)
                if self.record
                else frozenset()
            ),
            say=self._console_line,
            manifest=manifest_table(spec.app_config),
        )
        # Where the runtime writes its figures when asked (appstats.py).
        spec = dataclasses.replace(spec, env={**spec.env, "SUMMON_STATS": appstats.STATS_PATH})
        if spec.network == "direct":
            from summon.targets.sandbox.tap import DirectNetwork

            self.direct = DirectNetwork(self.netns.path)
            self.direct.create()
            spec = dataclasses.replace(spec, env={**spec.env, **self.direct.app_environment()})
        if not rootmount.is_verified_mount(spec.rootfs):
            # A folder given by hand (not an image's verified mount): bound where the
            # container's unprivileged root can reach it.
            self._bound = rootmount.bind_folder(spec.rootfs, self.container_id)
            spec = dataclasses.replace(spec, rootfs=self._bound)
        if spec.secrets:
            secrets.mount_tmpfs(secrets_folder(spec), spec.secrets)
        egress = spec.app_config.get("egress") or []
        if egress:
            from summon.targets.sandbox.egress import Egress

            self.egress = Egress(self.netns.path, egress, self.bundle / "slirp4netns.log")
            self.egress.start()
        etc = etc_files(
            spec.rootfs, (spec.hostname, spec.name, self.container_id),
            resolved=self.egress.names if self.egress else {},
            nameserver=self.egress.nameserver if self.egress else None,
        )  # fmt: skip
        files = mount_etc(self.bundle, etc) if etc else {}
        mounts = self._volumes(spec)
        # TCP listeners made here and the gateway's channel go to the app (listen.py); what
        # is left (UDP, direct mode, scripts) goes through the forwarder.
        handed, forwarded = listen.split(spec, self.record)
        handoff = spec.handoff if spec.takes_host_sockets or self.record else None
        inside = listen.unpublished(spec, handed)  # no -p: listened on in its namespace
        if handed or inside or handoff is not None:
            self.handed = listen.HandedSockets(handed, handoff, inside, self.netns.path)
            self.handed.open()
            spec = dataclasses.replace(spec, env={**spec.env, **self.handed.environment()})
        config = oci_config(
            spec,
            self.netns.path,
            self.gate.socket_path,
            record=self.record,
            files=files,
            volumes=mounts,
        )
        tmp = self.bundle / "config.json.tmp"
        tmp.write_text(json.dumps(config, sort_keys=True))
        tmp.rename(self.bundle / "config.json")
        if forwarded:
            from summon.targets.sandbox import portfwd, tap  # asyncio: only when needed
            from summon.targets.sandbox.portfwd import PortForwarder

            guest = tap.STACK_ADDRESS if self.direct is not None else portfwd.GUEST_ADDR
            self.forwarder = PortForwarder(
                self.netns.path, forwarded, guest_addr=guest, say=self._console_line
            )
            self.forwarder.start()
        pid_file = self.bundle / "pid"
        # A session of its own, as the unix target does: a Ctrl-C reaches summon only, and
        # summon's stop() decides what the app gets.
        # --no-new-keyring: no session keyring per container. The kernel charges each to the
        # container's host uid, the same for every instance, whose quota is 200 keys
        # (kernel.keys.maxkeys): the 201st instance could not start ("unable to create session
        # key: disk quota exceeded"). The app cannot reach the keyring it shares with summon:
        # keyctl, add_key and request_key are denied in every profile (seccomp.deny).
        run = ["run", "--keep", "--no-new-keyring", "--bundle", str(self.bundle)]
        run += ["--pid-file", str(pid_file)]
        argv = [*self._runc_cmd(), *run, self.container_id]
        keep: list[int] = []
        if self.direct is not None:  # the TAP goes in as the app's fd 3
            keep = [self.direct.fd]
        elif self.handed is not None:  # listeners from fd 3, then the channel
            keep = self.handed.fds
        if keep:  # runc passes its fds 3.. on: spawn() puts these there
            at = len(self._runc_cmd()) + 1  # after `run`
            argv = [*argv[:at], "--preserve-fds", str(len(keep)), *argv[at:]]
        # runc passes its stdio on to the container (no terminal): spec.stdout reaches the app.
        try:
            self._proc = spawn(argv, keep, spec.stdout, spec.stdin)
        finally:
            # runc has its copies; the sockets and the device live as long as the app's.
            if self.direct is not None:
                self.direct.close()
            elif self.handed is not None:
                self.handed.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not pid_file.exists():
            status = self._proc.poll()
            if status is not None:
                if full := _full_disk(self._root, self.bundle):
                    # runc could not even write its log: its Go error alone said "unable to
                    # store init state: %!w(<nil>)".
                    raise UserError(
                        f"runc could not start {spec.image}: no space left on the disk of "
                        f"{full}, where it keeps the container's state; free some there"
                    )
                raise SummonError(
                    f"runc could not start {spec.image} (exit status {status}): "
                    f"{self._runc_error() or 'see the message above'}"
                )
            if time.monotonic() > deadline:
                raise SummonError(f"runc did not start {spec.image} in {START_TIMEOUT:.0f}s")
            time.sleep(0.002)
        self._pid = int(pid_file.read_text() or 0)

    def _volumes(self, spec: RunSpec) -> list[tuple[str, Path]]:
        """The volumes to bind: named ones attached as folders (held until release), each
        mount point checked in the image (the read-only root cannot have one made)."""
        mounts, self._leases = volumes.folder_mounts(spec, self._notice)
        owner = volumes.app_owner()
        for path, folder in mounts:
            if not (spec.rootfs / path.lstrip("/")).is_dir():
                raise UserError(
                    f"image {spec.image} has no mount point {path} (built by an older summon): "
                    f'rebuild it, with volumes = ["{path}"] in '
                    f"{manifest_table(spec.app_config)}"
                )
            st = folder.stat()
            if owner is not None and st.st_uid != owner[0] and not st.st_mode & 0o002:
                # A host folder given with -v: its owner is the user's to choose, not ours.
                self._notice(
                    f"warning: the app runs as host uid {owner[0]} and cannot write {folder} "
                    f"(owner uid {st.st_uid}); to let it: chown -R {owner[0]}:{owner[1]} {folder}"
                )
        return mounts

    def _notice(self, line: str) -> None:
        self._console_line(f"summon: {line}")
        if self._heard is not None:
            self._heard(line)

    def _console_line(self, line: str) -> None:
        """A line of summon's own on the app's console (the gate's refusals)."""
        if self.spec.stdout is not None and self._console is None:
            return  # the caller's fd could not be copied: nowhere safe to say it
        with contextlib.suppress(OSError):
            os.write(self._console if self._console is not None else 2, line.encode() + b"\n")

    def _socket_path(self) -> Path:
        path = self.bundle / "seccomp.sock"
        # sun_path holds 107 bytes; a deep state folder gets a short private one instead.
        if len(os.fsencode(path)) < 100:
            return path
        short = Path("/run/summon") / self.container_id
        short.mkdir(parents=True, exist_ok=True, mode=0o700)
        return short / "seccomp.sock"

    def _runc_cmd(self) -> list[str]:
        log = ["--log", str(self.bundle / "runc.log"), "--log-format", "json"]  # _runc_error
        return [self._runc, "--root", str(self._root), *log]

    def _runc_quiet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self._runc, "--root", str(self._root), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def _runc_error(self) -> str:
        try:
            lines = (self.bundle / "runc.log").read_text().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    return str(entry.get("msg", ""))
        return ""

    def _state(self) -> str | None:
        """runc's status of our container ("running", "stopped"...), None if it has none."""
        if not (self._root / self.container_id).exists():
            # runc keeps each container's state in ROOT/ID: no folder, no container, and no
            # need to pay for starting runc to hear so.
            return None
        result = self._runc_quiet("state", self.container_id)
        if result.returncode != 0:
            return None
        status: str = json.loads(result.stdout).get("status", "")
        return status

    def _clear_stale(self) -> None:
        status = self._state()
        if status is None:
            return
        if status in ("running", "created", "paused", "creating"):
            raise UserError(
                f"instance {self.spec.name} is already running (container {self.container_id}): "
                "stop it first or choose another name"
            )
        # Left by a summon killed outright: nothing in it is ours to keep.
        self._runc_quiet("delete", "--force", self.container_id)

    # --- Instance ------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def bound(self) -> dict[PortForward, tuple[str, int]]:
        """Every forward -> the host address and port it listens on (a forward of port 0
        gets one when the instance starts), handed to the app or forwarded alike."""
        found = dict(self.handed.bound) if self.handed is not None else {}
        if self.forwarder is not None:
            found.update(self.forwarder.bound)
        return found

    def wait_ready(self, ports: tuple[int, ...], timeout: float) -> None:
        """Return once the app listens in its namespace on each of ports that the forwarder
        reaches (a script binding its own); ports handed to the app are its the moment it
        starts. Spliced by the gateway, an app that never listened (or on another port)
        counted as up, and each held client waited out the forwarder's patience, closed."""
        if self.forwarder is None or self.direct is not None:  # summon.net: not in /proc
            return
        from summon.build.undeclared import listening

        spliced = {f.guest_port for f in self.forwarder.forwards if f.protocol == "tcp"}
        wanted = set(ports) & spliced
        deadline = time.monotonic() + timeout
        while wanted:
            listens = {port for _, port in listening(self._pid)}
            if wanted <= listens or self.wait(0) is not None:
                return  # listening; or gone, which the caller hears from wait()
            if time.monotonic() >= deadline:
                missing = ", ".join(map(str, sorted(wanted - listens)))
                others = ", ".join(map(str, sorted(listens - wanted)))
                instead = f"; it listens on TCP port {others}" if others else ""
                raise NotReady(f"the app did not listen on port {missing}{instead}")
            time.sleep(0.01)

    def wait(self, timeout: float | None = None) -> int | None:
        assert self._proc is not None
        try:
            status = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._release()
        return _status(status)

    def stop(self, grace: float = 10.0) -> int:
        with self._lock:
            proc = self._proc
            try:
                if proc is not None and proc.poll() is None:
                    self.thaw()  # a frozen app could not act on the SIGTERM
                    self._runc_quiet("kill", self.container_id, "TERM")
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(grace)
            finally:
                # Also reached on a second Ctrl-C during the grace period, which then means
                # "now"; the teardown itself is short and must not be cut in half.
                with _sigint_deferred():
                    self._kill(proc)
                    self._release()
            if proc is None or proc.returncode is None:
                return 128 + 9
            return _status(proc.returncode)

    def _kill(self, proc: Spawned | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        self._runc_quiet("kill", self.container_id, "KILL")
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            # runc itself is stuck; `runc delete --force` in _release still kills the init.
            proc.kill()
            proc.wait()

    def _release(self) -> None:
        """Delete the container, forwarder, gate, netns and bundle. Idempotent; never raises."""
        with self._lock:
            if self._released:
                return
            self._released = True
            steps: list[Callable[[], object]] = [
                self._stop_forwarder,
                self._note_exit_reason,
                self._close_handed,
                self._delete_container,
                self._close_direct,
                self._close_gate,
                self._stop_egress,
                self.netns.remove,
                self._unbind_root,
                lambda: secrets.unmount(secrets_folder(self.spec)),
                lambda: unmount_etc(self.bundle),
                self._remove_bundle,
                self._release_volumes,
                self._close_console,
            ]
            for step in steps:
                # Each step runs even if one before it failed: a leak of one is no reason
                # to leak the rest.
                with contextlib.suppress(Exception):
                    step()

    def _close_console(self) -> None:
        if self._console is not None:
            os.close(self._console)
            self._console = None

    def _note_exit_reason(self) -> None:
        # While runc still keeps the stopped container, and so its cgroup.
        if self._proc is None or self._proc.returncode is None:
            return
        if _status(self._proc.returncode) == 128 + 9 and self._owns_id:
            if cgroups.oom_kills("/" + self.container_id) > 0:
                self._exit_reason = f"killed: out of memory (limit {_size(self.spec.memory)})"

    def exit_reason(self) -> str:
        return self._exit_reason

    def _unbind_root(self) -> None:
        # Also for a leftover of a killed summon (clean_up), which never knew _bound.
        if self._bound is not None or self._owns_id:
            rootmount.unbind(rootmount.BIND_ROOT / self.container_id)

    def _stop_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()

    def _close_handed(self) -> None:
        if self.handed is not None:
            self.handed.close()

    def _close_direct(self) -> None:
        if self.direct is not None:
            self.direct.close()

    def _delete_container(self) -> None:
        # Also removes the cgroup; nothing to do when `runc run` already deleted it on exit.
        # Keyed on the id, not on _proc: an interrupt can land between Popen and assignment.
        if self._owns_id and self._state() is not None:
            self._runc_quiet("delete", "--force", self.container_id)

    def _remove_bundle(self) -> None:
        if self._owns_id:
            shutil.rmtree(self.bundle, ignore_errors=True)
            shutil.rmtree(Path("/run/summon") / self.container_id, ignore_errors=True)
            with contextlib.suppress(OSError):  # a start that failed early: runc's, empty
                (self._root / self.container_id).rmdir()

    def _stop_egress(self) -> None:
        if self.egress is not None:
            self.egress.stop()

    def _release_volumes(self) -> None:
        for held in self._leases:
            held.close()
        self._leases = []

    def _close_gate(self) -> None:
        if self.gate is not None:
            self.gate.close()

    def freeze(self) -> None:
        """Every process of the container stops (cgroup freezer); memory stays."""
        freezer.freeze("/" + self.container_id)

    def thaw(self) -> None:
        freezer.thaw("/" + self.container_id)

    def runtime_stats(self, timeout: float = 0.5) -> dict[str, float]:
        if not self._pid or freezer.is_frozen("/" + self.container_id):
            return {}  # a frozen app would answer only once thawed
        return appstats.ask(self._pid, timeout)

    def stats(self) -> Stats:
        cgroup = "/" + self.container_id
        network: dict[str, int] = {}
        if self.direct is not None and self._pid:
            from summon.targets.sandbox.tap import counters

            network = counters(self._pid)
        return Stats(
            memory_bytes=cgroups.memory_bytes(cgroup),
            cpu_seconds=cgroups.cpu_seconds(cgroup),
            network=network,
            memory_limit=self.spec.memory or None,  # the container's memory.limit_in_bytes
        )


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) for the block, then deliver it as it would have been."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers run on the main thread only: nothing can interrupt us here
        return
    caught: list[FrameType | None] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            else:
                signal.raise_signal(signal.SIGINT)


def _size(n: int) -> str:
    """64M, 1G, 1536K: as -m and the manifest's memory take it."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def _status(code: int) -> int:
    """runc reports death by signal N as 128+N already; a signalled runc itself too."""
    return 128 - code if code < 0 else code


def _full_disk(*folders: Path) -> Path | None:
    """The first of folders whose disk is (all but) full, if any."""
    for folder in folders:
        with contextlib.suppress(OSError):
            disk = os.statvfs(folder)
            if disk.f_bavail * disk.f_frsize < FULL_BELOW:
                return folder
    return None
