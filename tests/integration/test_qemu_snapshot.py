"""qemu snapshots end to end: real microVMs saved at their snapshot point and restored (TCG here).

A handful of VM starts, each bounded: a boot takes a few seconds under TCG, a restore a
fraction of one. Images, instances and snapshots go to temporary folders; kernels come from
the user's cache (built once per fragment set, minutes). Every test checks that no QEMU
outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_qemu import (
    Output,
    bootable,
    free_port,
    instance_folder,
    qemu_processes,
    write_app,
)

from summon.build import kernel
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec, Volume
from summon.targets.qemu import QemuTarget
from summon.targets.qemu.instance import QemuInstance
from summon.targets.snapshots import CHUNK, Snapshot, SnapshotCache, key_of

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
    ),
    pytest.mark.skipif(
        not kernel.SOURCE_TARBALL.exists(), reason="apt-get install linux-source-6.1"
    ),
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

# Answers each request with three values drawn from the three sources a snapshot would share
# between siblings: the kernel's pool, Python's `random` (seeded at import, before the
# snapshot), and uuid4 (os.urandom underneath).
RANDOM_APP = {
    "pyproject.toml": """
        [project]
        name = "dice"
        version = "0.1.0"

        [tool.summon]
        entry = "dice:main"
        network = "socket"
        ports = [80]
        memory = "48M"
        @VOLUMES@
    """,
    "dice.py": """
        import json
        import os
        import random
        import uuid

        from summon.devices import Stack


        async def main(stack: Stack) -> None:
            async def answer(reader, writer):
                await reader.read(1024)
                body = json.dumps({
                    "urandom": os.urandom(16).hex(),
                    "random": random.random(),
                    "uuid4": str(uuid.uuid4()),
                }).encode()
                head = b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
                writer.write(head + body)
                await writer.drain()
                writer.close()

            server = await stack.start_server(answer, 80)
            await server.serve_forever()
    """,
}

# Says the runtime's snapshot point and resume lines, forged, before it listens (a log line
# at import), and prints each request it gets (attacker-controlled text) to its console.
FORGER_APP = {
    "pyproject.toml": RANDOM_APP["pyproject.toml"].replace("dice", "forger"),
    "forger.py": """
        import os

        from summon.devices import Stack

        print("\\x1esummon-vm: app-up 9/tcp\\n\\x1esummon-vm: resumed", flush=True)


        async def main(stack: Stack) -> None:
            os.write(1, b"\\x1esummon-vm: app-up 9/tcp\\n\\x1esummon-vm: resumed\\n")

            async def answer(reader, writer):
                print((await reader.read(1024)).decode(errors="replace"), flush=True)
                writer.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
                await writer.drain()
                writer.close()

            server = await stack.start_server(answer, 80)
            await server.serve_forever()
    """,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary store, state folder and snapshot cache (the kernel cache is the user's)."""
    base = tmp_path_factory.mktemp("snap")
    names = (
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "XDG_CONFIG_HOME",
        "SUMMON_STORE",
        "SUMMON_SNAPSHOTS",
    )
    saved = {k: os.environ.get(k) for k in names}
    os.environ["XDG_CONFIG_HOME"] = str(base / "config")  # the bound is the default's
    os.environ["XDG_DATA_HOME"] = str(base / "data")
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    os.environ["SUMMON_SNAPSHOTS"] = str(base / "snapshots")
    os.environ.pop("SUMMON_STORE", None)
    yield base
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def store(env: Path) -> Store:
    return Store(env / "data" / "summon" / "store")


@pytest.fixture(scope="module")
def dice(store: Store, env: Path) -> Image:
    files = {**RANDOM_APP}
    files["pyproject.toml"] = files["pyproject.toml"].replace("@VOLUMES@", "")
    return bootable(store, write_app(env / "apps" / "dice", files), "dice:test")


@pytest.fixture
def cache(env: Path) -> SnapshotCache:
    return SnapshotCache(env / "snapshots")


class Notices:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.console = Output()

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def spec_for(image: Image, state: Path, port: int, **kw: object) -> RunSpec:
    spec = RunSpec.for_image(
        image, name=f"dice-{time.monotonic_ns()}", state_dir=state, ports=(PortForward(port, 80),)
    )
    for key, value in kw.items():
        setattr(spec, key, value)
    return spec


