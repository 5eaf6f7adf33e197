"""examples/todo end to end, with curl as the client: its tasks and history live on a volume.

Kept across restarts, across an image upgrade (a rebuilt image, a new digest, the same
volume), across a move from the sandbox to a VM and back, and through the gateway's
scale-to-zero; `summon volume export` hands the history to the real git. The VM tests kill
QEMU outright during commits (the guest's page cache dies with it; the disk is opened
without the host's cache) and check that every commit the app acknowledged is there and
`git fsck` is clean. VM tests are few and bounded (each boot takes seconds under TCG).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from summon_cli import EXAMPLES, Summon, free_port, needs_sandbox

pytestmark = [pytest.mark.sandbox, needs_sandbox]
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
)
TODO = EXAMPLES / "todo"


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    from summon import paths

    s = Summon(tmp_path_factory.mktemp("todo"))
    # The machine's kernel cache, not the test home's: a kernel build takes minutes.
    s.env["XDG_CACHE_HOME"] = str(paths.cache_dir().parent)
    s.ok("build", str(TODO), "-t", "todo")
    return s


def curl(*args: str, deadline: float = 30.0) -> str:
    """curl's body (failing on an HTTP error), retried while the app comes up."""
    end = time.monotonic() + deadline
    while True:
        r = subprocess.run(["curl", "-sS", "-f", "-m", "10", *args], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout
        if time.monotonic() > end:
            raise AssertionError(f"curl {' '.join(args)}: {r.stderr}")
        time.sleep(0.2)


class Todo:
    """One running instance of the todo app, reached on a host port."""

    def __init__(self, summon: Summon, volume: str, target: str, image: str = "todo") -> None:
        self.summon, self.port = summon, free_port()
        out = summon.ok("run", "-d", image, "--target", target, "-v", f"{volume}:/data",
                        "-p", f"{self.port}:80")  # fmt: skip
        self.id = out.strip().splitlines()[-1]
        self.url = f"http://127.0.0.1:{self.port}"
        curl(f"{self.url}/tasks", deadline=120)  # up (a VM boots in seconds under TCG)

    def add(self, title: str, as_json: bool = False) -> dict[str, Any]:
        if as_json:
            body = curl("-H", "Content-Type: application/json", "-d",
                        json.dumps({"title": title}), f"{self.url}/tasks")  # fmt: skip
            return dict(json.loads(body))
        curl("-d", f"title={title}", f"{self.url}/tasks")  # answered 303 to /
        return {}

    def titles(self) -> list[str]:
        return [t["title"] for t in json.loads(curl(f"{self.url}/tasks")) if not t["done"]]

    def history(self) -> list[str]:
        return [c["message"] for c in json.loads(curl(f"{self.url}/history?format=json"))]

    def stop(self) -> None:
        self.summon.ok("stop", self.id)
        self.summon.ok("rm", self.id)

    def pid(self) -> int:
        (row,) = [r for r in json.loads(self.summon.ok("ps", "--json")) if r["id"] == self.id]
        return int(row["pid"])


def add_until(url: str, prefix: str, stop: threading.Event, acknowledged: list[str]) -> None:
    """Add tasks one after the other until `stop`; note each the app acknowledged."""
    n = 0
    while not stop.is_set():
        title = f"{prefix} task {n}"
        r = subprocess.run(
            ["curl", "-sf", "-m", "5", "-H", "Content-Type: application/json",
             "-d", json.dumps({"title": title}), f"{url}/tasks"],
            capture_output=True, text=True,
        )  # fmt: skip
        if r.returncode == 0 and json.loads(r.stdout)["title"] == title:
            acknowledged.append(title)  # the app answered: the commit is durable
        n += 1


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(folder), *args],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def volume(summon: Summon, name: str) -> dict[str, Any]:
    return dict(json.loads(summon.ok("volume", "inspect", name, "--json")))


