"""Abuse of the limits and bad input: one line each, the rule named, nothing half-written.

The OOM killer's verdict is reported as the reason an instance ended; a full disk neither
leaves temporaries in the store nor stops `summon rmi` from making room; flags naming a port
that is taken or an address that is not local, or a memory size no machine can honour, are
one line and exit status 2 before anything starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_apps import APPS, needs_sandbox
from summon_cli import Summon

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(lines) == 1, r.stderr
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr
    return lines[0]


# --- the OOM killer --------------------------------------------------------------------------


@pytest.mark.parametrize("target", [pytest.param("sandbox", marks=needs_sandbox)])
def test_an_oom_kill_is_reported_as_the_reason(summon: Summon, target: str) -> None:
    """Rule: the cgroup's memory limit (the manifest's 32M); the kernel's OOM killer ends
    the app, and summon reads the cgroup's oom_kill count before runc deletes it."""
    summon.ok("build", str(APPS / "hog"), "-t", "hog:test")
    r = summon("run", "hog:test", "--target", target, "--name", "hog-oom")
    assert r.returncode == 128 + 9, r.stderr
    assert "hog-oom" in r.stderr and "killed: out of memory (limit 32M)" in r.stderr
    row = summon.ps()["hog-oom"]
    assert row["reason"] == "killed: out of memory (limit 32M)"
    assert row["status_text"].startswith("Exited (137: out of memory)")
    table = summon.ok("ps", "-a")
    assert "Exited (137: out of memory)" in table
    # With --rm the instance's record goes with it: the line must come all the same.
    r = summon("run", "hog:test", "--target", target, "--name", "hog-rm", "--rm")
    assert r.returncode == 128 + 9, r.stderr
    assert r.stderr.count("hog-rm") == 1 and "killed: out of memory (limit 32M)" in r.stderr
    assert "hog-rm" not in summon.ps()


# --- a full disk -----------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(os.fsencode(where), 2)  # MNT_DETACH


def fill(disk: Path) -> None:
    """Write a file until the disk has no room left, in big steps, then in pages."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for step in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * step)
    finally:
        os.close(fd)


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def store_leftovers(store: Path) -> list[str]:
    """Temporaries a write left in the store (none, when all is well)."""
    tmp = [p.name for p in (store / ".tmp").iterdir()] if (store / ".tmp").is_dir() else []
    return tmp + [p.name for p in store.glob(".index.json-*")]


@needs_root
@pytest.mark.parametrize("size", ["3M", "9M", "17M"])
def test_enospc_while_building_leaves_nothing_half_written(
    summon: Summon, tmp_path: Path, size: str
) -> None:
    """Rule: writes go to a temporary name first and are removed when they fail; the error
    is the disk's, one line (the sizes stop the build at the layer, the erofs image, ...)."""
    with small_tmpfs(tmp_path / "disk", size) as disk:
        env = {"SUMMON_STORE": str(disk / "store")}
        r = summon("build", str(APPS / "probe"), "-t", "probe:full", env=env)
        line = one_error_line(r)
        assert "No space left on device" in line
        assert store_leftovers(disk / "store") == []
        index = json.loads((disk / "store" / "index.json").read_text())
        assert index["manifests"] == []


@needs_root
def test_rmi_makes_room_on_a_full_disk(summon: Summon, tmp_path: Path) -> None:
    """Rule: rmi clears temporaries, then removes the blobs only the removed tags reach,
    and only then rewrites index.json, in the room they left."""
    with small_tmpfs(tmp_path / "disk", "48M") as disk:
        env = {"SUMMON_STORE": str(disk / "store")}
        summon.ok("build", str(APPS / "probe"), "-t", "probe:full", env=env)
        (disk / "store" / ".tmp" / "blob-stale").write_bytes(b"x" * 4096)  # an old temporary
        fill(disk)
        assert free_bytes(disk) < 4096
        r = summon("rmi", "probe:full", env=env)
        assert r.returncode == 0, r.stderr
        assert "untagged probe:full" in r.stdout and "removed" in r.stdout
        assert free_bytes(disk) > 10_000_000
        assert json.loads((disk / "store" / "index.json").read_text())["manifests"] == []
        assert store_leftovers(disk / "store") == []
        assert list((disk / "store" / "blobs" / "sha256").iterdir()) == []


@needs_root
def test_rmi_says_in_one_line_when_it_truly_cannot(summon: Summon, tmp_path: Path) -> None:
    """Rule: when the removed tag's blobs are all shared (another tag names the image), there
    is no room to make and index.json cannot be rewritten: one line says so, nothing breaks."""
    with small_tmpfs(tmp_path / "disk", "40M") as disk:
        env = {"SUMMON_STORE": str(disk / "store")}
        summon.ok("build", str(APPS / "probe"), "-t", "probe:one", env=env)
        summon.ok("tag", "probe:one", "probe:two", env=env)
        fill(disk)
        line = one_error_line(summon("rmi", "probe:two", env=env))
        assert "no space left on the store's disk even after removing 0 unshared blobs" in line
        (disk / "filler").unlink()
        names = summon.ok("images", env=env)
        assert "probe:one" in names and "probe:two" in names
        summon.ok("rmi", "probe:two", env=env)


# --- flags ------------------------------------------------------------------------------------


def test_a_foreground_port_already_taken(summon: Summon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(summon("run", "nothing", "--target", "unix", "-p", f"{port}:80"))
    assert f"-p 127.0.0.1:{port}: cannot listen there (Address already in use)" in line


def test_a_port_on_an_address_not_of_this_host(summon: Summon) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): no host has it; nothing is ever sent to it.
    line = one_error_line(summon("run", "nothing", "--target", "unix", "-p", "192.0.2.1:8080:80"))
    assert "-p 192.0.2.1:8080: cannot listen there (Cannot assign requested address)" in line


@pytest.mark.parametrize(
    ("size", "needle"),
    [
        ("1k", "--memory 1k: at least 8M is needed"),
        ("4096G", "--memory 4096G: more than this host has"),
        ("1T", "--memory: '1T' is not a size such as \"64M\""),  # sizes stop at G
    ],
)
def test_memory_out_of_bounds(summon: Summon, size: str, needle: str) -> None:
    """Rule: -m is checked before anything starts (cli/run.py parse_memory)."""
    line = one_error_line(summon("run", "nothing", "--target", "unix", "-m", size))
    assert needle in line


@needs_root
def test_a_full_disk_under_the_volumes_is_one_line_and_leaves_no_half_volume(
    summon: Summon, tmp_path: Path
) -> None:
    """Rule: a volume appears whole (made under a temporary name, renamed into place); the
    disk's error is the user's, one line."""
    from summon import kv

    with kv.open_folder(str(tmp_path / "big")) as store:
        for i in range(40):
            store.set(f"blob/{i}", os.urandom(100_000), message=f"blob {i}")
    bundle = tmp_path / "big.bundle"
    kv.export_bundle(str(tmp_path / "big"), str(bundle))
    assert bundle.stat().st_size > 3 << 20
    with small_tmpfs(tmp_path / "disk", "2M") as disk:
        env = {"XDG_STATE_HOME": str(disk / "state")}
        line = one_error_line(summon("volume", "import", "big", str(bundle), env=env))
        assert "No space left on device" in line or "full" in line
        volumes = disk / "state" / "summon" / "volumes"
        assert [p.name for p in volumes.iterdir() if not p.name.endswith(".lock")] == []
        assert json.loads(summon.ok("volume", "ls", "--json", env=env)) == []
