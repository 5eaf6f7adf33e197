"""A KV_RW store under the real sandbox: the image's derived seccomp profile and its seal
allow what the store does long after the recording run ended (a background batch flush,
packing, merges), the volume is bound writable, and the host folder is owned by the app."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from summon_cli import APPS, Summon, needs_sandbox

pytestmark = [pytest.mark.sandbox, needs_sandbox]


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    s = Summon(tmp_path_factory.mktemp("stores"))
    s.ok("build", str(APPS / "kvload"), "-t", "kvload")
    return s


def test_the_recording_run_did_not_see_the_heavy_paths_the_declared_set_allows_them(
    summon: Summon,
) -> None:
    policy = summon.inspect("kvload")["bom"]["sandbox"]
    # The recording run only opened and closed the store: no commit synced, no thread, no gc.
    unseen = {"fdatasync", "clone", "unlink"}
    assert not unseen & set(policy["recorded"])
    assert unseen <= set(policy["declared"]) <= set(policy["syscalls"]) | {"clone", "ioctl"}
    r = summon("run", "kvload", "--target", "sandbox", "-v", "load:/data", "-e", "KV_LOAD=2500")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "done 2502"
    assert "refused" not in r.stderr and "sealed" not in r.stderr, r.stderr
    doc = json.loads(summon.ok("volume", "inspect", "load", "--json"))
    store = Path(doc["path"]) / "store"
    packs = list((store / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 1  # packed by gc, in the sandbox
    fsck = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(store), "fsck", "--strict"],
                          capture_output=True, text=True)  # fmt: skip
    assert fsck.returncode == 0, fsck.stderr
    log = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(store), "log", "-1",
                          "--format=%s"], capture_output=True, text=True, check=True)  # fmt: skip
    assert log.stdout.startswith("revert to ")
    # The folder is the app's host uid's: it wrote everything there.
    owners = {p.stat().st_uid for p in store.rglob("*")}
    assert len(owners) == 1 and owners != {0}


def test_a_host_folder_volume(summon: Summon, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    r = summon("run", "kvload", "--target", "sandbox", "-v", f"{folder}:/data")
    # root's folder: the app (an unprivileged uid) cannot write it, and summon says how.
    assert r.returncode == 2
    assert "cannot write" in r.stderr and "chown -R" in r.stderr
    assert "summon: store 'store' at /data/store: the app may not write its volume" in r.stderr


def test_a_detached_runs_volume_warning_reaches_run_d_and_logs(
    summon: Summon, tmp_path: Path
) -> None:
    # Before: the sandbox's "the app runs as host uid N and cannot write ..." of a run -d
    # reached only `summon logs`: `run -d` printed the ID as if all were well.
    folder = tmp_path / "theirs"
    folder.mkdir()
    r = summon("run", "-d", "--name", "warned", "--target", "sandbox", "-v", f"{folder}:/data",
               "kvload")  # fmt: skip
    try:
        assert r.returncode == 0, r.stderr
        warning = "summon: warning: the app runs as host uid "
        said = [line for line in r.stderr.splitlines() if line.startswith(warning)]
        assert len(said) == 1 and f"cannot write {folder}" in said[0], r.stderr
        assert said[0] in summon.ok("logs", "warned").splitlines()
    finally:
        summon("rm", "-f", "warned")