def test_tasks_and_history_survive_a_restart(summon: Summon) -> None:
    app = Todo(summon, "restart", "sandbox")
    app.add("buy milk")
    task = app.add("call Bob", as_json=True)
    assert task["title"] == "call Bob" and len(task["commit"]) == 40
    page = curl(f"{app.url}/")
    assert "buy milk" in page and "call Bob" in page
    curl("-X", "POST", f"{app.url}/tasks/{task['id']}/done")
    app.stop()
    again = Todo(summon, "restart", "sandbox")
    try:
        assert again.titles() == ["buy milk"]
        history = again.history()
        assert history == ["done: call Bob", "add: call Bob", "add: buy milk"]
    finally:
        again.stop()
    # The volume's store is the Git repository the history page showed.
    store = Path(volume(summon, "restart")["path"]) / "todo"
    assert git(store, "log", "--format=%s").splitlines() == history
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(store), "fsck", "--strict"],
                   check=True, capture_output=True)  # fmt: skip


def test_a_second_writer_of_the_store_is_refused_before_it_starts(summon: Summon) -> None:
    # It started, and its app exited 2 at the store's lock a moment later ("Exited (2)" in
    # ps; the reason only in its logs). Now nothing starts, and the line names the holder.
    app = Todo(summon, "shared", "sandbox")
    try:
        app.add("one writer")
        before = sorted(p.name for p in summon.instances.iterdir() if len(p.name) == 64)
        for argv in (("run", "-d", "todo"), ("run", "todo")):
            r = summon(*argv, "-v", "shared:/data")
            assert r.returncode == 2, r.stderr
            assert r.stderr.strip().splitlines()[-1] == (
                f"summon: error: -v shared:/data: the store /data/todo in it is open by instance "
                f"{summon.inspect(app.id)['name']} ({app.id[:12]}); one writer per store: stop "
                "that first, or give this run another volume"
            )
        assert sorted(p.name for p in summon.instances.iterdir() if len(p.name) == 64) == before
        assert app.titles() == ["one writer"]  # the first one serves on, untouched
    finally:
        app.stop()
    again = Todo(summon, "shared", "sandbox")  # once it is gone, the volume is free
    again.stop()


def test_an_image_upgrade_keeps_the_volume(summon: Summon, tmp_path: Path) -> None:
    app = Todo(summon, "upgrade", "sandbox")
    app.add("before the upgrade")
    app.stop()
    newer = tmp_path / "todo"
    shutil.copytree(TODO, newer, ignore=shutil.ignore_patterns("__pycache__"))
    web = newer / "web.py"
    web.write_text(web.read_text().replace("<h1>Tasks (", "<h1>My tasks ("))
    summon.ok("build", str(newer), "-t", "todo:2")
    assert summon.digest("todo:2") != summon.digest("todo:latest")
    upgraded = Todo(summon, "upgrade", "sandbox", image="todo:2")
    try:
        page = curl(f"{upgraded.url}/")
        assert "My tasks (1 open)" in page and "before the upgrade" in page
        assert upgraded.history() == ["add: before the upgrade"]
    finally:
        upgraded.stop()


def test_a_run_without_its_volume_is_one_line(summon: Summon) -> None:
    r = summon("run", "todo", "--target", "sandbox")
    assert r.returncode == 2
    assert (
        "summon: parameter 'todo' of app:main asks for the store 'todo' at /data/todo, but no "
        "volume is mounted at /data; run it with -v NAME:/data" in r.stderr
    )