def start(image: Image, state: Path, **kw: object) -> tuple[QemuInstance, int, Notices]:
    """A started instance, its host port, and what the target said (notices and console)."""
    port = free_port()
    notices = Notices()
    output = Output()
    notices.console = output
    target = QemuTarget(output=output, notice=notices)
    return target.start(spec_for(image, state, port, **kw)), port, notices


def key_for(spec: RunSpec) -> str:
    """The snapshot key a start of spec uses (what the target computes before it restores)."""
    guest = QemuTarget(output=Output())._guest(spec, snapshotting=True)
    return key_of(guest.material(spec))


def saved(image: Image, cache: SnapshotCache, state: Path) -> Snapshot:
    """The snapshot of a plain start of image, booting once to save it if there is none."""
    key = key_for(spec_for(image, state, free_port()))
    found = cache.find(key)
    if found is None:
        instance, _, _ = start(image, state)
        instance.stop(grace=30)
        found = cache.find(key)
    assert found is not None
    return found


def draw(port: int) -> dict[str, object]:
    """One request with curl, the first the instance gets: its three values."""
    curl = subprocess.run(
        ["curl", "-sf", "-m", "20", f"http://127.0.0.1:{port}/"], capture_output=True, check=False
    )
    assert curl.returncode == 0, curl.stderr
    values: dict[str, object] = json.loads(curl.stdout)
    return values


def test_restored_siblings_answer_with_their_own_randomness(
    dice: Image, cache: SnapshotCache, tmp_path: Path
) -> None:
    """A first start boots and saves; the next two restore, and no two share a random value."""
    first, port, said = start(dice, tmp_path / "a")
    try:
        assert not first.restored
        assert "saved" in said.text(), said.text()
        key = first.snapshot()
        assert [k for k, _ in cache.entries()] == [key]
        booted = draw(port)
        b, b_port, b_said = start(dice, tmp_path / "b")
        try:
            c, c_port, _ = start(dice, tmp_path / "c")
            try:
                assert b.restored and c.restored
                assert f"restored from snapshot {key[:12]}" in b_said.text()
                assert b.snapshot() == c.snapshot() == key
                # The guest said where it listens before its snapshot: no probe needed.
                assert b.listening == c.listening == first.listening == {80}
                # Both siblings run at once; each one's very first request.
                siblings = [draw(b_port), draw(c_port)]
                # The runtime says a line if the kernel refused a step of the reseeding.
                assert "summon:" not in b_said.console.text(), b_said.console.text()
            finally:
                assert c.stop(grace=30) == 0
        finally:
            assert b.stop(grace=30) == 0
    finally:
        first.stop(grace=30)
    answers = [booted, *siblings]
    for name in ("urandom", "random", "uuid4"):
        drawn = [a[name] for a in answers]
        assert len(set(drawn)) == 3, (name, drawn)
    assert not qemu_processes(tmp_path)


def test_the_apps_output_cannot_move_the_snapshot_point_or_its_exit_status(
    store: Store, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app that printed "\\x1esummon-vm: app-up 9/tcp" before it listened was saved there,
    running, its forged "resumed" taken for the guest's reseed; a request body printed as
    "\\x1esummon-exit-status: 7" became the instance's status. Rule: the runtime's lines come
    on the control port (ttyS1), which the app's output never reaches."""
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(tmp_path / "snapshots"))  # not the dice's
    files = {**FORGER_APP}
    files["pyproject.toml"] = files["pyproject.toml"].replace("@VOLUMES@", "")
    image = bootable(store, write_app(env / "apps" / "forger", files), "forger:test")
    instance, port, said = start(image, tmp_path)
    try:
        assert "saved" in said.text(), said.text()
        assert instance.console.app_up == "80/tcp" and instance.listening == {80}
        assert instance.console.resumed == 1
        body = "\x1esummon-exit-status: 7\n"
        curl = subprocess.run(
            ["curl", "-sf", "-m", "20", "--data-binary", body, f"http://127.0.0.1:{port}/"],
            capture_output=True, check=False,
        )  # fmt: skip
        assert curl.stdout == b"ok", curl.stderr
        status = instance.stop(grace=30)
    finally:
        instance.stop(grace=0)
    assert status == 0, said.console.text()
    assert "\x1esummon-exit-status: 7" in said.console.text()
    assert said.console.text().count("\x1esummon-vm: app-up 9/tcp") == 2
    assert not qemu_processes(tmp_path)


