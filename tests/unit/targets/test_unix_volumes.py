"""The unix target and volumes: a host process has no mounts, so only stores see them."""

from __future__ import annotations

from summon.targets.unix import unreached_volume


def test_a_volume_for_the_apps_stores_is_reached() -> None:
    config = {"stores": {"todo": "/data/todo"}}
    assert unreached_volume("/data", config) == ""
    assert unreached_volume("/data/", config) == ""
    assert unreached_volume("/data/todo", config) == ""


def test_a_volume_for_the_apps_own_files_says_they_are_the_hosts() -> None:
    # An app that opens /data/notes.db itself would open the host's /data/notes.db: sqlite
    # failed with "unable to open database file", or worse, wrote the host's files.
    why = unreached_volume("/data", {})
    assert why == (
        "a plain host process has no mounts of its own: the app's stores would use the "
        "volume, but a file the app opens under /data itself is the host's /data; run it "
        "with --target sandbox to have the volume there"
    )
    assert unreached_volume("/database", {"stores": {"t": "/data/t"}}) == why.replace(
        "/data", "/database"
    )
