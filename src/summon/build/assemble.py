"""The image's module files: which host file goes where, byte-compiled by the image's interpreter.

- stdlib and summon's runtime: the closure's modules, as sourceless .pyc in place of .py
  (the interpreter imports them directly; the sources would double their size);
- vendored distributions: whole, as installed (but their test folders and the .libs folders
  of shared libraries, which the library closure places), each .py with an unchecked-hash
  .pyc beside it in __pycache__, so that inspect.getsource, tracebacks and linecache behave
  as on the host;
- the app's own code: every .py of the app folder, sources with .pyc beside, likewise.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import summon
from summon.build.closure import Closure, app_files, app_sources
from summon.build.graph import TEST_FOLDERS
from summon.build.python import Interpreter
from summon.build.resolve import module_name
from summon.build.rootfs import Rootfs
from summon.build.vendor import Package
from summon.errors import BuildError
from summon.manifest import Manifest

RUNTIME_ROOT = "/usr/lib/summon"
SITE_DIR = RUNTIME_ROOT + "/site"
APP_DIR = "/app"
_WRITE_FAILED = 3  # _compile.py's status for a .pyc it could not write (its WRITE_FAILED)


@dataclass(frozen=True)
class CompileJob:
    source: Path
    out: Path  # where the .pyc is written on the host
    shown: str  # the source's image path, for tracebacks
    image_path: str  # where the .pyc goes in the image
    group: str


def runtime_source() -> Path:
    """The folder holding the `summon` package whose runtime goes into images."""
    return Path(summon.__file__).resolve().parent.parent


def module_files(
    fs: Rootfs,
    m: Manifest,
    interp: Interpreter,
    closure: Closure,
    packages: Sequence[Package],
    site: Path,
    pyc_dir: Path,
) -> tuple[list[CompileJob], dict[str, str]]:
    """Put every module of the closure, and the vendored distributions, into fs.

    Return the jobs that make the .pyc files, and each module's image path (its __file__).
    """
    image_roots = {"site": SITE_DIR, "runtime": RUNTIME_ROOT, "app": APP_DIR}
    cache_tag = f"cpython-{interp.version_info[0]}{interp.version_info[1]}"
    jobs: list[CompileJob] = []
    module_paths: dict[str, str] = {}

    def with_source(host: Path, image_path: str, group: str) -> None:
        """A source file and its unchecked-hash .pyc in __pycache__ beside it."""
        fs.add_file(image_path, host, group, 0o644)
        folder, _, file = image_path.rpartition("/")
        pyc = f"{folder}/__pycache__/{file[:-3]}.{cache_tag}.pyc"
        jobs.append(CompileJob(host, pyc_dir / pyc.lstrip("/"), image_path, pyc, group))

    for info in sorted(closure.modules.values(), key=lambda i: i.name):
        if info.origin is None:
            continue
        if info.relpath is None or info.root is None:
            raise BuildError(f"module {info.name} has no file the image could hold")
        host = Path(info.origin)
        # stdlib folders keep their host paths, so the interpreter finds them where it looks.
        image_root = image_roots.get(info.group, str(info.root))
        image_path = f"{image_root}/{info.relpath}"
        module_paths[info.name] = image_path
        if info.group in ("app", "site"):
            continue  # the app folder and the vendored distributions are added below
        if host.suffix == ".py":
            pyc = image_path[:-3] + ".pyc"
            module_paths[info.name] = pyc
            jobs.append(CompileJob(host, pyc_dir / pyc.lstrip("/"), image_path, pyc, info.group))
        else:
            fs.add_file(image_path, host, info.group, 0o755 if host.suffix == ".so" else 0o644)

    for rel, host in sorted(
        _site_files(closure, packages, site, m.exclude, interp.ext_suffixes).items()
    ):
        image_path = f"{SITE_DIR}/{rel}"
        if rel.suffix == ".py":
            with_source(host, image_path, "site")
        else:
            fs.add_file(image_path, host, "site", 0o755 if rel.suffix == ".so" else 0o644)

    boot = runtime_source() / "summon" / "runtime" / "boot.py"
    fs.add_file(RUNTIME_ROOT + "/boot.py", boot, "runtime", 0o644)

    # The app's own code: the same files the closure trace scanned, so an app module it saw
    # is never left out.
    for f, _name, _pkg in app_sources(m.app_dir, exclude=m.data):
        rel = PurePosixPath(f.relative_to(m.app_dir).as_posix())
        if not _excluded(rel, m.exclude, interp.ext_suffixes):
            with_source(f, f"{APP_DIR}/{rel}", "app")
    # And the files beside the code, as a distribution's ship whole: an app finds its
    # templates and static files relative to its modules (Flask's templates/, Django's).
    for f in app_files(m.app_dir, exclude=m.data):
        rel = PurePosixPath(f.relative_to(m.app_dir).as_posix())
        if f.suffix in (".py", ".pyc", ".pyo") or _excluded(rel, m.exclude, interp.ext_suffixes):
            continue
        extension = any(f.name.endswith(s) for s in interp.ext_suffixes)
        fs.add_file(f"{APP_DIR}/{rel}", f, "app", 0o755 if extension else 0o644)
    return jobs, module_paths


def _excluded(rel: PurePosixPath, exclude: Sequence[str], ext_suffixes: Sequence[str]) -> bool:
    """Whether a file under a search-path folder belongs to a module the manifest excludes
    (the module's own file, or anything in the folder of an excluded package)."""
    name = module_name(rel, ext_suffixes)
    for entry in exclude:
        parts = entry.split(".")
        if list(rel.parts[: len(parts)]) == parts and len(rel.parts) > len(parts):
            return True
        if name is not None and (name == entry or name.startswith(entry + ".")):
            return True
    return False


def _site_files(
    closure: Closure,
    packages: Sequence[Package],
    site: Path,
    exclude: Sequence[str] = (),
    ext_suffixes: Sequence[str] = (),
) -> dict[PurePosixPath, Path]:
    """Files of the vendored site folder that go in, by their path under it (those of
    excluded modules left out)."""
    needed = {
        m.origin.resolve(): m
        for m in closure.modules.values()
        if m.group == "site" and m.origin is not None
    }
    out: dict[PurePosixPath, Path] = {}
    owned: set[str] = set()  # top-level names some distribution's RECORD accounts for
    for pkg in packages:
        owned.update(pkg.top_level)
        for rel in pkg.files:
            host = site / rel
            if _wanted(rel) or host.resolve() in needed:
                if host.is_file():
                    out[rel] = host
    # Packages without a .dist-info (copied in by hand): the folders the closure uses.
    for info in closure.modules.values():
        if info.group != "site" or info.root is None or info.relpath is None:
            continue
        top = info.relpath.parts[0]
        if info.name.partition(".")[0] in owned:
            continue
        folder = info.root / top
        files = sorted(folder.rglob("*")) if folder.is_dir() else [info.root / top]
        for f in files:
            rel = PurePosixPath(f.relative_to(info.root).as_posix())
            if f.is_file() and (_wanted(rel) or f.resolve() in needed):
                out[rel] = f
    return {rel: f for rel, f in out.items() if not _excluded(rel, exclude, ext_suffixes)}


def _wanted(rel: PurePosixPath) -> bool:
    """Whether a file of a vendored distribution ships with it (the rest ships only when the
    closure needs it as a module)."""
    parts = rel.parts
    if "__pycache__" in parts or rel.suffix == ".pyc":
        return False  # compiled afresh by the image's interpreter
    if parts[0] in ("bin", "..") or parts[0].endswith((".libs", ".data")):
        # Scripts, and shared libraries the library closure puts on the loader's path.
        return False
    return not any(p in TEST_FOLDERS for p in parts[:-1])


def whole_stdlib(
    fs: Rootfs, interp: Interpreter, placed: set[str], pyc_dir: Path
) -> list[CompileJob]:
    """Every stdlib module and extension (what a generic image ships), beyond those placed."""
    jobs = []
    for f in sorted(interp.stdlib.rglob("*")):
        rel = f.relative_to(interp.stdlib)
        if not f.is_file() or "__pycache__" in rel.parts or rel.parts[0] in _NOT_STDLIB:
            continue
        image_path = f"{interp.stdlib}/{rel.as_posix()}"
        if f.suffix == ".py":
            pyc = image_path[:-3] + ".pyc"
            if pyc not in placed:
                jobs.append(CompileJob(f, pyc_dir / pyc.lstrip("/"), image_path, pyc, "stdlib"))
        elif f.suffix == ".so" and image_path not in fs.nodes:
            fs.add_file(image_path, f, "stdlib", 0o755)
    return jobs


_NOT_STDLIB = {"site-packages", "dist-packages", "config-3.11-x86_64-linux-gnu"}


def compile_jobs(fs: Rootfs, interp: Interpreter, jobs: list[CompileJob]) -> None:
    """Byte-compile with the image's interpreter (its magic number), then add the results."""
    if not jobs:
        return
    for job in jobs:
        job.out.parent.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("_compile.py")
    # Vendored code may hold files this interpreter cannot compile (examples for another
    # Python, templates named .py): they go in as sources only, as pip skips them too.
    payload = json.dumps([[str(j.source), str(j.out), j.shown, j.group != "site"] for j in jobs])
    # A fixed hash seed keeps set and frozenset constants in one order: same input, same bytes.
    env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run(
        [str(interp.executable), "-S", "-E", str(script)],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == _WRITE_FAILED and last.startswith("cannot write: "):
        # A full or read-only disk: the host's failure, which the caller says naming where.
        number, _, where = last.removeprefix("cannot write: ").partition(" ")
        raise OSError(int(number), os.strerror(int(number)), where)
    if proc.returncode != 0:
        raise BuildError(f"byte-compiling failed: {last}")
    for job in jobs:
        if job.group != "site" or job.out.is_file():
            fs.add_file(job.image_path, job.out, job.group, 0o644)
