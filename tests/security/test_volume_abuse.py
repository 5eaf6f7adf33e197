"""A hostile app against its own volume: what it plants there must not reach the host.

The app (a plain script in the sandbox, as the app's unprivileged uid) writes into its named
volume: a symbolic link to a host file inside its store, a set-uid file, a device node, a
program to run. Then summon's host side handles the volume as root: the next start gives
its files back to the app's uid, and `summon volume export` reads the store. Each check
names the rule that holds; the control shows the same planting works where no rule is.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_checks import parse, run_to_end

from summon import kv
from summon.errors import UserError
from summon.targets import volume_stores, volumes
from summon.targets.base import Volume

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]

PLANT = r"""
import ctypes, json, os, shutil, stat, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)

def report(name, ok, err=0):
    print(json.dumps({"probe": name, "ok": ok, "errno": err}), flush=True)

def attempt(name, func):
    try:
        func()
    except OSError as e:
        report(name, False, e.errno or 0)
    else:
        report(name, True)

target = os.environ["HOST_FILE"]
attempt("symlink", lambda: os.symlink(target, "/data/store/objects/evil"))
def setuid():
    with open("/data/suid", "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod("/data/suid", 0o4755)
attempt("setuid_file", setuid)
def mknod():
    if libc.mknod(b"/data/dev", stat.S_IFCHR | 0o666, os.makedev(1, 3)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
attempt("mknod", mknod)
import mmap
def map_exec(path):
    def run():
        with open(path, "rb") as f:
            mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC).close()
    return run
shutil.copy(sys.executable, "/data/python")
os.chmod("/data/python", 0o755)
attempt("map_exec_from_volume", map_exec("/data/python"))
attempt("map_exec_from_image", map_exec(sys.executable))  # the control: the image's own
attempt("exec_from_volume", lambda: os.execv("/data/python", ["/data/python", "-c", "1"]))
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield tmp_path


def test_what_an_app_plants_in_its_volume_stays_there(
    state: Path, test_rootfs: Path, sandbox_target: object, spec_for: object, app_script: object
) -> None:
    host_file = state / "host-secret"
    host_file.write_text("host secret")
    host_file.chmod(0o600)
    before = host_file.stat()
    folder, held = volumes.attach_folder("abuse")
    held.close()
    with kv.open_folder(str(folder / "store")) as store:
        store.set("k", b"v")
    (test_rootfs / "data").mkdir(exist_ok=True)  # the image's mount point
    argv = app_script(PLANT)  # type: ignore[operator]
    out = state / "out"
    with out.open("wb") as f:
        spec = spec_for(  # type: ignore[operator]
            argv, volumes=(Volume("abuse", "/data"),), env={"HOST_FILE": str(host_file)},
            stdout=f.fileno(),
        )  # fmt: skip
        spec.app_config = {"volumes": ["/data"]}  # the image declares its mount point
        run_to_end(sandbox_target, spec)  # type: ignore[arg-type]
    results = parse(out.read_text())
    # Planted (the volume is the app's to write)...
    assert results["symlink"]["ok"] and results["setuid_file"]["ok"]
    # ...but no device node (seccomp: mknod is not on the allowlist), no code mapped from
    # the volume (the bind is noexec), while the image's own maps (the control); and no
    # program run from it (the exec gate: one exec, runc's own).
    assert results["mknod"] == {"probe": "mknod", "ok": False, "errno": errno.EPERM}
    assert results["map_exec_from_volume"]["errno"] == errno.EPERM
    assert results["map_exec_from_image"]["ok"]
    assert results["exec_from_volume"] == {
        "probe": "exec_from_volume",
        "ok": False,
        "errno": errno.EPERM,
    }
    # The next start gives the volume's files to the app's uid, and not through the link
    # (rule: volumes.give_to never follows a symbolic link).
    folder, held = volumes.attach_folder("abuse")
    held.close()
    after = host_file.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    assert (folder / "store/objects/evil").lstat().st_uid == volumes.app_owner()[0]  # type: ignore[index]
    # The set-uid bit stays a bit in a file the app owns; the mount is nosuid besides.
    assert (folder / "suid").stat().st_mode & stat.S_ISUID
    # An export refuses the store rather than read through the link
    # (rule: a store holds only folders and regular files).
    with pytest.raises(UserError, match="evil is not a folder or a regular file"):
        volume_stores.export("abuse", state / "out.bundle")
    assert not (state / "out.bundle").exists()
    # Control: without the planted link the same export works.
    (folder / "store/objects/evil").unlink()
    assert volume_stores.export("abuse", state / "out.bundle") == "store"