def test_a_changed_input_makes_a_new_snapshot(
    dice: Image, cache: SnapshotCache, tmp_path: Path
) -> None:
    """Another environment boots and saves its own snapshot; another memory has another key."""
    before = {k for k, _ in cache.entries()}
    instance, port, said = start(dice, tmp_path / "env", env={"DICE_MOOD": "other"})
    try:
        assert not instance.restored, said.text()
        assert instance.snapshot() not in before
        assert draw(port)["uuid4"]
    finally:
        instance.stop(grace=30)
    assert len(cache.entries()) == len(before) + 1
    plain = key_for(spec_for(dice, tmp_path / "m", free_port()))
    more = key_for(spec_for(dice, tmp_path / "m", free_port(), memory=96 * 2**20))
    assert plain != more
    assert not qemu_processes(tmp_path)


def test_a_corrupted_snapshot_is_refused_and_the_run_boots(
    dice: Image, cache: SnapshotCache, tmp_path: Path
) -> None:
    """One flipped byte in the state: refused before QEMU reads it, named, removed; a boot."""
    snap = saved(dice, cache, tmp_path / "save")
    key = snap.key
    with snap.state.open("r+b") as f:
        f.seek(CHUNK + 12345)
        byte = f.read(1)
        f.seek(CHUNK + 12345)
        f.write(bytes([byte[0] ^ 0x01]))
    instance, port, said = start(dice, tmp_path / "corrupt")
    try:
        assert not instance.restored
        assert f"snapshot {key[:12]}: chunk 1 of its state does not match" in said.text()
        assert "refused and removed; booting instead" in said.text()
        assert draw(port)["random"]
        # The boot saved a good snapshot again under the same key.
        assert instance.snapshot() == key
        fresh = cache.find(key)
        assert fresh is not None and fresh.created > snap.created
    finally:
        instance.stop(grace=30)
    assert not qemu_processes(tmp_path)


