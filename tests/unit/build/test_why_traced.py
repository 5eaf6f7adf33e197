"""`summon inspect --why` for a module only the trace saw loaded (no static chain to it)."""

from __future__ import annotations

from typing import Any

from summon.build.why import _present

ZONEINFO = "/usr/lib/python3.11/zoneinfo/__init__.pyc"


def modules(named_by: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "zoneinfo": {
            "name": "zoneinfo", "group": "stdlib", "path": ZONEINFO,
            "reason": "seen by the trace", "named_by": named_by,
        },
        "app": {"name": "app", "group": "app", "path": "/app/app.py", "reason": "entry"},
    }  # fmt: skip


def test_a_module_is_not_blamed_for_importing_itself() -> None:
    # orjson's native init imports zoneinfo: the only Python code naming it was zoneinfo's
    # own __init__ (importing zoneinfo._common), which --why printed as the importer.
    mods = modules([{"module": "zoneinfo", "line": 10, "how": "import"}])
    lines = _present({}, mods, "zoneinfo")
    assert ZONEINFO + ":10" not in "\n".join(lines)
    assert "an extension module's native code imports it" in lines[1]


def test_a_real_importer_is_named() -> None:
    mods = modules([
        {"module": "zoneinfo", "line": 10, "how": "import"},
        {"module": "app", "line": 3, "how": "import"},
    ])  # fmt: skip
    lines = _present({}, mods, "zoneinfo")
    assert "code that imports it" in lines[1]
    assert len(lines) == 3 and lines[2].strip().startswith("/app/app.py:3")
