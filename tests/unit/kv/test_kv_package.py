"""summon.kv's promises as an image-side package: stdlib only, light to import, small
modules each saying what it is for, and the public names we mean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import summon.kv as kv

PACKAGE = Path(kv.__file__).parent


def test_import_brings_only_the_stdlib_and_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules)\n"
        "import summon.kv\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent.parent)},
    )
    new = set(result.stdout.split())
    ours = {m for m in new if m.split(".")[0] == "summon"}
    # Beyond its own modules: the interfaces, and posix_devices for check_key.
    allowed = {"summon", "summon.runtime", "summon.runtime.posix_devices"}
    allowed |= {f"summon.devices{part}" for part in ("", ".core", ".secure", ".store")}
    assert {m for m in ours if not m.startswith("summon.kv")} <= allowed
    # typing ~9 ms, json and re ~2-5 ms each, dataclasses/inspect ~30 ms: none at import.
    heavy = {"typing", "json", "re", "dataclasses", "inspect", "enum", "asyncio", "threading"}
    assert not heavy & new, sorted(heavy & new)
    foreign = {m for m in new if m.split(".")[0] not in sys.stdlib_module_names} - {
        m for m in new if m.split(".")[0] == "summon"
    }
    assert not foreign, foreign


def test_every_module_is_small_and_says_what_it_is_for() -> None:
    for module in sorted(PACKAGE.glob("*.py")):
        source = module.read_text()
        assert len(source.splitlines()) < 600, module.name
        assert ast.get_docstring(ast.parse(source)), f"{module.name} has no docstring"


def test_exported_names() -> None:
    assert sorted(kv.__all__) == sorted(
        [
            "DEFAULT_AUTHOR", "POLICIES", "Backend", "BundleError", "Commit", "Conflict",
            "CorruptStore", "FolderBackend", "InvalidKey", "KVError", "MemoryBackend",
            "Snapshot", "Store", "StoreClosed", "StoreFull", "StoreLocked", "Transaction",
            "UnknownCommit", "UnsupportedRepository", "export_bundle", "import_bundle",
            "merge_json", "open_folder", "open_memory",
        ]
    )
    for name in kv.__all__:
        assert hasattr(kv, name), name
    # The errors an app catches are the interface's own classes.
    from summon import devices

    assert kv.Conflict is devices.Conflict and kv.StoreFull is devices.StoreFull
