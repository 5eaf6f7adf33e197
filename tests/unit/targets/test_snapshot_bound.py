"""The qemu target's snapshot notices where a user sees them, and the cache's bound held at once.

No VM: a start here stops at the image, which does not exist, after what it says and trims
(the VM side is in tests/integration/test_qemu_snapshot.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from summon.errors import UserError
from summon.targets.base import RunSpec, Volume
from summon.targets.qemu import QemuTarget
from summon.targets.snapshots import SnapshotCache

MiB = 1024 * 1024
SERVING = {"entry": {"kind": "function"}, "ports": [{"port": 80, "protocol": "tcp"}]}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(tmp_path / "snaps"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    return tmp_path


def configure(home: Path, value: str) -> None:
    config = home / "xdg_config_home" / "summon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"snapshot_cache_size = {value}\n")


def stored(count: int, size: int = MiB) -> list[str]:
    """count snapshots, the first the least recently used; their keys."""
    cache = SnapshotCache(limit=1 << 40)
    keys = []
    for n in range(count):
        key = f"{n + 1:x}" * 64
        writer = cache.writer(key, "qemu", {"image": "dice:test"})
        writer.write(b"s" * size)
        writer.commit()
        used = time.time() - 1000 + n * 10
        os.utime(cache.root / key, (used, used))
        keys.append(key)
    return keys


def spec(tmp_path: Path, console: int | None = None, **kw: object) -> RunSpec:
    run = RunSpec(
        image="no-such:image", name="t", rootfs=tmp_path, state_dir=tmp_path / "st",
        network="socket", app_config=SERVING, stdout=console,
    )  # fmt: skip
    for key, value in kw.items():
        setattr(run, key, value)
    return run


def test_a_starts_notices_reach_its_console_and_whoever_hears_the_target(tmp_path: Path) -> None:
    """Before: the qemu target said "not snapshotted" (and every snapshot warning) only on
    summon's stderr, which for `run -d` is monitor.log: neither `summon logs` nor the user of
    `run -d` saw it. Now it is also a `summon:` line on the instance's console and handed to
    the monitor that hears the target."""
    said: list[str] = []
    heard: list[str] = []
    target = QemuTarget(accel="tcg", notice=said.append)  # no KVM notice besides
    target.hear_notices(heard.append)
    read_end, write_end = os.pipe()
    with_volume = spec(tmp_path, write_end, volumes=(Volume("data", "/data"),))
    with pytest.raises(UserError):  # the image is not there; the refusal was said before
        target.start(with_volume)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        console = f.read().decode()
    line = "no-such:image: not snapshotted: it has volumes"
    assert said[0].startswith(line) and heard[0] == said[0]
    assert console.startswith(f"summon: {line}")
    target.hear_notices(None)
    with pytest.raises(UserError):
        target.start(spec(tmp_path))
    assert len(heard) == 1


def test_a_cache_size_of_0_removes_the_snapshots_stored(home: Path, tmp_path: Path) -> None:
    """Before: snapshot_cache_size = 0 stopped saving but kept every snapshot stored (and
    `snapshot ls` listed them "of 0 B"); now the next start that could use one removes them."""
    stored(2)
    configure(home, "0")
    with pytest.raises(UserError):
        QemuTarget(notice=lambda line: None).start(spec(tmp_path))
    assert SnapshotCache().entries() == []


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("-1", "snapshot_cache_size must not be negative"),
        ('"lots"', "snapshot_cache_size: 'lots' is not a size such as \"64M\""),
        ("1.5e99", 'snapshot_cache_size: 1.5e+99 is not a size such as "64M"'),
    ],
)
def test_a_bad_cache_size_stops_the_start_with_one_line(
    home: Path, tmp_path: Path, value: str, why: str
) -> None:
    keys = stored(1)
    configure(home, value)
    with pytest.raises(UserError, match=r"config\.toml: ") as raised:
        QemuTarget(notice=lambda line: None).start(spec(tmp_path))
    assert str(raised.value).endswith(why) and "\n" not in str(raised.value)
    assert [k for k, _ in SnapshotCache(limit=1 << 40).entries()] == keys  # nothing lost


def test_an_instance_names_its_snapshot_only_while_it_is_there(tmp_path: Path) -> None:
    """Before: an instance named the snapshot it was restored from or saved even after
    `snapshot rm` or an eviction took it, and a gateway service went "snapshotted" (its VM
    stopped) on a snapshot that was gone: its next request booted. Now the tier is refused
    and the service stays frozen."""
    from summon.targets.base import NotSupported
    from summon.targets.qemu.instance import QemuInstance

    (key,) = stored(1)
    instance = QemuInstance(spec(tmp_path), ["qemu"], None)
    instance.snapshot_key = key
    assert instance.snapshot() == key
    SnapshotCache().remove(key)
    with pytest.raises(NotSupported, match=f"snapshot {key[:12]} of no-such:image is gone"):
        instance.snapshot()
    (again,) = stored(1)
    (SnapshotCache().root / again / "state").write_bytes(b"other")
    with pytest.raises(NotSupported, match=r"its state holds 5 bytes.*the next start would boot"):
        instance.snapshot()


def test_a_snapshot_found_for_a_restore_is_the_last_an_eviction_takes() -> None:
    """Before: a snapshot was marked used only once its restore was done, so another start
    holding the bound meanwhile took it first (the least recently used) from under the
    restore; now finding it marks it."""
    from summon.targets.qemu.snapshot import Snapshots

    older, newer = stored(2)
    cache = SnapshotCache(limit=MiB + MiB // 2)  # room for one
    assert Snapshots(cache, "qemu", lambda line: None).find(older) is not None
    assert cache.evict() == [newer]
