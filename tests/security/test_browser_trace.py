"""The browser export's trace against a hostile image: it runs the image's code under Node on
this host, so Node's permission model must hold it (closure.run_trace's flags).

The app tries, at import, to start a process, to write a file and to read one outside what
the trace may read, through Pyodide's bridge to Node (js.process); then, running, to
connect to a port listening on the host's loopback. The first three must fail with
ERR_ACCESS_DENIED (the rule: --experimental-permission with only --allow-fs-read of the
Pyodide folder, the bundle and trace.js), the connection with ENETUNREACH (the rule: the
trace's own empty network namespace, closure.no_network). The control runs the same app
without either, where each must work, so a pass shows the rules stopped it, not this machine.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from summon.targets.browser import closure, pyodide, refusals
from summon.targets.browser.archive import write_zip
from summon.targets.browser.bundle import IN_PAGE_SOURCE

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

SRC = Path(__file__).resolve().parents[2] / "src" / "summon"
# The runtime the image would hold, from this checkout (the boot imports config, injection,
# init, hints and posix_devices; the rest is not reached).
RUNTIME = [
    "__init__.py",
    *(f"devices/{p.name}" for p in (SRC / "devices").glob("*.py")),
    *(f"runtime/{p.name}" for p in (SRC / "runtime").glob("*.py")),
]

HOSTILE = """
import js
from pyodide.code import run_js

def attempt(what, action):
    try:
        action()
        return f"{what}=done"
    except Exception as e:
        code = getattr(getattr(e, "js_error", None), "code", None)  # a Node error's code
        return f"{what}={code or type(e).__name__}"

node = js.process.mainModule.require
text = js.JSON.parse('{"encoding": "utf8"}')  # a string back: Pyodide takes no Node Buffer
results = [
    attempt("spawn", lambda: node("child_process").execSync("touch MARKER_SPAWN", text)),
    attempt("write", lambda: node("fs").writeFileSync("MARKER_WRITE", "x")),
    attempt("read", lambda: node("fs").readFileSync("SECRET", "utf8")),
]
connect = run_js(\"\"\"(port) => new Promise((resolve) => {
    const s = process.mainModule.require("net").connect(port, "127.0.0.1");
    s.on("connect", () => { s.destroy(); resolve("done"); });
    s.on("error", (e) => resolve(e.code));
})\"\"\")

async def main():
    results.append("connect=" + await connect(PORT))
    raise RuntimeError("results: " + " ".join(results))