def test_cli_no_snapshot_boots_and_snapshot_ls_rm(
    dice: Image, cache: SnapshotCache, tmp_path: Path
) -> None:
    """`summon run --no-snapshot` boots though a snapshot exists; ls shows it, rm removes it."""
    saved(dice, cache, tmp_path / "save")
    summon = [sys.executable, "-m", "summon.cli.main"]
    listed = subprocess.run(
        [*summon, "snapshot", "ls", "--json"], capture_output=True, text=True, check=True
    )
    snapshots = json.loads(listed.stdout)["snapshots"]
    assert snapshots and all(s["size"] > 1_000_000 for s in snapshots)
    assert all(s["target"] == "qemu" and s["image"] == dice.ref for s in snapshots)
    port = free_port()
    name = f"nosnap-{os.getpid()}"
    proc = subprocess.Popen(
        [*summon, "run", dice.ref, "--target", "qemu", "--no-snapshot", "-p", f"{port}:80",
         "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        served = None
        while time.monotonic() < deadline and proc.poll() is None and served is None:
            try:
                served = draw(port)
            except AssertionError:
                time.sleep(0.3)
        assert served is not None
        state = instance_folder(name)
        argv = b" ".join(
            Path(f"/proc/{qemu_processes(state)[0]}/cmdline").read_bytes().split(b"\0")
        )
        assert b"-incoming" not in argv and b"-kernel" in argv  # booted
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert b"restored from snapshot" not in stderr and b"saved" not in stderr
    first = snapshots[0]["key"]
    removed = subprocess.run(
        [*summon, "snapshot", "rm", first[:10]], capture_output=True, text=True, check=False
    )
    assert removed.returncode == 0 and removed.stdout.strip() == first
    again = subprocess.run(
        [*summon, "snapshot", "rm", first[:10]], capture_output=True, text=True, check=False
    )
    assert again.returncode == 2 and "no snapshot" in again.stderr
    assert not qemu_processes(state)


def test_an_instance_with_a_volume_is_not_snapshotted(
    store: Store, env: Path, cache: SnapshotCache, tmp_path: Path
) -> None:
    """Volumes: said once, booted, served, nothing saved (the kernel has disks and a network)."""
    files = {**RANDOM_APP}
    files["pyproject.toml"] = files["pyproject.toml"].replace("@VOLUMES@", 'volumes = ["/data"]')
    image = bootable(store, write_app(env / "apps" / "dice-vol", files), "dice-vol:test")
    before = [k for k, _ in cache.entries()]
    port = free_port()
    notices = Notices()
    target = QemuTarget(output=Output(), notice=notices)
    spec = spec_for(image, tmp_path / "v", port, volumes=(Volume(f"dice-{os.getpid()}", "/data"),))
    instance = target.start(spec)
    try:
        assert not instance.restored
        instance.wait_ready((80,), 60)  # a boot without a snapshot point returns when it is up
        assert draw(port)["uuid4"]
        assert "-incoming" not in instance.argv
    finally:
        instance.stop(grace=30)
    assert [k for k, _ in cache.entries()] == before
    assert notices.text().count("not snapshotted: it has volumes") == 1
    from summon.targets.base import NotSupported

    with pytest.raises(NotSupported):
        instance.snapshot()
    assert not qemu_processes(tmp_path)


SUMMON = [sys.executable, "-m", "summon.cli.main"]


def test_run_d_prints_a_refused_snapshot_and_logs_keep_it(
    dice: Image, cache: SnapshotCache, tmp_path: Path
) -> None:
    """Before: `summon run -d` of a guest whose snapshot was refused printed only the instance
    id; the warning went to monitor.log alone, and `summon logs` did not have it either."""
    snap = saved(dice, cache, tmp_path / "save")
    with snap.state.open("r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0x80]))
    port, name = free_port(), f"snapd-{os.getpid()}"
    started = subprocess.run(
        [*SUMMON, "run", "-d", dice.ref, "--target", "qemu", "-p", f"{port}:80", "--name", name],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        refused = f"warning: snapshot {snap.key[:12]}: chunk 0 of its state does not match"
        assert f"summon: {refused}" in started.stderr
        assert "refused and removed; booting instead" in started.stderr
        assert f"summon: snapshot {snap.key[:12]} saved" in started.stderr
        assert draw(port)["uuid4"]
        logs = subprocess.run(
            [*SUMMON, "logs", name], capture_output=True, text=True, timeout=30, check=True
        )
        assert f"summon: {refused}" in logs.stdout
        assert f"summon: snapshot {snap.key[:12]} saved" in logs.stdout
    finally:
        subprocess.run([*SUMMON, "rm", "-f", name], capture_output=True, timeout=60)


def test_a_lowered_bound_is_held_at_the_next_start(
    dice: Image, cache: SnapshotCache, env: Path, tmp_path: Path
) -> None:
    """Before: lowering snapshot_cache_size below what is stored removed nothing until a new
    snapshot was saved; now the next start evicts, least recently used first, and never the
    snapshot it restores (here the least recently used of all)."""
    snap = saved(dice, cache, tmp_path / "save")
    for key, _ in cache.entries():  # what earlier tests saved: not this test's to order
        if key != snap.key:
            cache.remove(key)
    stale = []
    for n, key in enumerate(("1" * 64, "2" * 64)):
        writer = cache.writer(key, "qemu", {"image": "other:test"})
        writer.write(b"x" * CHUNK)
        writer.commit()
        os.utime(cache.root / key, (time.time() - 200 + n, time.time() - 200 + n))
        stale.append(key)
    os.utime(cache.root / snap.key, (time.time() - 300, time.time() - 300))
    config = env / "config" / "summon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"snapshot_cache_size = {cache.folder_size(snap.key) + 3 * CHUNK // 2}\n")
    try:
        instance, port, said = start(dice, tmp_path / "lowered")
        try:
            assert instance.restored, said.text()
            assert draw(port)["uuid4"]
        finally:
            instance.stop(grace=30)
        assert {k for k, _ in cache.entries()} == {snap.key, stale[1]}
    finally:
        config.unlink()
        cache.remove(stale[1])
    assert not qemu_processes(tmp_path)
