"""What `summon rmi` says of an image an instance or a gateway's service runs, or a stopped
instance would run again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import store_image

from summon.cli.images import in_use_error
from summon.cli.main import cli
from summon.instances import state
from summon.store.layout import Store


def test_a_gateway_service_is_not_told_to_use_summon_stop() -> None:
    # "stop it first (summon stop)" was all it said, and summon stop stops no gateway service.
    assert in_use_error("http:1", ["gateway service web"]) == (
        "image http:1 is in use by gateway service web: let the gateway's service go idle "
        "(idle_timeout) or remove it from the gateway's config (and SIGHUP), or tag the image "
        "to keep it"
    )
    assert in_use_error("http:1", ["sleeper"]) == (
        "image http:1 is in use by sleeper: stop it first (summon stop), or tag the image to "
        "keep it"
    )
    both = in_use_error("http:1", ["sleeper", "gateway service web"])
    assert "stop it first (summon stop), let the gateway's service go idle" in both


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    return Store(tmp_path / "store")


def _instance(name: str, digest: str, status: str) -> int:
    """An instance record of the image; its lock fd, held as its monitor holds it."""
    run = {"name": name, "image": "i", "rootfs": "/", "app_config": {}}
    spec = {"run": run, "target": "unix", "image": {"digest": digest}}
    folder, lock_fd = state.create(spec, name, name, durable=False)
    folder.update_state(status=status)
    return lock_fd


def test_an_image_stopped_instances_use_is_refused_unless_forced(store: Store) -> None:
    # rmi removed it without a word, and `summon start old` failed later: "image ... is no
    # longer in the store". As docker's: refused, naming the instances; -f removes it.
    index, _, _ = store_image(store, "web:1", b"web")
    for name in ("old", "older"):
        os.close(_instance(name, index.digest, "exited"))
    runner = CliRunner()
    r = runner.invoke(cli, ["rmi", "web:1"])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == (
        "summon: error: image web:1 is used by stopped instances old, older: remove them "
        "first (summon rm old older), or give -f to remove the image anyway\n"
    )
    r = runner.invoke(cli, ["rmi", index.digest[7:19]])  # by ID: the same
    assert r.exit_code == 2 and "stopped instances old, older" in r.stderr
    store.tag("web:2", index)
    assert runner.invoke(cli, ["rmi", "web:2"]).exit_code == 0  # web:1 keeps the image
    # A rebuild moves web:1 on, leaving the image <none>: --dangling keeps one an instance
    # uses, as docker's image prune does.
    store_image(store, "web:1", b"web, rebuilt")
    assert [d.digest for d in store.untagged()] == [index.digest]
    assert runner.invoke(cli, ["rmi", "--dangling"]).stdout == "removed 0 blobs, 0 B\n"
    assert store.blob_path(index.digest).exists()
    r = runner.invoke(cli, ["rmi", "-f", index.digest[7:19]])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"removed untagged image {index.digest[7:19]}\n")
    assert not store.blob_path(index.digest).exists()


def test_an_image_a_running_instance_uses_is_refused_even_forced(store: Store) -> None:
    index, _, _ = store_image(store, "web:1", b"web")
    lock_fd = _instance("live", index.digest, "running")
    try:
        for argv in (["rmi", "web:1"], ["rmi", "-f", "web:1"]):
            r = CliRunner().invoke(cli, argv)
            assert r.exit_code == 2
            assert r.stderr.startswith("summon: error: image web:1 is in use by live: stop it")
    finally:
        os.close(lock_fd)
    assert store.blob_path(index.digest).exists()
