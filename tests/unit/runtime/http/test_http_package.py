"""summon.runtime.http's promises as a package: stdlib and h11 only (and wsproto, in the module
imported at the first WebSocket only), no heavy stdlib at import time, the public names are
the ones meant, and the synchronous path needs no asyncio."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import summon.runtime.http as http_package

PACKAGE = Path(http_package.__file__).parent
# Heavy at import time (json pulls re and enum; typing ~9 ms): never at a module's top level.
HEAVY = {"typing", "json", "re", "enum", "inspect", "dataclasses", "urllib", "email", "logging"}


def top_level_imports(source: str) -> set[str]:
    """Modules a file imports when it is imported: not in functions, not under TYPE_CHECKING."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # runs when called, not at import
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit(
                        [n for n in inner if isinstance(n, ast.stmt)]
                        + [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                    )

    visit(ast.parse(source).body)
    return names


def test_the_scan_sees_imports_at_import_time_only() -> None:
    source = (
        "import a\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n    import typing\n"
        "try:\n    import b\nexcept ImportError:\n    import c\n"
        "def f():\n    import d\n"
    )
    assert top_level_imports(source) == {"a", "b", "c"}
    assert "h11" in top_level_imports((PACKAGE / "protocol.py").read_text())


def test_every_module_imports_only_the_stdlib_h11_and_summon_and_nothing_heavy() -> None:
    for source in sorted(PACKAGE.glob("*.py")):
        imports = top_level_imports(source.read_text())
        allowed = {"h11", "summon", "__future__"}
        if source.name == "websocket.py":
            allowed.add("wsproto")  # imported at the first upgrade only (below)
        for name in imports:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in allowed, f"{source.name} imports {name}"
            assert top not in HEAVY, f"{source.name} imports {name} at import time"
            assert name != "summon.runtime.http.websocket", (
                f"{source.name} imports the WebSocket (and wsproto, ~15 ms) at import time"
            )


def test_the_package_itself_imports_nothing() -> None:
    """Importing summon.runtime.http costs nothing: each user imports the module it needs."""
    code = (
        "import sys; before = set(sys.modules); import summon.runtime.http\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    src = str(PACKAGE.parent.parent.parent)
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src},
        check=True,
    )
    assert out.stdout.split() == ["summon", "summon.runtime", "summon.runtime.http"]


def test_the_synchronous_wsgi_path_runs_without_asyncio_or_threads() -> None:
    code = (
        "import sys\n"
        "from summon.runtime.http.exchange import respond_wsgi\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
        "out = respond_wsgi(app, b'GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n')\n"
        "assert out.startswith(b'HTTP/1.1 200 OK') and out.endswith(b'ok'), out\n"
        "print(' '.join(m for m in ('asyncio', 'threading', 'concurrent') if m in sys.modules))\n"
    )
    h11_dir = Path(__import__("h11").__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{PACKAGE.parents[2]}:{h11_dir}"},
    )
    assert result.stdout.strip() == ""
