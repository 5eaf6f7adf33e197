"""A build's own runs hold a lease; a killed build's leftovers are released by the next one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from summon import paths, targets
from summon.instances import scratch
from summon.targets.base import Check, Instance, RunSpec, Target


class CleaningTarget(Target):
    """Records what clean_up was asked to release."""

    name: ClassVar[str] = "cleaning"
    description: ClassVar[str] = "records clean_up"
    released: ClassVar[list[RunSpec]] = []

    @classmethod
    def check(cls) -> list[Check]:
        return []

    def start(self, spec: RunSpec) -> Instance:
        raise NotImplementedError

    def clean_up(self, spec: RunSpec) -> None:
        self.released.append(spec)


@pytest.fixture
def leases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "leases"
    monkeypatch.setattr(scratch, "LEASES", folder)
    CleaningTarget.released.clear()
    targets.register("cleaning", CleaningTarget)
    try:
        yield folder
    finally:
        targets.unregister("cleaning")


def _spec(tmp_path: Path, name: str) -> RunSpec:
    state = tmp_path / f"state-{name}"
    state.mkdir()
    (state / "bundle").mkdir()
    return RunSpec(
        name=name, image="img", rootfs=tmp_path, app_config={}, argv=("x",), state_dir=state
    )


def _in_child(spec: RunSpec, hold: int | None = None) -> int:
    """A child that takes spec's lease and dies inside it (os._exit: nothing unwinds), or,
    given a pipe's read end, waits on it inside the lease first."""
    pid = os.fork()
    if pid == 0:
        try:
            with scratch.lease("cleaning", spec, remove=spec.state_dir):
                if hold is not None:
                    os.read(hold, 1)
                    return 0  # unreachable in the tests: the parent kills it
                os._exit(0)
        finally:
            os._exit(1)
    return pid


def test_a_dead_owners_run_is_released_by_the_next_lease(leases: Path, tmp_path: Path) -> None:
    dead = _spec(tmp_path, "record-dead")
    _, status = os.waitpid(_in_child(dead), 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (leases / "record-dead.json").exists()  # the killed owner could not remove it

    mine = _spec(tmp_path, "record-mine")
    with scratch.lease("cleaning", mine, remove=mine.state_dir):
        released = [s.name for s in CleaningTarget.released]
        assert released == ["record-dead"]
        assert CleaningTarget.released[0].state_dir == dead.state_dir
        assert not dead.state_dir.exists()
        assert not (leases / "record-dead.json").exists()
        assert (leases / "record-mine.json").exists()
    # The block ended: the lease goes, and the run's folder is its owner's to delete.
    assert not (leases / "record-mine.json").exists()
    assert mine.state_dir.exists()
    assert [s.name for s in CleaningTarget.released] == ["record-dead"]


def test_a_live_owners_run_is_left_alone(leases: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, "record-live")
    read_end, write_end = os.pipe()
    pid = _in_child(spec, hold=read_end)
    try:
        while not (leases / "record-live.json").exists():
            os.sched_yield()
        assert scratch.sweep() == 0
        assert CleaningTarget.released == []
        assert spec.state_dir.exists()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read_end)
        os.close(write_end)
    assert scratch.sweep() == 1  # killed: now it is a dead owner's
    assert [s.name for s in CleaningTarget.released] == ["record-live"]


def test_an_unwritable_lease_folder_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(scratch, "LEASES", blocker / "leases")  # under a file: ENOTDIR
    ran = []
    with scratch.lease("cleaning", _spec(tmp_path, "record-x")):
        ran.append(True)
    assert ran == [True]


def test_a_lease_for_an_unknown_target_or_garbage_is_swept_without_error(
    leases: Path, tmp_path: Path
) -> None:
    leases.mkdir()
    (leases / "garbage.json").write_text("{not json")
    here = json.dumps(str(paths.state_dir()))
    (leases / "other.json").write_text(f'{{"state": {here}, "target": "gone", "run": {{}}}}')
    assert scratch.sweep() == 1  # the unknown target's: nothing to ask, the file goes
    assert not (leases / "other.json").exists()
    assert not (leases / "garbage.json").exists()
    assert CleaningTarget.released == []


def test_another_state_folders_lease_is_left_to_it(
    leases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its runc root is another: only a summon with that state folder can release it."""
    dead = _spec(tmp_path, "record-elsewhere")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other-state"))
    os.waitpid(_in_child(dead), 0)
    monkeypatch.undo()
    monkeypatch.setattr(scratch, "LEASES", leases)
    assert scratch.sweep() == 0
    assert (leases / "record-elsewhere.json").exists()
    assert CleaningTarget.released == []
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other-state"))
    assert scratch.sweep() == 1
    assert [s.name for s in CleaningTarget.released] == ["record-elsewhere"]
