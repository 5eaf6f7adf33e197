"""Modules the app's own code makes findable: a sys.path entry it adds, a finder it installs.

pkg_resources puts setuptools/_vendor on sys.path and imports backports.tarfile from there;
setuptools serves `distutils` from its own copy. The trace saw the interpreter load each from
a file the image ships; the image runs the same code, so it finds them the same way. The
build's check of the image's files against the closure used to refuse them (its fixed search
path cannot see them), so `import pkg_resources` could not be built.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from summon.build.image import build
from summon.store import Store
from summon.store.image import Image

APP = """
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vendor", "_stash"))
import stashed  # found only through the entry just added

def main():
    return stashed.VALUE
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the build's verification run needs root")
def test_a_module_on_a_path_the_app_adds_is_built_and_found(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "vendor" / "_stash").mkdir(parents=True)
    (app / "vendor" / "_stash" / "stashed.py").write_text("VALUE = 7\n")
    (app / "app.py").write_text(APP)
    (app / "summon.toml").write_text('name = "stash"\nentry = "app:main"\n')
    store = Store(tmp_path / "store")
    result = build(app, store, "stash:t", record=False)  # verify: imported in the image
    assert result.verification is not None
    bom = Image.open(store, "stash:t").bom
    [stashed] = [m for m in bom["modules"] if m["name"] == "stashed"]
    assert stashed["path"] == "/app/vendor/_stash/stashed.py", stashed  # app code: its source
