"""The image's own files, checked against the closure before the image is written.

Every module of the closure must be found among the files actually put in the root
filesystem, where the image's interpreter will look for it (the same search as resolve.py,
run over the image's file list instead of the host's folders). This catches a module the
assembly dropped or placed wrong: the image and the closure never disagree about which files
exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from summon.build.assemble import APP_DIR, RUNTIME_ROOT, SITE_DIR
from summon.build.closure import Closure
from summon.build.graph import (
    REASON_ENTRY,
    REASON_PROBE,
    REASON_RUNTIME,
    REASON_STARTUP,
    REASON_TRACE,
    SCRIPT,
    Edge,
)
from summon.build.python import Interpreter
from summon.build.resolve import Resolver, SearchEntry
from summon.build.rootfs import Rootfs
from summon.errors import BuildError

# What the trace saw load: found by the interpreter itself, whatever its search then was.
_TRACED = frozenset((REASON_STARTUP, REASON_RUNTIME, REASON_ENTRY, REASON_PROBE, REASON_TRACE))


def missing_line(module: str, importer: str, line: int) -> str:
    """The one line a build fails with when a module is not in the image."""
    return (
        f"module {module} (imported by {importer}, line {line}) is not in the image; "
        "add it to include, or report a closure bug"
    )


def image_resolver(fs: Rootfs, interp: Interpreter) -> Resolver:
    """A Resolver over the image's files, searching the image's sys.path."""
    files = {p for p, n in fs.nodes.items() if n.kind == "file"}
    dirs = {p for p, n in fs.nodes.items() if n.kind == "dir"}
    app, site, runtime = Path(APP_DIR), Path(SITE_DIR), Path(RUNTIME_ROOT)
    return Resolver(
        [
            SearchEntry(app, "app"),
            SearchEntry(site, "site"),
            SearchEntry(runtime, "runtime", only="summon"),
            SearchEntry(interp.stdlib, "stdlib"),
            SearchEntry(interp.dynload, "stdlib"),
        ],
        builtin=interp.builtin_modules,
        frozen=interp.frozen_modules,
        ext_suffixes=interp.ext_suffixes,
        stdlib=interp.stdlib,
        roots=[(app, "app"), (site, "site"), (runtime, "runtime"), (interp.stdlib, "stdlib")],
        is_file=lambda p: str(p) in files,
        is_dir=lambda p: str(p) in dirs,
    )


def check_image(
    fs: Rootfs, closure: Closure, interp: Interpreter, module_paths: Mapping[str, str]
) -> int:
    """Raise BuildError (one line) for the first module the image's files do not provide.

    Returns how many modules were checked.
    """
    resolver = image_resolver(fs, interp)
    files = {p for p, n in fs.nodes.items() if n.kind == "file"}
    checked = 0
    for name, info in sorted(closure.modules.items()):
        if info.origin is None or info.alias_of or info.kind in ("builtin", "frozen", "dynamic"):
            continue
        checked += 1
        found = resolver.find(name)
        expected = module_paths.get(name)
        if found is not None and (found.origin is None or str(found.origin) == expected):
            continue
        if found is None and expected in files and info.reason in _TRACED:
            # The trace loaded it from this very file through a path or finder the app's
            # code sets up, which the image runs too: pkg_resources puts setuptools/_vendor
            # on sys.path (backports.tarfile), setuptools serves distutils from its own copy.
            continue
        if found is None:
            where = "not found"
        else:
            where = f"found as {found.origin}, expected {expected}"
        raise BuildError(_line(name, info.via, info.reason) + f" ({where})")
    return checked


def _line(name: str, via: Edge | None, reason: str) -> str:
    if via is None:
        return missing_line(name, f"nothing: it is in as {reason}", 0)
    importer = "the entry script" if via.importer == SCRIPT else via.importer
    return missing_line(name, importer, via.line)
