"""The OCI runtime config (config.json) runc starts a sandboxed instance from.

What holds the app in: its own pid, mount, ipc, uts, cgroup and network namespaces; the image
as a read-only root with a small tmpfs /tmp; no capabilities and no_new_privs; a seccomp
allowlist (seccomp.py); cgroup memory and pids limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from summon.targets.base import RunSpec
from summon.targets.sandbox import seccomp

NOFILE = 4096
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


def oci_config(
    spec: RunSpec, netns_path: Path, listener_path: Path, files: Mapping[str, Path] = {}
) -> dict[str, Any]:
    """The OCI runtime config (config.json) that runs spec.argv in the sandbox.

    files: image path -> host file bound over it read-only (the instance's /etc files).
    """
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
            *(
                {
                    "destination": dest,
                    "type": "bind",
                    "source": str(source),
                    "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
                }
                for dest, source in sorted(files.items())
            ),
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
