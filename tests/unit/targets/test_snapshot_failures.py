"""The qemu target's snapshots when the cache folder fails them: the run goes on, said once."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from summon.targets.qemu.instance import QemuInstance
from summon.targets.qemu.snapshot import Snapshots
from summon.targets.snapshots import SnapshotCache


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("SUMMON_SNAPSHOTS", raising=False)


def at_point() -> QemuInstance:
    """An instance as the saver sees it at its snapshot point (it has a monitor)."""
    fake = SimpleNamespace(qmp=object(), console=SimpleNamespace(app_up="80/tcp"))
    fake.snapshot_key = ""
    return cast(QemuInstance, fake)


def test_a_cache_folder_that_cannot_be_made_is_a_warning_not_a_failed_run(
    tmp_path: Path,
) -> None:
    """Before: the OSError of making the writer's folder escaped the saver and the run died
    with a traceback; now the run goes on unsaved and says why in one line."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    said: list[str] = []
    snaps = Snapshots(SnapshotCache(blocker / "snapshots", limit=1 << 30), "qemu", said.append)
    instance = at_point()
    snaps.saver("a" * 64, {"image": "dice:test"}, "/bin/true")(instance)
    assert said == [f"warning: no snapshot saved in {blocker / 'snapshots'}: Not a directory"]
    assert instance.snapshot_key == ""  # nothing claims to be restorable
    assert blocker.read_text() == ""


def test_a_refused_snapshot_that_cannot_be_removed_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged snapshot in a read-only cache: refused and booted past, not a crash."""
    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    writer = cache.writer("b" * 64, "qemu", {})
    writer.write(b"state" * 1000)
    snap = writer.commit()
    record = snap.folder / "snapshot.json"
    record.write_text(record.read_text().replace('"size": 5000', '"size": 4999'))

    def read_only(key: str) -> bool:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(cache.root / key))

    monkeypatch.setattr(cache, "remove", read_only)
    said: list[str] = []
    assert Snapshots(cache, "qemu", said.append).find(snap.key) is None
    assert len(said) == 1
    assert said[0].startswith(f"warning: snapshot {snap.key[:12]}: ")
    assert said[0].endswith(
        f"refused and not removed from {cache.root} (Read-only file system); booting instead"
    )


@pytest.mark.parametrize("below", ["", "snapshots"])
def test_a_cache_that_is_a_file_is_one_warning_not_a_refused_snapshot(
    tmp_path: Path, below: str
) -> None:
    """Before: with the cache's folder a file (or under one), every start said the guest's
    snapshot was refused ("cannot read its record: Not a directory ... refused and removed"),
    a snapshot that never was, then that none could be saved; now only the latter."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    root = blocker / below if below else blocker
    said: list[str] = []
    snaps = Snapshots(SnapshotCache(root, limit=1 << 30), "qemu", said.append)
    snaps.trim(keep="c" * 64)
    assert snaps.find("c" * 64) is None
    snaps.saver("c" * 64, {"image": "dice:test"}, "/bin/true")(at_point())
    assert len(said) == 1 and said[0].startswith(f"warning: no snapshot saved in {root}: ")
    assert blocker.read_text() == ""


class MigratingQemu:
    """QMP as QEMU answers a save: getfd takes the pipe, migrate writes `size` bytes into it
    (on a thread, as QEMU does, blocking when the pipe is full), query-migrate says how far."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = -1
        self.sender: threading.Thread | None = None

    def command(self, name: str, arguments: object = None, fds: tuple[int, ...] = ()) -> object:
        if name == "getfd":
            self.fd = os.dup(fds[0])
        elif name == "migrate":
            self.sender = threading.Thread(target=self._send)
            self.sender.start()
        elif name == "query-migrate":
            done = self.sender is not None and not self.sender.is_alive()
            return {"status": "completed" if done else "active"}
        return {}

    def _send(self) -> None:
        with os.fdopen(self.fd, "wb") as pipe:
            for _ in range(self.size // 65536):
                pipe.write(b"m" * 65536)


def test_a_full_disk_while_saving_leaves_nothing_and_says_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC in the middle of the state: the stream is drained to its end (QEMU is not left
    blocked on a full pipe), the half-written folder goes, the run goes on unsaved."""
    from summon.targets.snapshots import SnapshotWriter

    cache = SnapshotCache(tmp_path / "snaps", limit=1 << 30)
    write = SnapshotWriter.write

    def fill_up(self: SnapshotWriter, data: bytes) -> None:
        if self.size > 2 << 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, data)

    monkeypatch.setattr(SnapshotWriter, "write", fill_up)
    qemu = MigratingQemu(8 << 20)
    instance = at_point()
    instance.qmp = cast(Any, qemu)
    said: list[str] = []
    Snapshots(cache, "qemu", said.append).saver("d" * 64, {}, "/bin/true")(instance)
    assert said == [f"warning: no snapshot saved in {cache.root}: No space left on device"]
    assert qemu.sender is not None and not qemu.sender.is_alive()
    assert list(cache.root.iterdir()) == [] and instance.snapshot_key == ""
