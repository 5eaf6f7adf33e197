"""The one interface every target implements, and the RunSpec every target is started from.

A target (Target) checks the host, prepares an image for itself, and starts instances
(Instance) that can be waited for, stopped, asked for stats and for readiness. What only some
targets can do is declared, not guessed: `options` (constructor keywords the CLI and the
gateway may pass), `capabilities` (volumes, secrets, freeze...) with their optional hooks,
and `export_formats` for `summon export`. A new target is a new module with a Target subclass
and one line in summon.targets.TARGETS.
"""

from __future__ import annotations

import abc
import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from summon.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.store.image import Image

    Step = Callable[[str], None]

# The process every image runs: no site, no PYTHON* variables, the runtime's boot script.
IMAGE_ARGV = ("/usr/bin/python3.11", "-S", "-E", "/usr/lib/summon/boot.py")

# What a target may declare it can do (Target.capabilities); each names the hooks it brings.
VOLUMES = "volumes"  # RunSpec.volumes are mounted (-v NAME:/PATH)
FREEZE = "freeze"  # Instance.freeze() / thaw(): CPU stops, memory stays
# start() resumes a saved snapshot of the app at its ready point instead of booting, when one
# matches the spec (Instance.restored says which); Instance.snapshot() names it. The target
# takes the option snapshot=False to boot every time (`summon run --no-snapshot`).
SNAPSHOT = "snapshot"
# RunSpec.handoff reaches the app: a gateway hands it accepted connections by fd.
HANDOFF = "handoff"
# Runs a command from a root filesystem, isolated and without network, in well under a second:
# what the build's verification run (summon.build.verify) asks for.
ISOLATED_RUN = "isolated-run"
SECRETS = "secrets"  # RunSpec.secrets reach the app read-only, never through the image
ARGS = "args"  # RunSpec.args reach the app as its arguments, instead of the manifest's args
DEFAULT_MEMORY = 128 * 1024 * 1024
DEFAULT_PIDS = 64
# The image config label that holds the image's derived syscall allowlist (space-separated
# names; summon.build.syscalls writes it). Absent: the sandbox's static allowlist.
SYSCALLS_LABEL = "dev.summon.syscalls"
# The image config label that says which version of the gateway's hand-off messages the
# image's runtime speaks (summon.runtime.handoff.VERSION, written at build). Absent: 1, from
# before the label, whose runtime closes a message of a kind it does not know.
HANDOFF_LABEL = "dev.summon.handoff"
# The image config label that says how the image's runtime talks to the qemu target's host
# (summon.runtime.vm.CONTROL_VERSION, written at build): 2, on its own control port. Absent:
# on the VM's console, where the app's output could pass for its lines (not booted).
VM_CONTROL_LABEL = "dev.summon.vm-control"


# How a target tells the runtime which volumes it mounted: "PATH" where the app sees the
# volume at its image path, "PATH=HOST_FOLDER" where it sees the host's files (the unix
# target); ':'-separated. A store whose volume is not named here is not mounted.
VOLUMES_ENV = "SUMMON_VOLUMES"


def volumes_environment(mounts: list[tuple[str, str | None]]) -> str:
    """SUMMON_VOLUMES for (image path, host folder, or None where the app sees the image path)."""
    return ":".join(path if host is None else f"{path}={host}" for path, host in mounts)


class NotSupported(UserError):
    """The target cannot do what was asked (a capability it does not declare)."""


@dataclass(frozen=True)
class PortForward:
    """Forward host_addr:host_port on the host to guest_port inside the instance."""

    host_port: int
    guest_port: int
    protocol: str = "tcp"
    host_addr: str = "127.0.0.1"

    def __str__(self) -> str:
        return f"{self.host_addr}:{self.host_port}->{self.guest_port}/{self.protocol}"


class PortTaken(UserError):
    """A host address and port an instance cannot listen on: the user's to choose anew."""

    def __init__(self, fwd: PortForward, error: OSError) -> None:
        # /udp as -p writes it: a UDP port taken said what a TCP one says, and with both
        # published on one port (-p 53:53 -p 53:53/udp) the line did not say which was taken.
        proto = "/udp" if fwd.protocol == "udp" else ""
        super().__init__(
            f"-p {fwd.host_addr}:{fwd.host_port}{proto}: cannot listen there "
            f"({error.strerror or error}); choose another host port or a local address"
        )


@dataclass(frozen=True)
class Volume:
    """A volume mounted at path inside the instance: a named volume the host keeps across
    runs (summon.targets.volumes), or a host folder bound in (name is its absolute path)."""

    name: str  # a volume name, or an absolute host path
    path: str  # an image path

    @property
    def is_bind(self) -> bool:
        """Whether this is a host folder (-v /host/dir:/data) rather than a named volume."""
        return self.name.startswith("/")

    def __str__(self) -> str:
        return f"{self.name}:{self.path}"