"""


def hostile_bundle(tmp: Path, port: int) -> Path:
    source = (
        HOSTILE.replace("MARKER_SPAWN", str(tmp / "spawned"))
        .replace("MARKER_WRITE", str(tmp / "written"))
        .replace("SECRET", str(tmp / "secret" / "key"))
        .replace("PORT", str(port))
    )
    (tmp / "secret").mkdir()
    (tmp / "secret" / "key").write_text("not for the trace")
    return app_bundle(tmp, "hostile", source)


def app_bundle(tmp: Path, module: str, source: str) -> Path:
    """A bundle of an app whose entry is `module`'s main(), with this checkout's runtime."""
    app = {
        "name": module,
        "entry": {"kind": "function", "module": module, "function": "main"},
        "path": ["/app"],
        "ports": ["80/tcp"],
    }
    entries = [
        ("etc/summon/app.json", json.dumps(app).encode()),
        (f"app/{module}.py", source.encode()),
    ]
    entries += [(f"usr/lib/summon/summon/{name}", (SRC / name).read_bytes()) for name in RUNTIME]
    entries += [
        (f"usr/lib/summon/summon_browser/{p.name}", p.read_bytes())
        for p in sorted(IN_PAGE_SOURCE.glob("*.py"))
    ]
    bundle = tmp / "bundle" / f"{module}.zip"
    bundle.parent.mkdir()
    write_zip(bundle, entries)
    return bundle


def outcomes(error: str) -> dict[str, str]:
    found = re.search(r"results: (.*)$", error)
    assert found, error
    return dict(item.split("=") for item in found.group(1).split())


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that accepts: what the app tries to reach."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


@pytest.fixture
def core() -> Path:
    try:
        return pyodide.find()
    except pyodide.PyodideMissing as e:
        pytest.skip(str(e))


def test_the_trace_cannot_spawn_write_read_or_connect(
    core: Path, tmp_path: Path, listener: int
) -> None:
    if closure.node_major(str(shutil.which("node"))) < 20:
        pytest.skip("Node before 20 has no permission model: the trace runs without it")
    if not closure.no_network():
        pytest.skip("no network namespace can be made here (unshare)")
    bundle = hostile_bundle(tmp_path, listener)
    with pytest.raises(closure.AppFailsInPyodide) as refused:
        closure.run_trace(core, bundle, "/usr/lib/summon")
    assert outcomes(str(refused.value)) == {
        "spawn": "ERR_ACCESS_DENIED",  # the permission model: no child processes
        "write": "ERR_ACCESS_DENIED",  # no writes at all
        "read": "ERR_ACCESS_DENIED",  # reads of the Pyodide folder, bundle, trace.js only
        "connect": "ENETUNREACH",  # a network namespace of its own, with nothing in it
    }
    assert not (tmp_path / "spawned").exists()
    assert not (tmp_path / "written").exists()


def test_control_without_the_permission_model_each_attempt_works(
    core: Path, tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closure, "node_major", lambda node: 18)  # as on Debian's Node 18
    monkeypatch.setattr(closure, "no_network", lambda: [])
    bundle = hostile_bundle(tmp_path, listener)
    with pytest.raises(closure.AppFailsInPyodide) as refused:
        closure.run_trace(core, bundle, "/usr/lib/summon")
    assert outcomes(str(refused.value)) == {
        "spawn": "done",
        "write": "done",
        "read": "done",
        "connect": "done",
    }
    assert (tmp_path / "spawned").exists() and (tmp_path / "written").exists()


def test_a_module_pyodide_ships_apart_is_named_with_the_apps_line(
    core: Path, tmp_path: Path
) -> None:
    """Not a rule of the sandbox's, but the trace's own error line: Pyodide says over several
    lines that sqlite3 is a package of its own; the export said only the last, its URL."""
    bundle = app_bundle(
        tmp_path, "notes", "import os\nimport sqlite3\n\nasync def main():\n    pass\n"
    )
    with pytest.raises(closure.AppFailsInPyodide) as refused:
        closure.run_trace(core, bundle, "/usr/lib/summon")
    message = str(refused.value)
    assert "\n" not in message
    assert "importing the entry module 'notes': /app/notes.py:2: ModuleNotFoundError: " in message
    assert "The module 'sqlite3' is unvendored from the Python standard library" in message
    assert "hold Pyodide's core only" in message and "pyodide.org" not in message
    assert message.endswith("or for a tab keep its data in files on a volume")  # what to do


ANSWERS = """
from summon.devices import Stack

async def main(stack: Stack) -> None:
    async def answer(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        await writer.drain()
        writer.close()
    server = await stack.start_server(answer, 80)
    await server.serve_forever()
"""


def test_a_native_module_the_app_cannot_start_without_is_named_with_its_package(
    core: Path, tmp_path: Path
) -> None:
    """Not the sandbox's either: the export leaves native extensions out of the bundle and
    refuses only an app whose start fails importing one; Pyodide's own error line is matched."""
    native = refusals.NativeExtension(
        "speedy 1.0", "/app/_speedy.cpython-311-x86_64-linux-gnu.so", "_speedy"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fallback = "try:\n    import _speedy\nexcept ImportError:\n    _speedy = None\n"
    bundle = app_bundle(tmp_path / "a", "fast", fallback + ANSWERS)
    closure.run_trace(core, bundle, "/usr/lib/summon")  # starts without it: not refused
    bundle = app_bundle(tmp_path / "b", "fast", "import _speedy\n" + ANSWERS)
    with pytest.raises(closure.AppFailsInPyodide) as failed:
        closure.run_trace(core, bundle, "/usr/lib/summon")
    why = refusals.refused_for_native([native], str(failed.value))
    assert why is not None and why.startswith("package speedy 1.0 has a native extension")
