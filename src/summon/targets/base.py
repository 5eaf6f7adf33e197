"""The one small interface every target implements: check, start, wait, stop, stats.

A new target is a new module with a Target subclass, registered in summon.targets.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# The process every image runs: no site, no PYTHON* variables, the runtime's boot script.
IMAGE_ARGV = ("/usr/bin/python3.11", "-S", "-E", "/usr/lib/summon/boot.py")


@dataclass(frozen=True)
class PortForward:
    """Forward host_addr:host_port on the host to guest_port inside the instance."""

    host_port: int
    guest_port: int
    protocol: str = "tcp"
    host_addr: str = "127.0.0.1"

    def __str__(self) -> str:
        return f"{self.host_addr}:{self.host_port}->{self.guest_port}/{self.protocol}"


@dataclass(frozen=True)
class Volume:
    """A named volume the host keeps across runs, mounted at path inside the instance."""

    name: str
    path: str  # an image path

    def __str__(self) -> str:
        return f"{self.name}:{self.path}"


@dataclass
class RunSpec:
    """Everything a target needs to start one instance of an image."""

    name: str  # instance name, unique among running instances
    image: str  # the reference the user gave, for messages
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


@dataclass(frozen=True)
class Stats:
    memory_bytes: int  # resident memory of the instance, all its processes
    cpu_seconds: float
    # network = "direct": summon.net's per-path counters ("tcp__retransmit": 3, ...)
    network: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One line of `summon doctor`: what was checked, whether it holds, what to do if not."""

    what: str
    ok: bool
    fix: str = ""


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


class Target(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def check(cls) -> list[Check]:
        """What this host has and lacks for this target (for `summon doctor`)."""

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