@dataclass(frozen=True)
class SecretFile:
    """A secret given to one run: its name in the app, and the host file read at each start."""

    name: str
    path: Path

    def read(self) -> bytes:
        """The secret's bytes; UserError naming the file when it cannot be read.

        Only a regular file, read at most MAX_SECRET_BYTES + 1 bytes: a device (/dev/zero) was
        read until memory ran out, a FIFO blocked the run for ever, and a pipe (bash's
        <(...)) gave its bytes once and nothing at the next start.
        """
        where = f"--secret {self.name}={self.path}"
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise UserError(f"{where}: cannot read it: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"{where}: {not_a_file(st.st_mode)}")
            chunks, size = [], 0
            while size <= MAX_SECRET_BYTES and (chunk := os.read(fd, 1 << 16)):
                chunks.append(chunk)
                size += len(chunk)
        except OSError as e:
            raise UserError(f"{where}: cannot read it: {e.strerror}") from None
        finally:
            os.close(fd)
        if size > MAX_SECRET_BYTES:
            raise UserError(f"{where}: over {MAX_SECRET_BYTES} bytes")
        return b"".join(chunks)


def not_a_file(mode: int) -> str:
    """Why a secret's path that is no regular file is refused, for a --secret error."""
    if stat.S_ISFIFO(mode):
        return (
            "is a pipe, not a file: a secret is read again at each start (restarts too) and a "
            "pipe gives its bytes once; put it in a file (on /dev/shm to keep it off the disk)"
        )
    kind = "a folder" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"is {kind}, not a file"


# A secret is a key or a token: the bound keeps a wrong file from eating a VM's memory.
MAX_SECRET_BYTES = 1 << 20


@dataclass
class RunSpec:
    """Everything a target needs to start one instance of an image.

    Made in one place, RunSpec.for_image; a target opens the image by image_digest, never by
    the reference, which may name another image by the time an instance restarts.
    """

    name: str  # instance name, unique among running instances
    image: str  # the reference the user gave, for messages only
    rootfs: Path  # the image's unpacked root filesystem; targets must not write to it
    app_config: dict[str, Any]  # /etc/summon/app.json of the image
    argv: tuple[str, ...] = IMAGE_ARGV  # image paths
    env: dict[str, str] = field(default_factory=dict)  # manifest defaults overlaid with -e
    ports: tuple[PortForward, ...] = ()
    volumes: tuple[Volume, ...] = ()
    network: str = "socket"  # "socket" | "direct" | "none"
    memory: int = 128 * 1024 * 1024  # bytes
    pids: int = 64
    state_dir: Path = Path()  # a folder of this instance's own, for bundles and logs
    # Where the app's console (stdout and stderr) goes: an fd the target passes on, such as
    # the pipe a detached instance's monitor logs from. None: summon's own stdout/stderr.
    stdout: int | None = None
    # What the app reads as its stdin: an fd the target passes on (the sandbox only: the
    # build's verification run reads its answer token there). None: summon's own stdin.
    stdin: int | None = None
    image_digest: str = ""  # the image index this instance runs: what targets open
    # The syscalls the image's recording run made plus its base set (SYSCALLS_LABEL); None
    # for an image without one. Only a sandbox reads it.
    syscalls: tuple[str, ...] | None = None
    secrets: tuple[SecretFile, ...] = ()  # capability SECRETS
    # The app's arguments for this run (`summon run IMAGE ARGS...`), instead of the
    # manifest's args (capability ARGS): sys.argv[1:] of a script, as under `python app.py`.
    args: tuple[str, ...] = ()
    # The instance's name as the user knows it (summon ps; name is its short ID): what the
    # app finds itself as in its /etc/hosts.
    hostname: str = ""
    # A gateway's end-of-socketpair fd for the app (capability HANDOFF; only where
    # stack_serves): accepted connections come over it (summon.gateway.handoff). Like
    # stdout, it only means something inside one process.
    handoff: int | None = None
    # The version of the hand-off messages the image's runtime speaks (HANDOFF_LABEL): what
    # a gateway may send it over handoff.
    handoff_version: int = 1

    @classmethod
    def for_image(
        cls,
        image: Image,
        *,
        name: str,
        state_dir: Path,
        ports: tuple[PortForward, ...] = (),
        volumes: tuple[Volume, ...] = (),
        env: dict[str, str] | None = None,
        memory: int | None = None,
        secrets: tuple[SecretFile, ...] = (),
    ) -> RunSpec:
        """The spec that runs image: its entrypoint, network mode and limits, the manifest's
        environment overlaid with env, and memory (default: the manifest's)."""
        app = image.app_config()
        entrypoint = image.config.get("config", {}).get("Entrypoint")
        labels = image.config.get("config", {}).get("Labels") or {}
        syscalls = labels.get(SYSCALLS_LABEL)
        spoken = labels.get(HANDOFF_LABEL)
        return cls(
            name=name,
            image=image.ref,
            rootfs=image.rootfs(),
            app_config=app,
            argv=tuple(entrypoint or IMAGE_ARGV),
            env={**app.get("env", {}), **(env or {})},
            ports=ports,
            volumes=volumes,
            network=str(app.get("network", "socket")),
            memory=memory or int(app.get("memory", DEFAULT_MEMORY)),
            pids=int(app.get("pids", DEFAULT_PIDS)),
            state_dir=state_dir,
            image_digest=image.desc.digest,
            syscalls=tuple(sorted(syscalls.split())) if isinstance(syscalls, str) else None,
            secrets=secrets,
            handoff_version=int(spoken) if isinstance(spoken, str) and spoken.isdecimal() else 1,
        )

    @property
    def stack_serves(self) -> bool:
        """Whether the app serves through the runtime's Stack on host sockets (network
        "socket", an entry function that asks for a Stack or a WSGI/ASGI app; not a plain
        script nor an entry function without a Stack, which bind their own ports): such an
        app can take listening sockets and connections from the host."""
        entry = self.app_config.get("entry")
        if not isinstance(entry, dict) or self.network != "socket":
            return False
        kind = entry.get("kind")
        return kind in ("wsgi", "asgi") or (kind == "function" and entry.get("stack") is not False)

    @property
    def takes_host_sockets(self) -> bool:
        """Whether the app may be handed sockets of the host's network namespace (its
        listeners, a gateway's connections): it serves through the Stack (stack_serves) and
        its profile does not allow connect(). A TCP connection accepted on the host and
        disconnected by connect(AF_UNSPEC) connects again to anywhere the host reaches (its
        127.0.0.1, past egress's rules), so an image whose profile allows connect (egress,
        a recorded or declared connect, or no derived profile: the static list) is reached
        through the forwarder instead, unless its manifest says host_sockets = true (an app
        that must see its peers' real addresses, accepting that reach)."""
        if not self.stack_serves:
            return False
        if self.app_config.get("host_sockets") is True:
            return True
        return self.syscalls is not None and "connect" not in self.syscalls


@dataclass(frozen=True)
class Stats:
    memory_bytes: int  # resident memory of the instance, all its processes
    cpu_seconds: float
    # network = "direct": summon.net's per-path counters ("tcp__retransmit": 3, ...)
    network: dict[str, int] = field(default_factory=dict)
    # The cap the target holds memory_bytes to (the sandbox's cgroup), None where nothing
    # caps what is measured: a QEMU process's resident memory is the guest's RAM and QEMU's
    # own (its translated code under TCG), never held to the guest's size.
    memory_limit: int | None = None


@dataclass(frozen=True)
class Check:
    """One line of `summon doctor`: what was checked, whether it holds, what to do if not."""

    what: str
    ok: bool
    fix: str = ""
    tip: str = ""  # works, but could be faster: what to change on the host


def process_stats(pid: int) -> Stats:
    """Resident memory and CPU time of one host process, from /proc (zeros once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return Stats(0, 0.0)
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return Stats(resident_pages * os.sysconf("SC_PAGE_SIZE"), cpu)


class Instance(abc.ABC):
    """A started instance. All methods may be called from any thread."""

    # start() resumed this instance from a snapshot rather than booting it (SNAPSHOT).
    restored: bool = False

    @property
    @abc.abstractmethod
    def pid(self) -> int:
        """Host pid of the instance's top process (for runc: the container's init)."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the app to exit; return its exit status, or None on timeout."""

    @abc.abstractmethod
    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after grace seconds; release everything; return the status.

        Safe to call more than once and after the app has exited on its own.
        """

    @abc.abstractmethod
    def stats(self) -> Stats:
        """Memory and CPU of the instance now."""

    def exit_reason(self) -> str:
        """Why the app ended, when the target knows more than its status says, e.g.
        "killed: out of memory (limit 64M)"; "" otherwise. Asked after wait() returned."""
        return ""

    def wait_ready(self, ports: tuple[int, ...], timeout: float) -> None:
        """Return once the app listens on these guest ports (raise NotReady after timeout).

        Default: at once. A target whose forwarder accepts before the app listens (QEMU's
        user network) waits here, so callers can connect without being reset.
        """
        return None

    def snapshot(self) -> str:
        """The key of the snapshot a later start() of this spec restores (capability SNAPSHOT).

        The snapshot holds the app at its ready point (its Stack listening), saved by the
        start that booted it, or the one this instance was restored from. So an idle
        instance can be stopped, its memory released, and started again in a fraction of a
        boot, losing what it did since its ready point, as a stop and start would. Raises
        NotSupported when no snapshot exists for it (an instance with volumes or secrets, an
        app that never listened, option snapshot=False, or a target without SNAPSHOT).
        """
        raise NotSupported("this target keeps no snapshots of its instances")

    def freeze(self) -> None:
        """Stop the instance's CPU, keeping its memory (capability FREEZE)."""
        raise NotSupported("this target cannot freeze an instance")

    def thaw(self) -> None:
        """Let a frozen instance run again (capability FREEZE)."""
        raise NotSupported("this target cannot thaw an instance")

    def runtime_stats(self, timeout: float = 0.5) -> dict[str, float]:
        """Figures from inside the running app (summon.runtime.stats: GC collections per
        generation, allocated blocks, resident memory, connections, requests), asked for now
        and waited for up to timeout; {} where the target cannot ask, or no answer came."""
        return {}


