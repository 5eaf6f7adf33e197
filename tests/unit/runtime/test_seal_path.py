"""sys.path's relative entries at the seal: made absolute, so imports after it still work.

uvicorn's command line (--app-dir "") and python -m put "" on sys.path before a script's
seal; with it there, the hook refused every import after the seal (anyio's asyncio backend at
a FastAPI app's first request under `uvicorn main:app`: every request answered 500).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from summon.runtime import seal

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import json, os, sys
app, tmp = sys.argv[1], sys.argv[2]
from summon.runtime import seal, seal_hook
os.chdir(app)
roots = tuple(p for p in sys.path if p.startswith("/") and p != "/") + (app,)
sys.path.insert(0, "")  # what uvicorn's main() does before it binds
seal.absolute_path_entries(sys.path)
said = []
sys.addaudithook(seal_hook.make_hook(
    roots=roots, writable=(tmp,), enforce=True, trusted_callers=frozenset(),
    report=lambda what, rule, enforce: said.append(rule)))
results = {}
try:
    results["late_import"] = __import__("lateimport").VALUE
except Exception as e:
    results["late_import"] = repr(e)
os.chdir(tmp)
sys.path.insert(0, "")  # relative again, and now it would be /tmp's code
try:
    __import__("planted")
    results["planted"] = "imported"
except PermissionError as e:
    results["planted"] = str(e)
print(json.dumps({"results": results, "path0": sys.path[1], "said": said}))
"""


def test_relative_entries_made_absolute_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path: list[object] = ["", ".", "lib", "../up", "/abs", b"bytes"]
    seal.absolute_path_entries(path)
    cwd = os.getcwd()
    assert path == [cwd, cwd, f"{cwd}/lib", str(Path(cwd).parent / "up"), "/abs", b"bytes"]


def test_import_after_the_seal_with_empty_entry_on_sys_path(tmp_path: Path) -> None:
    app, tmp = tmp_path / "app", tmp_path / "tmp"
    app.mkdir()
    tmp.mkdir()
    (app / "lateimport.py").write_text("VALUE = 'from the image'\n")
    (tmp / "planted.py").write_text("VALUE = 'new code'\n")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(app), str(tmp)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
        timeout=60,
    )
    got = json.loads(out.stdout)
    assert got["results"]["late_import"] == "from the image"
    assert got["path0"] == str(app)
    assert "refused by the seal (seal.import" in got["results"]["planted"]
