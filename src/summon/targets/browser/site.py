"""The site builder: an image made into a static site that runs the app in a browser tab.

    index.html            the page shell (loading progress, then the app's page in a frame)
    _summon-sw.js         the service worker: the app's Stack device (at the root, for scope)
    _summon/shell.js, shell.css, worker.js
    _summon/site.json     what the worker needs: Pyodide version, volumes, runtime folder
    _summon/app.zip       the app bundle (bundle.py)
    _summon/pyodide/      Pyodide's core: pyodide.js, pyodide.asm.js, pyodide.asm.wasm as
                          pinned; python_stdlib.zip pruned to the app's closure (closure.py);
                          pyodide-lock.json without packages

Everything under _summon/ is summon's; every other address in the scope is the app's. The
service worker's copy of the file list (with the site's version, a digest of every file)
is written into _summon-sw.js itself, so a new export is a new worker and a fresh cache.
Written to a temporary folder beside the destination and renamed: never half a site.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from summon.errors import UserError
from summon.targets.browser import pyodide, refusals
from summon.targets.browser.bundle import RUNTIME_DIR, write_bundle
from summon.targets.browser.closure import (
    AppFailsInPyodide,
    StdlibClosure,
    prune_lock,
    prune_stdlib,
    run_trace,
    stdlib_closure,
)

if TYPE_CHECKING:
    from summon.store.image import Image

Step = Callable[[str], None]

ASSETS = Path(__file__).parent / "site"
RESERVED = "_summon"
SERVICE_WORKER = "_summon-sw.js"
SITE_PLACEHOLDER = '/*SUMMON_SITE*/ { version: "dev", name: "app", files: [] } /*SUMMON_SITE*/'
COPIED_CORE = ("pyodide.js", "pyodide.asm.js", "pyodide.asm.wasm")
# What changes a site besides the image: these files and Pyodide's version (for the cache).
BUILDER_FILES = (
    *sorted((Path(__file__).parent / "site").glob("*")),
    *sorted((Path(__file__).parent / "inpage").glob("*.py")),
    *sorted((Path(__file__).parent / "node").glob("*")),
    *sorted(Path(__file__).parent.glob("*.py")),
)


@dataclass
class Site:
    """A written site: where, its files (site path -> bytes), and what the pruning kept."""

    path: Path
    files: dict[str, int] = field(default_factory=dict)
    version: str = ""
    stdlib: StdlibClosure | None = None
    app_status: int = 0  # the app's answer to GET / in the trace

    @property
    def size(self) -> int:
        return sum(self.files.values())


def builder_fingerprint() -> str:
    """A digest of what makes a site from an image (summon's site code, Pyodide's version)."""
    digest = hashlib.sha256(pyodide.VERSION.encode())
    for path in BUILDER_FILES:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_site(image: Image, dest: Path, step: Step) -> Site:
    """Write the site of `image` to `dest` (which must not exist)."""
    core = pyodide.find()
    rootfs = image.rootfs()
    app = image.app_config()
    bom = image.bom
    candidate = refusals.Candidate(rootfs, app, bom)
    refusals.check(candidate)
    natives = refusals.native_extensions(candidate)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        site = _write(image, rootfs, app, bom, core, tmp, step, natives)
        _fsync_tree(tmp)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            raise UserError(f"-o {dest}: cannot write the site there: {e.strerror}") from None
        site.path = dest
        return site
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(
    image: Image,
    rootfs: Path,
    app: dict[str, Any],
    bom: dict[str, Any],
    core: Path,
    out: Path,
    step: Step,
    natives: list[refusals.NativeExtension],
) -> Site:
    reserved = out / RESERVED
    (reserved / "pyodide").mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="summon-trace-") as work:
        step(f"tracing {app.get('name') or 'the app'} in Pyodide {pyodide.VERSION} under Node")
        full_bundle = Path(work) / "trace.zip"
        write_bundle(rootfs, app, full_bundle, for_trace=True)
        try:
            trace = run_trace(core, full_bundle, RUNTIME_DIR)
        except AppFailsInPyodide as e:
            why = refusals.refused_for_native(natives, str(e))
            if why is None:
                raise
            raise refusals.Unexportable(
                f"cannot run {app.get('name') or 'the app'} in a browser: {why}"
            ) from None
    if natives:
        modules = ", ".join(n.module for n in natives[:3]) + (", ..." if len(natives) > 3 else "")
        step(
            f"left out {len(natives)} native extension(s) Pyodide cannot load ({modules}): the "
            "app started without them (site.json's native_left_out)"
        )
    if trace.python.rpartition(".")[0] != pyodide.PYTHON.rpartition(".")[0]:
        raise UserError(f"Pyodide runs CPython {trace.python}, not {pyodide.PYTHON}: reinstall it")
    with zipfile.ZipFile(core / "python_stdlib.zip") as archive:
        closure = stdlib_closure(trace, bom, archive.namelist())
    step(f"pruning Pyodide's stdlib to {len(closure.modules)} modules")
    prune_stdlib(core / "python_stdlib.zip", closure, reserved / "pyodide" / "python_stdlib.zip")
    prune_lock(core / "pyodide-lock.json", reserved / "pyodide" / "pyodide-lock.json")
    for name in COPIED_CORE:
        shutil.copyfile(core / name, reserved / "pyodide" / name)
    step("writing the app bundle and the page")
    write_bundle(rootfs, app, reserved / "app.zip")
    name = str(app.get("name") or "app")
    for asset in ("shell.js", "shell.css", "worker.js"):
        shutil.copyfile(ASSETS / asset, reserved / asset)
    shell = (ASSETS / "index.html").read_text().replace("{{name}}", html.escape(name))
    (out / "index.html").write_text(shell)
    site_json = {
        "name": name,
        "image": image.desc.digest,
        "pyodide": pyodide.VERSION,
        "python": trace.python,
        "runtime": RUNTIME_DIR,
        "volumes": list(app.get("volumes") or []),
        "stdlib_modules": len(closure.modules),
        "left_out": closure.left_out,
        "native_left_out": [n.file for n in natives],  # the app started without them
    }
    (reserved / "site.json").write_text(json.dumps(site_json, indent=1) + "\n")
    files = {
        str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()
    }
    version = _version(out, files)
    _write_service_worker(out, name, version, files)
    files[SERVICE_WORKER] = (out / SERVICE_WORKER).stat().st_size
    return Site(out, files, version, closure, trace.status)


def _version(out: Path, files: dict[str, int]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{hashlib.sha256((out / rel).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def _write_service_worker(out: Path, name: str, version: str, files: dict[str, int]) -> None:
    template = (ASSETS / "sw.js").read_text()
    if SITE_PLACEHOLDER not in template:
        raise AssertionError("sw.js lost its SUMMON_SITE placeholder")
    listing = [{"path": rel, "size": size} for rel, size in files.items()]
    doc = json.dumps({"version": version, "name": name, "files": listing}, separators=(",", ":"))
    (out / SERVICE_WORKER).write_text(template.replace(SITE_PLACEHOLDER, doc))


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
