"""The app bundle: the image's files a tab needs, as one zip the page unpacks at /.

Paths are the image's own, so the image's runtime finds everything where app.json says:
/etc/summon/app.json; every folder of the app's sys.path (/app, and /usr/lib/summon/site
for the vendored packages), without __pycache__ (Pyodide compiles the sources, and a .pyc
beside its source is checked against a modification time the unpacking changes) and without
native extensions (Linux ELF files: refusals.native_extensions);
each KV_RO data folder (/data/<name>); the image's summon runtime (/usr/lib/summon/summon,
as the image has it: the builder kept what the app's entry needs, error paths included); and
the in-page package (summon_browser, from this summon, as source).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from summon.errors import UserError
from summon.targets.browser.archive import write_zip
from summon.targets.browser.refusals import NATIVE_SUFFIXES

RUNTIME_DIR = "/usr/lib/summon"  # the image's runtime folder: summon/ and summon_browser/
IN_PAGE_NAME = "summon_browser"
IN_PAGE_SOURCE = Path(__file__).parent / "inpage"
APP_JSON = "etc/summon/app.json"
# A tab serves a WSGI or ASGI entry with the runtime's in-memory exchange (no sockets, no
# threads), which images keep for such entries. The bundle holds only the image's own code:
# an image built without it is refused, never patched with this summon's copy.
EXCHANGE = Path("runtime") / "http" / "exchange.py"


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.relative_to(folder).parts:
            if path.name.endswith(NATIVE_SUFFIXES):
                continue  # compiled for Linux: no use in WebAssembly (refusals.native_extensions)
            yield path


def bundle_entries(
    rootfs: Path, app: dict[str, Any], for_trace: bool = False
) -> Iterator[tuple[str, Path]]:
    """(archive name, host file) of everything the bundle holds, in a stable order.

    for_trace: the bundle the export's trace runs, which adds the in-page trace module.
    """
    yield APP_JSON, rootfs / APP_JSON
    seen = {APP_JSON}
    folders = [*(app.get("path") or []), *(app.get("data") or {}).values()]
    for image_path in folders:
        folder = rootfs / str(image_path).lstrip("/")
        if not folder.is_dir():
            continue
        for path in _files(folder):
            name = str(path.relative_to(rootfs))
            if name not in seen:
                seen.add(name)
                yield name, path
    runtime = rootfs / RUNTIME_DIR.lstrip("/") / "summon"
    for path in _files(runtime):
        rel = path.relative_to(runtime.parent)
        if path.suffix not in (".py", ".pyc"):
            continue
        yield f"{RUNTIME_DIR.lstrip('/')}/{rel}", path
    # A WSGI/ASGI entry is served through the exchange in a tab; an entry function that
    # runs the HTTP server itself (examples/todo) is served through the tab's Stack.
    entry = app.get("entry")
    by_exchange = isinstance(entry, dict) and entry.get("kind") in ("wsgi", "asgi")
    served = runtime / EXCHANGE.parent
    if by_exchange and served.is_dir() and not any(served.glob("exchange.py*")):
        raise UserError(
            "the image has the runtime's HTTP server but not its socketless exchange, which a "
            "tab serves with: it was built by an older summon; rebuild it (summon build)"
        )
    for path in sorted(IN_PAGE_SOURCE.glob("*.py")):
        if not for_trace and path.name == "trace.py":
            continue  # the export's trace only: a tab never runs it
        yield f"{RUNTIME_DIR.lstrip('/')}/{IN_PAGE_NAME}/{path.name}", path


def write_bundle(
    rootfs: Path, app: dict[str, Any], dest: Path, for_trace: bool = False
) -> list[str]:
    """Write the bundle to dest; the archive names written."""
    entries = list(bundle_entries(rootfs, app, for_trace))
    write_zip(dest, ((name, path.read_bytes()) for name, path in entries))
    return [name for name, _ in entries]