def test_the_history_leaves_as_a_bundle_git_clones(summon: Summon, tmp_path: Path) -> None:
    app = Todo(summon, "export", "sandbox")
    for title in ("one", "two"):
        app.add(title)
    busy = summon("volume", "rm", "export")
    assert busy.returncode == 2 and "volume export is in use by" in busy.stderr
    app.stop()
    bundle = tmp_path / "todo.bundle"
    summon.ok("volume", "export", "export", "-o", str(bundle))
    subprocess.run(["git", "clone", "-q", str(bundle), str(tmp_path / "clone")], check=True)
    assert git(tmp_path / "clone", "log", "--format=%s").split("\n")[:2] == ["add: two", "add: one"]
    summon.ok("volume", "import", "imported", str(bundle), "--store", "todo")
    copy = Todo(summon, "imported", "sandbox")
    try:
        assert copy.titles() == ["one", "two"]
    finally:
        copy.stop()


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_a_volume_moves_from_the_sandbox_to_a_vm_and_back(summon: Summon) -> None:
    app = Todo(summon, "move", "sandbox")
    app.add("made in the sandbox")
    app.stop()
    assert volume(summon, "move")["kind"] == "folder"
    vm = Todo(summon, "move", "qemu")
    try:
        assert volume(summon, "move")["kind"] == "ext4"
        assert vm.titles() == ["made in the sandbox"]
        vm.add("made in the VM", as_json=True)
    finally:
        vm.stop()
    back = Todo(summon, "move", "sandbox")
    try:
        assert back.titles() == ["made in the sandbox", "made in the VM"]
        assert back.history() == ["add: made in the VM", "add: made in the sandbox"]
    finally:
        back.stop()


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_killing_the_vm_during_commits_loses_nothing_acknowledged(
    summon: Summon, tmp_path: Path
) -> None:
    acknowledged: list[str] = []
    for kill in range(3):
        vm = Todo(summon, "crash", "qemu")
        assert set(acknowledged) <= set(vm.titles()), f"lost after kill {kill}"
        stop = threading.Event()
        thread = threading.Thread(
            target=add_until, args=(vm.url, f"kill {kill}", stop, acknowledged)
        )
        thread.start()
        time.sleep(2.0 + kill)  # a few dozen commits under TCG, then the power goes
        os.kill(vm.pid(), signal.SIGKILL)
        stop.set()
        thread.join(30)
        summon("rm", "-f", vm.id)
    assert len(acknowledged) > 10
    print(f"{len(acknowledged)} commits acknowledged across 3 kills of QEMU")
    # The Git view as the killed VM left it (its ext4 journal replayed, nothing of summon.kv
    # run): whole, though up to one batch behind the journal.
    from summon.targets.volume_disks import dump_disk

    disk = Path(volume(summon, "crash")["path"])
    copy = disk.parent / ".crash-copy"
    copy.mkdir(mode=0o700)
    try:
        dump_disk(disk, copy, None)
        subprocess.run(["git", "-c", "safe.directory=*", "-C", str(copy / "todo"), "fsck",
                        "--strict"], check=True, capture_output=True)  # fmt: skip
    finally:
        shutil.rmtree(copy)
    # And after a restart (the journal replayed into Git's files): every one, in order.
    after = Todo(summon, "crash", "sandbox")
    try:
        titles = after.titles()
        assert set(acknowledged) <= set(titles)
        assert [t for t in titles if t in set(acknowledged)] == acknowledged
    finally:
        after.stop()
    store = Path(volume(summon, "crash")["path"]) / "todo"
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(store), "fsck", "--strict"],
                   check=True, capture_output=True)  # fmt: skip


@pytest.mark.slow
def test_through_the_gateway_the_tasks_outlive_scale_to_zero(summon: Summon) -> None:
    from test_gateway import get_page, run_gateway, wait_for

    services = """
[[service]]
name = "todo"
image = "todo"
idle_timeout = "2s"
volumes = ["gw:/data"]
"""
    with run_gateway(summon, services) as gateway:
        address = gateway.address("todo")
        curl("-d", "title=through the gateway", f"http://{address}/tasks")
        wait_for(lambda: gateway.status()["todo"]["state"] == "down", 10, "todo to go down")
        try:
            page = get_page(address)  # booted again, same volume
        except OSError as e:
            raise AssertionError(f"{e}; the gateway said:\n{gateway.log.read_text()}") from e
        assert b"through the gateway" in page
        assert gateway.status()["todo"]["boots"] == 2
