"""Every example is a valid app: its manifest loads, its README says how to build and run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from summon.manifest import load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(
    ("name", "entry", "data", "network"),
    [
        ("hello", "hello.py", [], "none"),
        ("http", "app:main", ["static"], "socket"),
        ("dns", "dnsd:main", ["zone"], "socket"),
    ],
)
def test_manifest(name: str, entry: str, data: list[str], network: str) -> None:
    manifest = load(EXAMPLES / name)
    assert (manifest.name, str(manifest.entry), manifest.network) == (name, entry, network)
    assert [folder.name for folder in manifest.data] == data
    readme = (EXAMPLES / name / "README.md").read_text()
    assert f"summon build examples/{name} -t {name} && summon run {name}" in readme


@pytest.mark.parametrize(
    ("args", "env", "status"),
    [
        ([], {}, 0),
        (["5"], {}, 5),
        ([], {"HELLO_STATUS": "3"}, 3),
        (["2"], {"HELLO_STATUS": "3"}, 2),
    ],
)
def test_hello_exit_status(args: list[str], env: dict[str, str], status: int) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "hello" / "hello.py"), *args],
        env={"HELLO_NAME": "test", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout) == (status, "hello, test\n")
