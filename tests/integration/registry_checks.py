"""What the registry tests share besides fixtures: the check every error case makes (one
`summon: error:` line, exit status 2), a summon home of its own, a key's path, and the digest
of an image's root filesystem layer."""

from __future__ import annotations

import json
import subprocess

import pytest
from summon_cli import Summon


def assert_one_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and exactly one error line, holding every needle; returns that line."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(errors) == 1, r.stderr
    assert r.stderr.rstrip().splitlines()[-1] == errors[0], r.stderr  # nothing after it
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in errors[0], r.stderr
    return errors[0]


def new_summon(tmp_path_factory: pytest.TempPathFactory, name: str = "home") -> Summon:
    return Summon(tmp_path_factory.mktemp(name))


def key(s: Summon, name: str) -> str:
    return str(s.home / name)


def layer_of(s: Summon, ref: str) -> str:
    """The digest of the root filesystem layer of image REF."""
    inspect = json.loads(s.ok("inspect", ref, "--json"))
    manifest = next(m for m in inspect["index"]["manifests"] if "artifactType" not in m)
    doc = json.loads((s.store / "blobs" / "sha256" / manifest["digest"][7:]).read_bytes())
    return str(doc["layers"][0]["digest"])
