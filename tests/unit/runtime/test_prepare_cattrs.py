"""cattrs' generated structure and unstructure functions are made before the seal.

A child interpreter (a seal cannot be undone) runs an app module from its own folder, as
the runtime does (its folder is the working one): attrs classes and a dataclass, a
cattrs Converter, then the seal's hook installed the way the runtime installs it, and a
request's worth of structure/unstructure after it. cattrs (installed from PyPI into a
folder of the test's own) makes those functions at their first use, which the seal
refused: `<cattrs generated structure app.Order>`, the first POST answered 500.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

APP = """
import dataclasses
import attrs
import cattrs

@attrs.define
class Item:
    name: str

@attrs.define
class Order:
    item: Item
    qty: int = 1

@dataclasses.dataclass
class Point:
    x: float
    y: float

converter = cattrs.Converter()
"""

CHILD = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import app
from summon.runtime import prepare, seal_hook
said = []
made = prepare.prepare(said.append) if sys.argv[1] == "prepared" else 0
sys.addaudithook(seal_hook.make_hook(
    roots=(os.path.dirname(os.__file__), sys.argv[2]), writable=(), enforce=True,
    trusted_callers=frozenset(),
    report=lambda what, rule, enforce: said.append(f"{rule}: {what}"),
))
results = {}
for name, fn in {
    "structure": lambda: repr(app.converter.structure({"item": {"name": "tea"}}, app.Order)),
    "unstructure": lambda: app.converter.unstructure(app.Order(app.Item("pen"))),
    "dataclass": lambda: repr(app.converter.structure({"x": 1, "y": 2}, app.Point)),
}.items():
    try:
        results[name] = fn()
    except Exception as e:
        results[name] = f"error: {type(e).__name__}"
print(json.dumps({"made": made, "results": results, "said": said}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("cattrs-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--target", str(site), "cattrs==26.2.1", "attrs"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return site


def _child(mode: str, site: Path, folder: Path) -> dict[str, Any]:
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD, mode, str(site)],
        env={"PYTHONPATH": f"{SRC}:{site}", "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return doc


def test_a_sealed_app_structures_its_classes_once_prepared(site: Path, tmp_path: Path) -> None:
    doc = _child("prepared", site, tmp_path / "app")
    assert doc["results"] == {
        "structure": "Order(item=Item(name='tea'), qty=1)",
        "unstructure": {"item": {"name": "pen"}, "qty": 1},
        "dataclass": "Point(x=1.0, y=2.0)",
    }
    assert doc["said"] == []
    # A structure and an unstructure function for each class and converter: the app's and
    # cattrs' own global_converter.
    assert doc["made"] == 12


def test_without_the_preparation_the_seal_refuses_what_cattrs_generates(
    site: Path, tmp_path: Path
) -> None:
    doc = _child("bare", site, tmp_path / "app")
    assert doc["results"]["structure"] == "error: PermissionError", doc
    assert any("'<cattrs generated structure app." in line for line in doc["said"]), doc
