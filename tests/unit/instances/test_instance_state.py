"""Instance folders: allocation of IDs and names, lookup by ID, prefix or name, the lock, JSON."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from summon.errors import UserError
from summon.instances import state
from summon.instances.state import NameInUse, UnknownInstance
from summon.targets.base import PortForward, RunSpec, Volume


def spec_doc(**run: Any) -> dict[str, Any]:
    spec = RunSpec(name="x", image="http:test", rootfs=Path("/r"), app_config={"name": "http"})
    return {"target": "unix", "restart": "no", "run": {**state.encode_run_spec(spec), **run}}


def make(name: str | None = None, base: str = "http") -> state.InstanceFolder:
    folder, lock_fd = state.create(spec_doc(), name, base)
    os.close(lock_fd)
    return folder


def test_create_writes_a_whole_folder(state_home: Path) -> None:
    folder, lock_fd = state.create(spec_doc(), None, "http")
    try:
        assert folder.path.parent == state_home / "instances"
        assert len(folder.id) == 64 and len(folder.short_id) == 12
        assert folder.name == "http-1"
        assert folder.state()["status"] == "created"
        spec = folder.spec()
        # The target knows the instance by its short ID, in the instance's own folder.
        assert spec["run"]["name"] == folder.short_id
        assert spec["run"]["state_dir"] == str(folder.path)
        # ... and the app finds itself by the name the user knows (the sandbox's /etc/hosts).
        assert folder.run_spec().hostname == "http-1"
        assert folder.supervised()  # the creator holds the lock until the monitor has it
    finally:
        os.close(lock_fd)
    assert not folder.supervised()
    # Nothing temporary is left beside it.
    assert sorted(p.name for p in folder.path.parent.iterdir()) == [".lock", folder.id]
    assert sorted(p.name for p in folder.path.iterdir()) == [
        "logs", "monitor.lock", "spec.json", "state.json"
    ]  # fmt: skip


def test_generated_names_are_the_first_free(state_home: Path) -> None:
    a, b = make(), make()
    assert (a.name, b.name) == ("http-1", "http-2")
    state.remove(a)
    assert make().name == "http-1"


def test_a_name_in_use_is_refused(state_home: Path) -> None:
    first = make("web")
    with pytest.raises(NameInUse, match=f"'web' is in use by instance {first.short_id}"):
        make("web")
    with pytest.raises(state.UserError, match="--name"):
        make("no spaces")


def test_a_name_is_at_most_64_characters(state_home: Path) -> None:
    assert make("a" * 64).name == "a" * 64
    with pytest.raises(state.UserError, match=r"at most 64 characters \(65 given\)"):
        make("b" * 65)


def test_a_long_image_name_still_derives_names(state_home: Path) -> None:
    long = "x" * 80
    a, b = make(base=state.base_name(long)), make(base=state.base_name(long))
    assert (a.name, b.name) == ("x" * 56 + "-1", "x" * 56 + "-2")
    assert state.base_name("not a name") == "app"


def test_find_by_id_name_and_prefix(state_home: Path) -> None:
    a = make("alpha")
    b = make("beta")
    assert state.find(a.id).id == a.id
    assert state.find("beta").id == b.id
    assert state.find(a.id[:5]).id == a.id
    with pytest.raises(UnknownInstance, match="no instance 'gamma'"):
        state.find("gamma")
    assert state.lookup("gamma") is None


def test_an_ambiguous_prefix_is_an_error(state_home: Path) -> None:
    made = [make() for _ in range(40)]
    # 40 random IDs over 16 first digits: some first digit is shared.
    firsts = [f.id[0] for f in made]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(UnknownInstance, match=f"prefix '{shared}' is ambiguous"):
        state.find(shared)
    with pytest.raises(UnknownInstance, match="ambiguous"):
        state.lookup(shared)


def test_a_name_wins_over_an_id_prefix(state_home: Path) -> None:
    a = make()
    b = make(a.id[:6])  # a name that is also a's ID prefix
    assert state.find(a.id[:6]).id == b.id


def test_the_lock_says_who_supervises(state_home: Path) -> None:
    folder = make()
    assert not folder.supervised()
    fd = os.open(folder.lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert folder.supervised()
        with folder.unsupervised() as free:
            assert not free
    finally:
        os.close(fd)
    with folder.unsupervised() as free:
        assert free


def test_state_writes_are_atomic_and_keep_defaults(state_home: Path) -> None:
    folder = make()
    folder.update_state(status="running", pid=42)
    doc = folder.state()
    assert (doc["status"], doc["pid"], doc["restarts"]) == ("running", 42, 0)
    assert not [p for p in folder.path.iterdir() if p.name.startswith(".")]
    folder.state_path.write_text("{not json")  # a damaged file reads as the defaults
    assert folder.state()["status"] == "created"


def test_run_spec_round_trip() -> None:
    spec = RunSpec(
        name="abc",
        image="http:test",
        rootfs=Path("/cache/rootfs/x"),
        app_config={"name": "http", "ports": [80]},
        env={"A": "1"},
        ports=(PortForward(8080, 80), PortForward(5353, 53, "udp", "127.0.0.2")),
        volumes=(Volume("data", "/data"),),
        memory=64 << 20,
        state_dir=Path("/state/i"),
        stdout=7,
    )
    doc = state.encode_run_spec(spec)
    assert "stdout" not in doc  # an fd means nothing in another process
    back = state.decode_run_spec({**doc, "from_a_newer_summon": 1})
    assert back == RunSpec(**{**spec.__dict__, "stdout": None})
    assert isinstance(back.rootfs, Path) and isinstance(back.ports[1], PortForward)


def test_a_full_disk_is_one_line_naming_the_state_folder(
    state_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`summon run -d` with the state folder's disk full: where, and what to do; no half
    instance left behind (was: a bare "No space left on device")."""

    def full(path: Path, doc: Any, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(state, "write_json", full)
    with pytest.raises(UserError) as e:
        state.create(spec_doc(), "full", "app")
    assert str(e.value).startswith(f"cannot record the instance in {state.root()}: No space")
    assert "summon rm" in str(e.value)
    assert [p.name for p in state.root().iterdir()] == [".lock"]


def test_rm_naming_an_instance_twice_removes_it_once(state_home: Path) -> None:
    from click.testing import CliRunner

    from summon.cli.main import cli

    web = make("web")
    web.update_state(status="exited", exit_code=0)
    other = make("other")
    other.update_state(status="exited", exit_code=0)
    result = CliRunner().invoke(cli, ["rm", "web", web.short_id, "web", "other"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["web", "other"]
    assert state.all_instances() == []