class NotReady(UserError):
    """The instance did not come to listen on its ports in time."""


class Target(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    # Keywords the constructor takes from the CLI (--accel) and the gateway config.
    options: ClassVar[frozenset[str]] = frozenset()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # format -> what `summon export IMAGE --as FORMAT -o PATH` writes
    export_formats: ClassVar[dict[str, str]] = {}
    # Whether -p HOST:GUEST reaches the app's port GUEST (so a GUEST the image does not list
    # reaches nobody); a target serving something of its own on HOST (a page) says False.
    forwards_to_app_ports: ClassVar[bool] = True
    # The limits of a run (--memory, --pids) this target holds the app to; `summon run` says
    # when one given is not (a host process, a tab), rather than leave it believed.
    held_limits: ClassVar[frozenset[str]] = frozenset({"memory", "pids"})
    # Whether -e / --env-file reach the app; a target whose app reads the environment fixed in
    # an artifact (a static site's app.json) says False, and `summon run` refuses them.
    env_at_run: ClassVar[bool] = True

    @classmethod
    @abc.abstractmethod
    def check(cls) -> list[Check]:
        """What this host has and lacks for this target (for `summon doctor`)."""

    @classmethod
    def default_preference(cls) -> tuple[int, str]:
        """(rank, why): how much this target wants to be the default here; 0 = not at all.

        The why is shown when this target is chosen, or when it declined with rank 0.
        """
        return 0, ""

    def prepare(self, image: Image, step: Step) -> Image:
        """Make image ready for this target before a RunSpec is made from it; return it.

        A VM target adds its boot artifact here (which may build a kernel: step reports it,
        and the image returned has a new digest). Default: the image as it is.
        """
        return image

    def export(self, image: Image, fmt: str, dest: Path, step: Step, **options: Any) -> None:
        """Write image as fmt (one of export_formats) to dest; options are the format's own."""
        raise NotSupported(f"target {self.name} exports nothing as {fmt}")

    def ports_ignored(self, spec: RunSpec) -> str:
        """Why spec's port forwards (-p) would not apply on this target, or "" when they
        do. Default: they do."""
        return ""

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> Instance:
        """Start an instance; raise TargetUnavailable (a UserError) when the host cannot."""

    def clean_up(self, spec: RunSpec) -> None:
        """Release what an instance of spec left behind when its owner was killed outright.

        Its processes are gone already (summon.instances.supervise sees to that); this is for
        what outlives them: a runtime's record of the container, a namespace, files. Never
        raises. Default: nothing to release.
        """
        return None

    def hear_notices(self, listener: Callable[[str], None] | None) -> None:
        """Also hand each notice this target says from now on (a line for the user, such as
        a warning that a snapshot was refused) to listener; None stops that. The instance
        monitor hears a detached run's first start, whose notices `summon run -d` prints
        (they would otherwise reach only the monitor's log). Default: a target that says
        nothing of its own ignores it."""
        return None

    def leftovers(self, spec: RunSpec) -> list[str]:
        """What clean_up(spec) could not release and is still there, each in a few words
        naming it ("runc container summon-ab12...", "network namespace ..."), for the user
        to be told. Default: nothing is ever left."""
        return []


def notice_sayer(
    notice: Callable[[str], None],
    listener: Callable[[str], None] | None,
    console: int | None,
) -> Callable[[str], None]:
    """How a target's start says a notice: to notice (summon's stderr: a detached instance's
    monitor.log), to listener (hear_notices: the monitor of `summon run -d`, which prints
    it) and as a `summon:` line on console, the spec's stdout (what `summon logs` shows)."""

    def say(line: str) -> None:
        notice(line)
        if listener is not None:
            listener(line)
        if console is not None:
            with contextlib.suppress(OSError):
                os.write(console, f"summon: {line}\n".encode())

    return say
