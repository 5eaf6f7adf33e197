"""What an image chose reaches the user's terminal as text, never as escape sequences.

Rule (cli/output.printable): every string summon's consoles print, tables' cells included,
shows its control characters (but newline and tab) as their escapes. A pulled image's bill
of materials is the image author's: a module's reason of `ESC ] 0 ; title BEL` retitled the
user's window and `ESC [ 2 J` cleared what `summon inspect` had printed (rich passes ESC
through). `summon logs` prints the app's own output as it is, by design, as docker's does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from summon.store import Store
from summon.store.image import BOM_TYPE
from summon.store.layout import CONFIG, INDEX, MANIFEST

SRC = Path(__file__).resolve().parents[3] / "src"
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x9b31m"


def _image_with_bom(store: Store, tag: str, bom: dict[str, object]) -> None:
    config = store.put_json({"os": "linux", "architecture": "amd64"}, CONFIG)
    manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(), "layers": []},
        MANIFEST,
    )
    doc = store.put_json(bom, "application/json")
    bom_manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": BOM_TYPE,
         "config": config.to_json(), "layers": [doc.to_json()]},
        MANIFEST,
    )  # fmt: skip
    entries = [manifest.to_json(), {**bom_manifest.to_json(), "artifactType": BOM_TYPE}]
    index = store.put_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, INDEX)
    store.tag(tag, index)


def test_inspect_shows_an_image_s_escape_sequences_as_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    module = {"name": "evil", "group": f"app{HOSTILE}", "path": "/app/evil.py",
              "reason": f"imported{HOSTILE}"}  # fmt: skip
    _image_with_bom(store, "hostile:v1", {"modules": [module]})
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "SUMMON_STORE": str(tmp_path / "store"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "summon", "inspect", "hostile:v1", "--why", "evil"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "evil is in the image" in out, out
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out), out
    assert "imported\\x1b[2J\\x1b]0;owned\\x07\\x9b31m" in out, out
    # --json is for programs: there the string stays the image's, escaped as JSON escapes it
    done = subprocess.run(
        [sys.executable, "-m", "summon", "inspect", "hostile:v1", "--why", "evil", "--json"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout.decode()
    assert HOSTILE in json.loads(done.stdout)["why"][0]
