"""KV_RW stores as the runtime injects them: by parameter name, on the volume the target
mounted (SUMMON_VOLUMES), closed on every way out; the real git reads what the app wrote."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from textwrap import dedent

import pytest
from fake_image import ImageRoot, read_line, stop

from summon import kv

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="apt-get install git")

COUNTER = dedent("""
    from summon.devices import KV_RW
    def main(todo: KV_RW) -> int:
        n = int(todo.get("n")) + 1 if todo.exists("n") else 1
        print(todo.set("n", str(n).encode(), message=f"count {n}"))
        return 0
""")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(folder), *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_a_store_on_a_host_folder_is_the_git_repository_git_reads(
    image: ImageRoot, tmp_path: Path
) -> None:
    image.app({"app.py": COUNTER})
    image.config("app:main", volumes=["/data"], stores={"todo": "/data/todo"})
    volume = tmp_path / "volume"
    volume.mkdir()
    env = {"SUMMON_VOLUMES": f"/data={volume}"}  # as the unix target gives it
    ids = []
    for _ in range(3):
        result = image.run(env=env)
        assert (result.returncode, result.stderr) == (0, "")
        ids.append(result.stdout.strip())
    store = volume / "todo"
    # Closed at exit: the Git view is complete without waiting for a batch.
    assert git(store, "log", "--format=%H %s").splitlines() == [
        f"{ids[2]} count 3", f"{ids[1]} count 2", f"{ids[0]} count 1",
    ]  # fmt: skip
    assert git(store, "show", "main:n") == "3"
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(store), "fsck", "--strict"],
                   check=True, capture_output=True)  # fmt: skip
    assert not (image.root / "data").exists() or not any((image.root / "data").iterdir())


def test_a_store_on_a_mounted_volume_is_at_its_image_path(image: ImageRoot) -> None:
    image.app({"app.py": COUNTER})
    image.config("app:main", volumes=["/srv"], stores={"todo": "/srv/app/todo"})
    (image.root / "srv").mkdir()
    result = image.run(env={"SUMMON_VOLUMES": "/srv"})  # as the sandbox and qemu give it
    assert result.returncode == 0, result.stderr
    assert git(image.root / "srv/app/todo", "log", "--format=%s") == "count 1\n"


def test_a_clean_stop_flushes_the_store(image: ImageRoot, tmp_path: Path) -> None:
    image.app(
        {
            "app.py": dedent("""
                import asyncio
                from summon.devices import KV_RW
                async def main(notes: KV_RW) -> None:
                    print(notes.set("a", b"1", message="first"))
                    await asyncio.Event().wait()
            """)
        }
    )
    image.config("app:main", volumes=["/data"], stores={"notes": "/data/notes"})
    process = image.start(env={"SUMMON_VOLUMES": f"/data={tmp_path}"})
    commit = read_line(process)
    # Before the stop: acknowledged (in the journal), not yet in Git's files (one batch: 5 s).
    assert not (tmp_path / "notes/refs/heads/main").exists()
    assert stop(process, signal.SIGTERM) == (0, "", "")
    assert git(tmp_path / "notes", "rev-parse", "main").strip() == commit


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        (
            {"volumes": ["/data"], "stores": {"todo": "/data/todo"}},
            {},
            "summon: parameter 'todo' of app:main asks for the store 'todo' at /data/todo, but "
            "no volume is mounted at /data; run it with -v NAME:/data (a named volume, made on "
            "first use) or -v /host/folder:/data\n",
        ),
        (
            {},
            {},
            "summon: parameter 'todo' of app:main asks for a KV_RW, but the image has no store; "
            'add stores = { todo = "/data/todo" } and volumes = ["/data"] to [tool.summon] and '
            "rebuild\n",
        ),
        (
            {"volumes": ["/data"], "stores": {"a": "/data/a", "b": "/data/b"}},
            {"SUMMON_VOLUMES": "/data"},
            "summon: parameter 'todo' of app:main asks for a KV_RW, but no store has that "
            "name; name the parameter after one of: a, b\n",
        ),
    ],
)
def test_how_an_app_asks_for_a_store_wrongly_is_one_line(
    image: ImageRoot, config: dict[str, object], env: dict[str, str], message: str
) -> None:
    image.app({"app.py": COUNTER})
    image.config("app:main", **config)
    result = image.run(env=env)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_a_store_another_writer_holds_is_refused(image: ImageRoot, tmp_path: Path) -> None:
    image.app({"app.py": COUNTER})
    image.config("app:main", volumes=["/data"], stores={"todo": "/data/todo"})
    with kv.open_folder(str(tmp_path / "todo")):
        result = image.run(env={"SUMMON_VOLUMES": f"/data={tmp_path}"})
    assert result.returncode == 2
    assert result.stderr.startswith("summon: store 'todo' at /data/todo: the store ")
    assert "is open by process" in result.stderr and result.stderr.count("\n") == 1


def test_a_folder_that_is_no_store_is_refused(image: ImageRoot, tmp_path: Path) -> None:
    image.app({"app.py": COUNTER})
    image.config("app:main", volumes=["/data"], stores={"todo": "/data/todo"})
    (tmp_path / "todo").mkdir()
    (tmp_path / "todo/notes.txt").write_text("mine")
    result = image.run(env={"SUMMON_VOLUMES": f"/data={tmp_path}"})
    assert result.returncode == 1
    assert result.stderr.startswith("summon: store 'todo' at /data/todo: ")
    assert result.stderr.count("\n") == 1
    assert (tmp_path / "todo/notes.txt").read_text() == "mine"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="mounts a tmpfs: root, unshare"
)
def test_a_volume_an_engine_mounted_is_used_without_summon_volumes(image: ImageRoot) -> None:
    """podman run -v NAME:/data, or a Kubernetes claim from `summon kube`, mounts the volume
    but sets no SUMMON_VOLUMES: the app refused to start ('no volume is mounted at /data')
    with its volume right there. A mount point at the volume's path counts as mounted."""
    image.app({"app.py": COUNTER})
    image.config("app:main", volumes=["/data"], stores={"todo": "/data/todo"})
    data = image.root / "data"
    data.mkdir(exist_ok=True)  # (the image makes its volumes' mount points)
    script = 'mount -t tmpfs none "$0" && "$@" && test -d "$0/todo/objects"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(data),
         *image.argv()],
        env=image.environ({}), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 40  # the commit id of the store's first change
    # Without the mount, the same run is refused as before.
    unmounted = image.run()
    assert unmounted.returncode != 0 and "no volume is mounted at /data" in unmounted.stderr
