"""The sandbox target: the image runs as one process under runc, from a generated OCI config.

What holds the app in: its own pid, mount, ipc, uts, cgroup and network namespaces; the image
as a read-only root with a small tmpfs /tmp; no capabilities and no_new_privs; a seccomp
allowlist (seccomp.py); cgroup memory and pids limits. Its network namespace is empty but for
lo, and port forwards reach it from host loopback through portfwd.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from summon import paths
from summon.errors import SummonError, TargetUnavailable, UserError
from summon.targets import seccomp
from summon.targets.base import Check, Instance, RunSpec, Stats, Target
from summon.targets.netns import NetNamespace, list_namespaces, run_inside

if TYPE_CHECKING:
    from summon.targets.direct import DirectNetwork
    from summon.targets.portfwd import PortForwarder

RUNC_MISSING = "runc not found: install it with `apt-get install runc`, or use --target unix"
NEEDS_ROOT = (
    "the sandbox target needs root (namespaces, cgroups): run summon as root, or use --target unix"
)
NOFILE = 4096
START_TIMEOUT = 15.0  # seconds for runc to have the container created
# Mount points runc mounts over; it would create missing ones, i.e. write into the image.
MOUNT_POINTS = ("proc", "dev", "tmp")
# runc's own defaults (`runc spec`) plus a few Docker also hides.
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def container_id(name: str) -> str:
    """runc container id (and netns name) for an instance name: [A-Za-z0-9_.-], at most 64."""
    return ("summon-" + _ID_BAD.sub("-", name))[:64]


def runc_root() -> Path:
    """Where runc keeps the state of summon's containers."""
    return paths.state_dir() / "runc"


def find_runc() -> str:
    runc = shutil.which("runc")
    if runc is None:
        raise TargetUnavailable(RUNC_MISSING)
    return runc


def oci_config(spec: RunSpec, netns_path: Path, listener_path: Path) -> dict[str, Any]:
    """The OCI runtime config (config.json) that runs spec.argv in the sandbox."""
    env = {"PATH": "/usr/bin:/bin", **spec.env}
    no_caps: dict[str, list[str]] = {
        k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    # tmpfs pages are charged to the cgroup too; the cap only keeps /tmp from eating it all.
    tmp_size = max(spec.memory // 4, 1024 * 1024)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(spec.argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/",
            "capabilities": no_caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(spec.rootfs), "readonly": True},
        "hostname": container_id(spec.name),
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                # runc makes null, zero, full, random, urandom and tty in here.
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=64k"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "mode=1777", f"size={tmp_size}"],
            },
            # No /sys: nothing an app needs is there, and much about the host is.
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "cgroup"},
                {"type": "network", "path": str(netns_path)},
            ],
            "cgroupsPath": "/" + container_id(spec.name),
            "resources": {
                # swap == limit: memory+swap may not exceed memory, i.e. no swap at all.
                "memory": {"limit": spec.memory, "swap": spec.memory},
                "pids": {"limit": spec.pids},
                "devices": [{"allow": False, "access": "rwm"}],
            },
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp.profile(spec.network, str(listener_path)),
        },
    }


