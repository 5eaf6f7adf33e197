"""Inside the sandbox, from a summon-built image: who the app is, and what the host shows it.

The probe app (apps/probe) reports its ids, its user namespace's map, its capabilities, what
writing outside /tmp gives, what each masked /proc path reads as, and its mountinfo. The same
probe on the host (the unix target: a plain process, run by root here) is the control.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hostile_apps import needs_sandbox, probe_report
from summon_cli import Summon

from summon.targets.sandbox.config import APP_UID, MASKED_PATHS, id_range

pytestmark = needs_sandbox

PROC_MASKED = [p for p in MASKED_PATHS if p.startswith("/proc/")]


def probe(summon: Summon, image: str, target: str, *env: str) -> dict[str, Any]:
    masked = "PROBE_MASKED=" + ":".join(PROC_MASKED)
    r = summon("run", image, "--target", target, "-e", masked, *env)
    assert r.returncode == 0, r.stderr
    return probe_report(r.stdout)


@pytest.fixture(scope="module")
def inside(summon: Summon, probe_image: str) -> dict[str, Any]:
    return probe(summon, probe_image, "sandbox", "-e", "PROBE_WRITE=1")


@pytest.fixture(scope="module")
def host(summon: Summon, probe_image: str) -> dict[str, Any]:
    return probe(summon, probe_image, "unix")


def test_the_app_is_not_root(inside: dict[str, Any], host: dict[str, Any]) -> None:
    """Rule: process.user is APP_UID in a user namespace (config.py)."""
    assert inside["uid"] == inside["euid"] == inside["gid"] == APP_UID != 0
    assert host["uid"] == 0  # the control: the same code on the host, run by root


def test_its_ids_map_to_an_unprivileged_host_range(inside: dict[str, Any]) -> None:
    """Rule: linux.uidMappings/gidMappings: the container's 0..N-1 are host START.. (not 0)."""
    (uid_start, uid_count), (gid_start, gid_count) = id_range()
    assert inside["uid_map"] == ["0", str(uid_start), str(uid_count)]
    assert inside["gid_map"] == ["0", str(gid_start), str(gid_count)]
    assert uid_start > 0 and gid_start > 0


def test_it_has_no_capabilities(inside: dict[str, Any], host: dict[str, Any]) -> None:
    """Rule: every capability set empty (process.capabilities), with no_new_privs."""
    assert set(inside["caps"].values()) == {"0000000000000000"}
    assert int(host["caps"]["CapEff"], 16) != 0  # the control: root on the host has them


def test_it_writes_only_tmp(inside: dict[str, Any]) -> None:
    """Rule: the root is the read-only erofs mount (EROFS) of files owned by an unmapped
    uid; /tmp is the app's own tmpfs. (No control: on the host these are the host's paths.)"""
    assert inside["write_tmp"] == "ok"
    assert inside["write_root_owned"] in ("EROFS", "EACCES")
    assert inside["create_in_root"] in ("EROFS", "EACCES")


@pytest.mark.parametrize("path", PROC_MASKED)
def test_a_masked_proc_path_tells_nothing(
    path: str, inside: dict[str, Any], host: dict[str, Any]
) -> None:
    """Rule: linux.maskedPaths: /dev/null over a file, an empty read-only tmpfs over a folder
    (or the path does not exist on this kernel at all)."""
    content, error = inside["masked"][path]
    assert content == "" and error in ("", "EACCES", "ENOENT"), (path, content, error)
    if os.path.exists(path) and path not in ("/proc/kmsg", "/proc/config.gz"):
        # The control: where the host has it, the same probe outside reads it (some files
        # are empty on an idle host, such as /proc/mdstat's missing arrays: skip those).
        host_content, host_error = host["masked"][path]
        assert (host_error == "" and host_content) or path in _EMPTY_ON_SOME_HOSTS, path


# What may read as empty even on the host (nothing of that kind configured here).
_EMPTY_ON_SOME_HOSTS = {
    "/proc/acpi", "/proc/asound", "/proc/scsi", "/proc/sysvipc", "/proc/driver", "/proc/fb",
    "/proc/mdstat", "/proc/key-users", "/proc/keys", "/proc/latency_stats", "/proc/mtrr",
    "/proc/kpagecgroup", "/proc/locks", "/proc/swaps", "/proc/timer_stats", "/proc/bootconfig",
    "/proc/dma", "/proc/pressure", "/proc/bus",
}  # fmt: skip


def test_mountinfo_shows_no_host_path(summon: Summon, inside: dict[str, Any]) -> None:
    """Rule: the root is /dev/loopN (the verified erofs image), not a folder of the host;
    the other mounts are the runtime's own (proc, tmpfs, devices from devtmpfs)."""
    mountinfo = inside["mountinfo"]
    root_line = next(line for line in mountinfo.splitlines() if line.split()[4] == "/")
    assert " - erofs /dev/loop" in root_line, root_line
    forbidden = ["/root/", "/home/", "/work/", "/tmp/", "/var/", "/run/", str(summon.home)]
    for line in mountinfo.splitlines():
        fields = line.split()
        shown = [fields[3], fields[4], *fields[fields.index("-") + 2 :]]  # root, where, source
        for needle in forbidden:
            assert not any(needle in f for f in shown), f"{needle} in {line}"
