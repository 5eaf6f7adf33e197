"""The pinned Pyodide: where its core files are, that they are the ones pinned, how to get them.

Pyodide is CPython compiled to WebAssembly; its npm package `pyodide` holds the core only
(pyodide.js, pyodide.asm.js, pyodide.asm.wasm, python_stdlib.zip, pyodide-lock.json). The
version is pinned to the one whose CPython matches the images' (3.11: Pyodide 0.25.1 is
CPython 3.11.3, and 3.11's bytecode is the same across its patch releases, so the image's
sourceless .pyc files load as they are).

Where: `$SUMMON_PYODIDE` if set, else `<summon cache>/pyodide/<version>/` (~/.cache/summon/
pyodide/0.25.1). A cache folder rather than one in the repository because an installed summon
has no repository, and these are files summon can fetch again (paths.cache_dir's meaning).
`python3 -m summon.targets.browser.pyodide install` (which scripts/setup.sh runs) gets the
tarball with npm's own client (`npm pack`), checks it against the pinned npm integrity, and
keeps only the core files; every use checks each file against its pinned SHA-256. Nothing is
downloaded at export or run time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from summon import paths
from summon.errors import TargetUnavailable

VERSION = "0.25.1"
PYTHON = "3.11.3"  # pyodide-lock.json info.python of this version
NPM_SPEC = f"pyodide@{VERSION}"
# `npm view pyodide@0.25.1 dist.integrity`: the tarball's SHA-512, as the registry signs it.
NPM_INTEGRITY = (
    "sha512-"
    "y0nJ/fLA3bxD2iZRzvVTbP2O+wp4Ewm2wThfV4HF0BytQ6hsoqTJFLNY4usLOcCVBrK8TTWqFqrmsVPzHe4rsw=="
)
# The core files, by SHA-256 (of the 0.25.1 tarball's package/ folder).
CORE_FILES = {
    "pyodide.js": "b9cb64a73cc4127eef7cdc75f0cd8307db9e90e93b66b1b6a789319511e1937c",
    "pyodide.asm.js": "512042dfdd406971c6fc920b6932e1a8eb5dd2ab3521aa89a020980e4a08bd4b",
    "pyodide.asm.wasm": "aa920641c032c3db42eb1fb018eec611dbef96f0fa4dbdfa6fe3cb1b335aed3c",
    "python_stdlib.zip": "52866039fa3097e549649b9a62ffae8a1125f01ace7b2d077f34e3cbaff8d0ca",
    "pyodide-lock.json": "6526dae570ab7db75019fe2c7ccc6b7b82765c56417a498a7b57e1aaebec39f5",
}
# Kept beside the core for provenance (name, version, license), not served.
EXTRA_FILES = ("package.json", "README.md")
INSTALL = "python3 -m summon.targets.browser.pyodide install (scripts/setup.sh runs it)"


class PyodideMissing(TargetUnavailable):
    """The pinned Pyodide is not installed, or a file of it is not the pinned one."""


def folder() -> Path:
    """Where the pinned Pyodide is (or is to be) installed."""
    override = os.environ.get("SUMMON_PYODIDE")
    if override:
        return Path(override)
    return paths.cache_dir() / "pyodide" / VERSION


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def find() -> Path:
    """The folder of the pinned Pyodide, every core file checked; PyodideMissing if not."""
    where = folder()
    check(where)
    return where


def check(where: Path) -> None:
    """Raise PyodideMissing unless every core file in `where` is the pinned one."""
    for name, expected in CORE_FILES.items():
        path = where / name
        if not path.is_file():
            raise PyodideMissing(
                f"Pyodide {VERSION} is not installed ({path} missing); run {INSTALL}"
            )
        if sha256(path) != expected:
            raise PyodideMissing(
                f"{path} is not Pyodide {VERSION}'s (SHA-256 differs from the pinned one); "
                f"remove {where} and run {INSTALL}"
            )


def install(dest: Path | None = None, npm: str = "npm") -> Path:
    """Fetch the pinned tarball with `npm pack`, check its integrity, keep the core files."""
    dest = dest or folder()
    try:
        check(dest)
        return dest  # there already
    except PyodideMissing:
        return _install(dest, npm)


def _install(dest: Path, npm: str) -> Path:
    if shutil.which(npm) is None:
        raise PyodideMissing(f"{npm} not found: apt-get install npm (it fetches {NPM_SPEC})")
    with tempfile.TemporaryDirectory(prefix="summon-pyodide-") as tmp:
        done = subprocess.run(
            [npm, "pack", NPM_SPEC, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            check=False,
        )
        tarballs = sorted(Path(tmp).glob("pyodide-*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            why = (done.stderr.strip().splitlines() or ["no tarball written"])[-1]
            raise PyodideMissing(f"npm pack {NPM_SPEC} failed: {why}")
        tarball = tarballs[0]
        algorithm, _, expected = NPM_INTEGRITY.partition("-")
        got = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if got != expected:
            raise PyodideMissing(
                f"{tarball.name}: integrity {algorithm}-{got} is not the pinned one"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=_parent(dest)))
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                for name in (*CORE_FILES, *EXTRA_FILES):
                    member = tar.getmember(f"package/{name}")
                    source = tar.extractfile(member)
                    if source is None:
                        raise PyodideMissing(f"{tarball.name}: package/{name} is not a file")
                    with source, open(staging / name, "wb") as out:
                        shutil.copyfileobj(source, out)
                        out.flush()
                        os.fsync(out.fileno())
            for name, expected_sha in CORE_FILES.items():
                if sha256(staging / name) != expected_sha:
                    raise PyodideMissing(f"{tarball.name}: {name} is not the pinned file")
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide it from other users
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _parent(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent


def main(argv: list[str]) -> int:
    """`python3 -m summon.targets.browser.pyodide install|path`."""
    if argv not in (["install"], ["path"]):
        print("usage: python3 -m summon.targets.browser.pyodide install|path", file=sys.stderr)
        return 2
    try:
        where = install() if argv == ["install"] else find()
    except PyodideMissing as e:
        print(f"summon: {e}", file=sys.stderr)
        return 2
    print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