class SandboxInstance(Instance):
    """One container started with `runc run`; owns its netns, forwarder, exec gate and bundle."""

    def __init__(self, runc: str, root: Path, spec: RunSpec) -> None:
        self.spec = spec
        self.container_id = container_id(spec.name)
        self.bundle = spec.state_dir / "bundle"
        self.netns = NetNamespace(self.container_id)
        self.forwarder: PortForwarder | None = None
        self.direct: DirectNetwork | None = None  # network = "direct": the app's TAP
        self.gate: seccomp.ExecGate | None = None
        self._runc = runc
        self._root = root
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._lock = threading.RLock()
        self._released = False
        self._owns_id = False

    # --- starting ----------------------------------------------------------------------------

    def _start(self) -> None:
        spec = self.spec
        self._clear_stale()
        # From here on everything made is this instance's, and _release takes it down.
        self._owns_id = True
        self.bundle.mkdir(parents=True, exist_ok=True)
        self.bundle.chmod(0o700)
        self.netns.create()
        self.gate = seccomp.ExecGate(self._socket_path())
        if spec.network == "direct":
            from summon.targets.direct import DirectNetwork

            self.direct = DirectNetwork(self.netns.path)
            self.direct.create()
            spec = dataclasses.replace(spec, env={**spec.env, **self.direct.app_environment()})
        config = oci_config(spec, self.netns.path, self.gate.socket_path)
        tmp = self.bundle / "config.json.tmp"
        tmp.write_text(json.dumps(config, sort_keys=True))
        tmp.rename(self.bundle / "config.json")
        if spec.ports:
            from summon.targets import direct, portfwd  # asyncio: only when needed
            from summon.targets.portfwd import PortForwarder

            guest = direct.STACK_ADDRESS if self.direct is not None else portfwd.GUEST_ADDR
            self.forwarder = PortForwarder(self.netns.path, spec.ports, guest_addr=guest)
            self.forwarder.start()
        pid_file = self.bundle / "pid"
        # A session of its own, as the unix target does: a Ctrl-C reaches summon only, and
        # summon's stop() decides what the app gets.
        run = ["run", "--bundle", str(self.bundle), "--pid-file", str(pid_file)]
        argv = [*self._runc_cmd(), *run, self.container_id]
        keep: tuple[int, ...] = ()
        if self.direct is not None:  # the TAP goes in as the app's fd 3
            argv = self.direct.runc_argv(argv, len(self._runc_cmd()) + 1)
            keep = (self.direct.fd,)
        # runc passes its stdio on to the container (no terminal): spec.stdout reaches the app.
        self._proc = subprocess.Popen(
            argv,
            start_new_session=True,
            stdout=spec.stdout,
            stderr=spec.stdout,
            pass_fds=keep,
        )
        if self.direct is not None:
            self.direct.close()  # runc has its copy; the device lives as long as the app's
        deadline = time.monotonic() + START_TIMEOUT
        while not pid_file.exists():
            status = self._proc.poll()
            if status is not None:
                raise SummonError(
                    f"runc could not start {spec.image} (exit status {status}): "
                    f"{self._runc_error() or 'see the message above'}"
                )
            if time.monotonic() > deadline:
                raise SummonError(f"runc did not start {spec.image} in {START_TIMEOUT:.0f}s")
            time.sleep(0.002)
        self._pid = int(pid_file.read_text() or 0)

    def _socket_path(self) -> Path:
        path = self.bundle / "seccomp.sock"
        # sun_path holds 107 bytes; a deep state folder gets a short private one instead.
        if len(os.fsencode(path)) < 100:
            return path
        short = Path("/run/summon") / self.container_id
        short.mkdir(parents=True, exist_ok=True, mode=0o700)
        return short / "seccomp.sock"

    def _runc_cmd(self) -> list[str]:
        return [self._runc, "--root", str(self._root), "--log", str(self.bundle / "runc.log")]

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

    def _kill(self, proc: subprocess.Popen[bytes] | None) -> None:
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
                self._delete_container,
                self._close_direct,
                self._close_gate,
                self.netns.remove,
                self._remove_bundle,
            ]
            for step in steps:
                # Each step runs even if one before it failed: a leak of one is no reason
                # to leak the rest.
                with contextlib.suppress(Exception):
                    step()

    def _stop_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()

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

    def _close_gate(self) -> None:
        if self.gate is not None:
            self.gate.close()

    def stats(self) -> Stats:
        cgroup = "/" + self.container_id
        network: dict[str, int] = {}
        if self.direct is not None and self._pid:
            from summon.targets.direct import counters

            network = counters(self._pid)
        return Stats(
            memory_bytes=_cgroup_memory(cgroup), cpu_seconds=_cgroup_cpu(cgroup), network=network
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


def _status(code: int) -> int:
    """runc reports death by signal N as 128+N already; a signalled runc itself too."""
    return 128 - code if code < 0 else code


# --- cgroups ---------------------------------------------------------------------------------


def _cgroup_mounts() -> dict[str, Path]:
    """Controller (or "unified") -> mount point, from /proc/self/mounts."""
    found: dict[str, Path] = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, where, fstype, options = line.split()[:4]
            if fstype == "cgroup2":
                found.setdefault("unified", Path(where))
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("memory", "pids", "cpuacct", "cpu"):
                        found.setdefault(opt, Path(where))
    return found


def _read_stat(path: Path) -> dict[str, int]:
    try:
        pairs = (line.split() for line in path.read_text().splitlines())
        return {k: int(v) for k, v in pairs}
    except (OSError, ValueError):
        return {}


def _cgroup_memory(cgroup: str) -> int:
    mounts = _cgroup_mounts()
    rel = cgroup.lstrip("/")
    if "memory" in mounts:  # v1: anonymous memory plus tmpfs, not the image's page cache
        stat = _read_stat(mounts["memory"] / rel / "memory.stat")
        return stat.get("total_rss", 0) + stat.get("total_shmem", 0)
    if "unified" in mounts:
        stat = _read_stat(mounts["unified"] / rel / "memory.stat")
        return stat.get("anon", 0) + stat.get("shmem", 0)
    return 0


def _cgroup_cpu(cgroup: str) -> float:
    mounts = _cgroup_mounts()
    rel = cgroup.lstrip("/")
    with contextlib.suppress(OSError, ValueError):
        if "cpuacct" in mounts:
            return int((mounts["cpuacct"] / rel / "cpuacct.usage").read_text()) / 1e9
        if "unified" in mounts:
            return _read_stat(mounts["unified"] / rel / "cpu.stat").get("usage_usec", 0) / 1e6
    return 0.0


# --- the target ------------------------------------------------------------------------------


class SandboxTarget(Target):
    name: ClassVar[str] = "sandbox"
    description: ClassVar[str] = (
        "a runc container: namespaces, no capabilities, seccomp, read-only root, cgroup limits"
    )

    def __init__(self, root: Path | None = None) -> None:
        """root: runc's state folder (default: runc_root())."""
        self.root = root

    def clean_up(self, spec: RunSpec) -> None:
        """Delete the container's runc record and cgroup, its netns and its bundle."""
        runc = shutil.which("runc")
        if runc is None:
            return
        leftover = SandboxInstance(runc, self.root or runc_root(), spec)
        leftover._owns_id = True  # the id is the dead instance's: all it names is ours
        leftover.netns._created = True
        leftover._release()

    def start(self, spec: RunSpec) -> SandboxInstance:
        runc = find_runc()
        if os.geteuid() != 0:
            raise TargetUnavailable(NEEDS_ROOT)
        if platform.machine() != "x86_64":
            raise TargetUnavailable(
                f"the sandbox's seccomp profile is for x86_64, not {platform.machine()}: "
                "use --target unix"
            )
        for name in MOUNT_POINTS:
            if not (spec.rootfs / name).is_dir():
                raise UserError(
                    f"image {spec.image} has no /{name} mount point: rebuild it with summon build"
                )
        root = self.root or runc_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        instance = SandboxInstance(runc, root, spec)
        try:
            instance._start()
        except BaseException:
            instance.stop(grace=0)
            raise
        return instance

    @classmethod
    def check(cls) -> list[Check]:
        checks = [_check_runc(), _check_root(), _check_arch(), *_check_cgroups()]
        checks.append(_check_seccomp())
        checks.append(_check_netns())
        return checks


def _check_runc() -> Check:
    runc = shutil.which("runc")
    if runc is None:
        return Check("sandbox: runc", False, "apt-get install runc")
    version = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    first = version.stdout.splitlines()[0] if version.stdout else "runc"
    return Check(f"sandbox: {first}", True)


def _check_root() -> Check:
    if os.geteuid() == 0:
        return Check("sandbox: running as root", True)
    return Check(
        "sandbox: running as root",
        False,
        "run summon as root; rootless runc would need a user namespace, cgroup v2 delegation "
        "and a netns made by a helper such as slirp4netns",
    )


def _check_arch() -> Check:
    machine = platform.machine()
    return Check(
        f"sandbox: x86_64 host ({machine})",
        machine == "x86_64",
        "" if machine == "x86_64" else "the seccomp profile is for x86_64 only; use --target unix",
    )


def _check_cgroups() -> list[Check]:
    mounts = _cgroup_mounts()
    enabled: set[str] = set()
    if "unified" in mounts:
        with contextlib.suppress(OSError):
            enabled |= set((mounts["unified"] / "cgroup.controllers").read_text().split())
    checks = []
    for ctl in ("memory", "pids"):
        ok = ctl in mounts or ctl in enabled
        fix = "" if ok else f"mount the cgroup {ctl} controller (v1) or enable it in cgroup v2"
        checks.append(Check(f"sandbox: cgroup {ctl} controller", ok, fix))
    return checks


def _check_seccomp() -> Check:
    what = "sandbox: seccomp with user notification (runc and kernel)"
    try:
        kernel = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    except OSError:
        kernel = []
    if "user_notif" not in kernel:
        return Check(what, False, "the kernel lacks seccomp user notification: Linux 5.0 or newer")
    runc = shutil.which("runc")
    if runc is None:
        return Check(what, False, "apt-get install runc")
    # `runc features` is marked experimental in 1.1 and may be absent; `--version` names
    # libseccomp whenever runc was built with it.
    features = subprocess.run([runc, "features"], capture_output=True, text=True, check=False)
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        sec = json.loads(features.stdout)["linux"]["seccomp"]
        ok = bool(sec.get("enabled")) and "SCMP_ACT_NOTIFY" in sec.get("actions", [])
        return Check(what, ok, "" if ok else "install a runc (1.1+) built with libseccomp 2.5+")
    version = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    ok = "libseccomp" in version.stdout
    return Check(what, ok, "" if ok else "install a runc (1.1+) built with libseccomp 2.5+")


def _check_netns() -> Check:
    what = "sandbox: network namespaces under /run/netns"
    if os.geteuid() != 0:
        return Check(what, False, "needs root")
    ns = NetNamespace(f"summon-doctor-{os.getpid()}")
    try:
        ns.create()
        run_inside(ns.path, lambda: None)
    except OSError as e:
        return Check(what, False, f"cannot create one ({e.strerror}); is /run writable?")
    finally:
        ns.remove()
    return Check(what, ns.name not in list_namespaces())
