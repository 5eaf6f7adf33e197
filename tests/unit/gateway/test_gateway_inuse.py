"""The images a gateway's instances run, as `summon rmi` reads them (gateway/inuse.py)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from summon.gateway import inuse


def test_a_live_gateways_images_are_read_a_dead_ones_forgotten(tmp_path: Path) -> None:
    inuse.write(tmp_path, {"sha256:aa": ["web", "api"]})
    assert inuse.read(tmp_path) == {"sha256:aa": ["gateway service web", "gateway service api"]}
    # A file whose pid has another start time (the pid reused, or the gateway gone).
    stale = tmp_path / "in-use.1.json"
    stale.write_text(json.dumps({"pid": 1, "started": "-1", "images": {"sha256:bb": ["x"]}}))
    assert "sha256:bb" not in inuse.read(tmp_path)
    assert not stale.exists()
    inuse.remove(tmp_path)
    assert inuse.read(tmp_path) == {}


def test_a_full_disk_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(inuse.json, "dump", full)
    with pytest.raises(OSError):
        inuse.write(tmp_path, {"sha256:aa": ["web"]})
    assert list(tmp_path.iterdir()) == []
