"""The OCI runtime config (config.json) runc starts a sandboxed instance from.

What holds the app in: its own user, pid, mount, ipc, uts, cgroup and network namespaces;
the app runs as APP_UID, an unprivileged uid whose user namespace maps the container's ids to
an unprivileged host range (id_range); the image as a read-only root (the verified erofs
mount, rootmount.py) with a small tmpfs /tmp; /proc with what tells about the host masked; no
capabilities and no_new_privs; a seccomp allowlist (seccomp.py); cgroup memory and pids limits.
"""

from __future__ import annotations

import hashlib
import re
import resource
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from summon.errors import UserError
from summon.targets import secrets
from summon.targets.base import VOLUMES_ENV, RunSpec, volumes_environment
from summon.targets.sandbox import seccomp

NOFILE = 4096


def nofile() -> int:
    """The app's file limit: NOFILE, or the host's hard limit when that is lower. runc
    sets rlimits inside the user namespace, where nothing can raise a hard limit: asking
    for more than the caller's (`ulimit -n 1024`) made every start fail with "error
    setting rlimit type 7: operation not permitted"."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


# The app's uid and gid inside its user namespace: not 0, so nothing in the container is
# its own but /tmp; the root filesystem's files belong to an unmapped uid (they show as
# nobody) and are read through their 0644/0755 modes.
APP_UID = APP_GID = 1000
# Host ids the container's 0..65535 map to, unless /etc/subuid and /etc/subgid have a
# `summon:START:COUNT` entry (docs/sandbox.md). No host user owns anything in this range.
DEFAULT_ID_RANGE = (100000, 65536)
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_OWNER = "summon"
# What /proc shows about the host, hidden (an empty file, or an empty read-only folder). The
# runtime, CPython and asyncio read none of these (strace of examples/http: no /proc path at
# all); docs/sandbox.md lists what stays and why.
MASKED_PATHS = (
    # runc's own defaults (`runc spec`)
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
    # the kernel's layout and memory (KASLR, heap shaping): symbols, config, page frames
    "/proc/kallsyms",
    "/proc/config.gz",
    "/proc/kpageflags",
    "/proc/kpagecount",
    "/proc/kpagecgroup",
    "/proc/iomem",
    "/proc/ioports",
    "/proc/slabinfo",
    "/proc/vmallocinfo",
    "/proc/modules",
    "/proc/buddyinfo",
    "/proc/zoneinfo",
    "/proc/pagetypeinfo",
    "/proc/vmstat",
    "/proc/mtrr",
    "/proc/dma",
    # the host's boot, hardware, disks, keys, IPC and other tenants' activity
    "/proc/cmdline",
    "/proc/bootconfig",
    "/proc/key-users",
    "/proc/sysvipc",
    "/proc/partitions",
    "/proc/diskstats",
    "/proc/swaps",
    "/proc/mdstat",
    "/proc/devices",
    "/proc/misc",
    "/proc/fb",
    "/proc/consoles",
    "/proc/locks",
    "/proc/softirqs",
    "/proc/schedstat",
    "/proc/crypto",
    "/proc/kmsg",
    "/proc/cgroups",
    "/proc/execdomains",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/driver",
    "/proc/tty",
    "/proc/pressure",
)
READONLY_PATHS = ("/proc/sys", "/proc/sysrq-trigger")
_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def id_range(files: tuple[Path, Path] = SUBID_FILES) -> tuple[tuple[int, int], tuple[int, int]]:
    """((uid start, count), (gid start, count)) of the host ids the container maps to."""
    out = []
    for path in files:
        found = DEFAULT_ID_RANGE
        try:
            lines = path.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            owner, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if owner == SUBID_OWNER and start.isdigit() and count.isdigit():
                if int(count) <= APP_UID or int(start) == 0:
                    raise UserError(
                        f"{path}: the {SUBID_OWNER} entry {line.strip()!r} must start above 0 "
                        f"and hold more than {APP_UID} ids"
                    )
                found = (int(start), min(int(count), 65536))
                break
        out.append(found)
    return out[0], out[1]


def container_id(name: str) -> str:
    """runc container id (also the netns name and the container's hostname) for an instance
    name: [A-Za-z0-9_.-], at most 64. A longer one keeps its start and ends in a hash of the
    whole name, so two names alike in their first 64 characters (a gateway's gw-SERVICE-PID-N
    of a long service name) never share a container."""
    cid = "summon-" + _ID_BAD.sub("-", name)
    if len(cid) <= 64:
        return cid
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{cid[: 64 - 13]}-{digest}"


def secret_mounts(spec: RunSpec) -> list[dict[str, Any]]:
    """The run's secrets (a read-only tmpfs in the bundle, secrets.py) at /run/secrets."""
    if not spec.secrets:
        return []
    return [
        {
            "destination": secrets.IMAGE_PATH,
            "type": "bind",
            "source": str(secrets_folder(spec)),
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        }
    ]


def secrets_folder(spec: RunSpec) -> Path:
    return spec.state_dir / "bundle" / "secrets"


def volume_mounts(volumes: Sequence[tuple[str, Path]]) -> list[dict[str, Any]]:
    """Each volume's host folder bound read-write at its image path, where nothing in it can
    be run or opened as a device, and no set-uid bit counts (the mount point is in the image)."""
    return [
        {
            "destination": path,
            "type": "bind",
            "source": str(folder),
            "options": ["bind", "rw", "nosuid", "nodev", "noexec"],
        }
        for path, folder in volumes
    ]


def oci_config(
    spec: RunSpec,
    netns_path: Path,
    listener_path: Path,
    *,
    record: bool = False,
    files: Mapping[str, Path] | None = None,
    volumes: Sequence[tuple[str, Path]] = (),
) -> dict[str, Any]:
    """The OCI runtime config (config.json) that runs spec.argv in the sandbox.

    record: the recording seccomp profile (record.py) instead of the image's own.
    files: image path -> host file bound over it read-only (the instance's /etc files).
    volumes: (image path, host folder) of each volume to bind (summon.targets.volumes).
    """
    env = {"PATH": "/usr/bin:/bin", **spec.env}
    if volumes:
        env[VOLUMES_ENV] = volumes_environment([(path, None) for path, _ in volumes])
    no_caps: dict[str, list[str]] = {
        k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    # tmpfs pages are charged to the cgroup too; the cap only keeps /tmp from eating it all.
    tmp_size = max(spec.memory // 4, 1024 * 1024)
    (uid_start, uid_count), (gid_start, gid_count) = id_range()
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": APP_UID, "gid": APP_GID},
            "args": [*spec.argv, *spec.args],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/",
            "capabilities": no_caps,
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": nofile(), "soft": nofile()},
                # No real-time scheduling, whatever the host's default: sched_setscheduler
                # is allowed for the ordinary policies libraries set on their threads.
                {"type": "RLIMIT_RTPRIO", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
        },
        "root": {"path": str(spec.rootfs), "readonly": True},
        "hostname": container_id(spec.name),
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                # Read-only: no process may open its own /proc/self/mem for writing, which
                # the kernel lets it patch its code pages through (FOLL_FORCE) unless booted
                # with proc_mem.force_override=never (docs/sealing.md).
                "options": ["ro", "nosuid", "noexec", "nodev"],
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
            {
                # POSIX semaphores and shared memory live here (multiprocessing's Lock and
                # Value, which werkzeug's debugger makes; shared_memory): glibc's sem_open
                # and CPython assume it, as every Linux has it. Within the memory limit.
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "mode=1777", f"size={tmp_size}"],
            },
            # No /sys: nothing an app needs is there, and much about the host is.
            *secret_mounts(spec),
            *(
                {
                    "destination": dest,
                    "type": "bind",
                    "source": str(source),
                    "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
                }
                for dest, source in sorted((files or {}).items())
            ),
            *volume_mounts(volumes),
        ],
        "linux": {
            "namespaces": [
                # runc joins the path namespace (the network one, made by summon as host root)
                # before it unshares the user namespace, which then owns the rest.
                {"type": "user"},
                {"type": "pid"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "cgroup"},
                {"type": "network", "path": str(netns_path)},
            ],
            "uidMappings": [{"containerID": 0, "hostID": uid_start, "size": uid_count}],
            "gidMappings": [{"containerID": 0, "hostID": gid_start, "size": gid_count}],
            "cgroupsPath": "/" + container_id(spec.name),
            "resources": {
                # swap == limit: memory+swap may not exceed memory, i.e. no swap at all.
                "memory": {"limit": spec.memory, "swap": spec.memory},
                "pids": {"limit": spec.pids},
                "devices": [{"allow": False, "access": "rwm"}],
            },
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp.profile(
                spec.network,
                str(listener_path),
                spec.syscalls,
                record=record,
                seal=seccomp.seals(spec.app_config),
                # (an app whose manifest says host_sockets = true may connect() anyway)
                host_listeners=spec.takes_host_sockets
                and spec.app_config.get("host_sockets") is not True,
            ),
        },
    }
