"""`summon snapshot ls|rm` over a cache of its own, and `run --no-snapshot` where it is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli
from summon.targets.snapshots import SnapshotCache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SnapshotCache:
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(tmp_path / "snaps"))
    monkeypatch.delenv("SUMMON_STORE", raising=False)
    return SnapshotCache()


def put(cache: SnapshotCache, key: str, size: int) -> None:
    writer = cache.writer(key, "qemu", {"image": "dice:test", "memory": 64 << 20})
    writer.write(b"s" * size)
    writer.commit()


def test_ls_lists_keys_sizes_and_refused_ones(cache: SnapshotCache) -> None:
    runner = CliRunner()
    empty = runner.invoke(cli, ["snapshot", "ls", "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output)["snapshots"] == []
    put(cache, "ab" * 32, 3000)
    put(cache, "cd" * 32, 5000)
    (cache.root / ("cd" * 32) / "snapshot.json").write_text("{}")
    listed = json.loads(runner.invoke(cli, ["snapshot", "ls", "--json"]).output)
    rows = {r["key"]: r for r in listed["snapshots"]}
    assert rows["ab" * 32]["image"] == "dice:test" and rows["ab" * 32]["target"] == "qemu"
    assert rows["ab" * 32]["size"] > 3000  # the state and its record
    assert "malformed" in rows["cd" * 32]["error"]
    table = runner.invoke(cli, ["snapshot", "ls"])
    assert table.exit_code == 0
    assert "abababababab" in table.output and "2 snapshot(s)" in table.output
    # The reason is printed as it is ("[...]" is not taken for rich markup and dropped).
    assert "[snapshot cdcdcdcdcdcd: its record is malformed" in table.output


def test_rm_by_prefix_and_its_errors(cache: SnapshotCache) -> None:
    runner = CliRunner()
    put(cache, "ab" * 32, 10)
    put(cache, "ac" * 32, 10)
    ambiguous = runner.invoke(cli, ["snapshot", "rm", "a"])
    assert ambiguous.exit_code == 2 and "'a' names 2 snapshots" in ambiguous.output
    removed = runner.invoke(cli, ["snapshot", "rm", "abab"])
    assert removed.exit_code == 0 and removed.output.strip() == "ab" * 32
    missing = runner.invoke(cli, ["snapshot", "rm", "abab"])
    assert missing.exit_code == 2 and "no snapshot 'abab'" in missing.output
    both = runner.invoke(cli, ["snapshot", "rm", "--all", "ac"])
    assert both.exit_code == 2 and "or --all, not both" in both.output
    neither = runner.invoke(cli, ["snapshot", "rm"])
    assert neither.exit_code == 2 and "give the KEYs to remove" in neither.output
    everything = runner.invoke(cli, ["snapshot", "rm", "--all"])
    assert everything.exit_code == 0 and everything.output.strip() == "ac" * 32
    assert cache.entries() == []


def test_no_snapshot_is_an_option_of_the_targets_that_declare_it(cache: SnapshotCache) -> None:
    result = CliRunner().invoke(cli, ["run", "no-such-image", "--target", "unix", "--no-snapshot"])
    assert result.exit_code == 2
    assert "--no-snapshot is not an option of target unix (it is for: qemu)" in result.output


def configure(tmp_path: Path, value: str) -> None:
    config = tmp_path / "xdg_config_home" / "summon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"snapshot_cache_size = {value}\n")


def test_ls_holds_a_lowered_bound_at_once_least_recently_used_first(
    cache: SnapshotCache, tmp_path: Path
) -> None:
    """Before: a bound lowered below what is stored was held only when a new snapshot was
    saved, and 0 kept them all; now `ls` removes the least recently used past it, and says so."""
    import os
    import time

    keys = ["ab" * 32, "cd" * 32, "ef" * 32]
    for n, key in enumerate(keys):
        put(cache, key, 1 << 20)
        os.utime(cache.root / key, (time.time() - 100 + n, time.time() - 100 + n))
    os.utime(cache.root / keys[0])  # the oldest made is the one used last
    configure(tmp_path, '"2M"')  # room for one (each is 1 MiB and its record)
    runner = CliRunner()
    listed = runner.invoke(cli, ["snapshot", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["key"] for r in json.loads(listed.stdout)["snapshots"]] == [keys[0]]
    assert (
        f"summon: removed 2 snapshot(s) over the cache's bound (snapshot_cache_size = 2.1 MB): "
        f"{keys[1][:12]} {keys[2][:12]}"
    ) in listed.stderr
    configure(tmp_path, "0")
    off = runner.invoke(cli, ["snapshot", "ls"])
    assert off.exit_code == 0 and cache.entries() == []
    assert "(snapshot_cache_size = 0: keep none): abababababab" in off.stderr
    assert "0 snapshot(s), 0 B (snapshot_cache_size = 0: snapshots are off)" in off.stdout


@pytest.mark.parametrize("value", ["-1", '"lots"', "1.5e99", "true", '"1.5G"'])
def test_ls_with_a_bad_bound_is_one_error_line(
    cache: SnapshotCache, tmp_path: Path, value: str
) -> None:
    """Before: ls printed its table's header, then the error; now the error line alone."""
    put(cache, "ab" * 32, 10)
    configure(tmp_path, value)
    result = CliRunner().invoke(cli, ["snapshot", "ls"])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("summon: error: ") and "snapshot_cache_size" in line
    assert [k for k, _ in cache.entries()] == ["ab" * 32]


def test_rm_in_a_cache_it_cannot_change_is_one_line_naming_it(
    cache: SnapshotCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `summon: error: Read-only file system: <path>`, no word of what failed."""
    import errno
    import os

    put(cache, "ab" * 32, 10)

    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src))

    monkeypatch.setattr(os, "rename", read_only)
    result = CliRunner().invoke(cli, ["snapshot", "rm", "abab"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"summon: error: snapshot rm: cannot remove abababababab from {cache.root}: "
        "Read-only file system\n"
    )


@pytest.mark.parametrize("below", ["", "snaps"])
def test_ls_and_rm_of_a_cache_that_is_a_file_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: SnapshotCache, below: str
) -> None:
    """Before: ls said a warning and then `summon: error: Not a directory: <path>`."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    root = blocker / below if below else blocker
    monkeypatch.setenv("SUMMON_SNAPSHOTS", str(root))
    for argv in (["snapshot", "ls"], ["snapshot", "rm", "--all"]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"summon: error: snapshot cache {root}")


def test_run_says_a_bad_bound_before_an_instance_is_recorded(
    cache: SnapshotCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the qemu target read the bound in its start, inside the monitor, and the run
    left an instance recorded as 'Exited (start failed)' behind its error."""
    from fakes import store_image

    from summon.instances import state
    from summon.store.layout import Store

    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    store_image(Store(tmp_path / "store"), "vm:1", b"vm")
    configure(tmp_path, '"lots"')
    result = CliRunner().invoke(cli, ["run", "vm:1", "--target", "qemu", "--accel", "tcg"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("summon: error: ") and "snapshot_cache_size" in line
    assert state.all_instances() == []
    # --no-snapshot reads no bound (and goes on to the image, which has no boot artifact).
    other = CliRunner().invoke(cli, ["run", "vm:1", "--target", "qemu", "--no-snapshot"])
    assert "snapshot_cache_size" not in other.output
