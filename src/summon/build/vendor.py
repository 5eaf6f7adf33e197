"""Vendoring: install an app's requirements for the image's interpreter into a folder of its own."""

from __future__ import annotations

import csv
import errno
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from typing import Any

from summon import paths
from summon.build import sdists
from summon.build.python import Interpreter
from summon.errors import BuildError

PIP_TIMEOUT = 600.0
MAX_SDISTS = 20  # requirements built from source distributions in one install


@dataclass(frozen=True)
class Package:
    """One installed distribution, as its .dist-info describes it."""

    name: str
    version: str
    top_level: tuple[str, ...]  # import names it provides: "h11", "dns"
    files: tuple[PurePosixPath, ...]  # relative to the vendor folder, from RECORD
    size: int  # bytes of those files on disk
    pure: bool  # Root-Is-Purelib: no compiled code, any platform
    license: str = ""  # as the metadata states it (License-Expression, License, classifiers)
    license_files: tuple[PurePosixPath, ...] = ()  # the licence texts it ships (in the image)

    def extension_files(self, dest: Path) -> list[Path]:
        """The compiled modules (.so) it installed, for the shared-library closure."""
        return [dest / f for f in self.files if f.suffix == ".so"]


# Runs the host's pip under another interpreter: its folder first on sys.path (-S: no site).
_PIP_UNDER = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from pip._internal.cli.main import main; sys.exit(main())"
)


def _pip(interp: Interpreter) -> list[str]:
    """How to start pip for interp. pip evaluates requirement markers for the interpreter it
    runs under, whatever --python-version says: built on a host Python 3.11.7, a 3.11.2
    image lacked redis's `async-timeout; python_full_version < "3.11.3"`, and the build
    failed (fakeredis imports redis). So where the versions differ, the host's pip runs
    under the image's interpreter, which the build has run already (python.py's probe)."""
    here = [sys.executable, "-m", "pip"]
    if tuple(interp.version_tuple) == tuple(sys.version_info[:3]):
        return here
    spec = importlib.util.find_spec("pip")
    if spec is None or spec.origin is None:
        return here
    return [str(interp.executable), "-S", "-c", _PIP_UNDER, str(Path(spec.origin).parent.parent)]


def pip_command(
    requirements: Sequence[str],
    interp: Interpreter,
    dest: Path,
    no_deps: bool = False,
    find_links: Path | None = None,
) -> list[str]:
    """The pip invocation that installs requirements for interp (not for the host);
    no_deps: the requirements alone, without what they depend on; find_links: a folder of
    wheels built from source distributions (sdists.py), looked in too."""
    cmd = [
        *_pip(interp),
        "install",
        "--target",
        str(dest),
        "--no-compile",
        # Building an sdist would compile for the host; only wheels can target another ABI.
        "--only-binary=:all:",
        "--python-version",
        interp.xy,
        "--implementation",
        "cp",
        "--abi",
        interp.abi,
        "--disable-pip-version-check",
        "--no-input",
        "--no-warn-script-location",
        "--cache-dir",
        str(paths.cache_dir() / "pip"),
    ]
    for tag in interp.platform_tags:
        cmd += ["--platform", tag]
    if no_deps:
        cmd.append("--no-deps")
    if find_links is not None:
        cmd += ["--find-links", str(find_links)]
    cmd.append("--")
    cmd += list(requirements)
    return cmd


def vendor(
    requirements: Sequence[str],
    interp: Interpreter,
    dest: Path,
    no_deps: bool = False,
    say: Callable[[str], None] | None = None,
) -> list[Package]:
    """Install requirements into dest (which must not exist yet) and describe what came in
    (no_deps: without their dependencies). A requirement that publishes no wheel is built
    into one from its source distribution when that holds no compiled code (sdists.py, said
    with say).

    The install goes to a temporary folder beside dest and is renamed into place, so a
    failed install leaves nothing behind.
    """
    if not requirements:
        return []
    if dest.exists() and any(dest.iterdir()):
        raise BuildError(f"vendor folder {dest} is not empty; remove it and build again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; it becomes an ordinary folder
    try:
        env = dict(os.environ)
        # The host's own site must not satisfy anything: --target installs everything.
        env.pop("PYTHONPATH", None)
        env["PIP_ROOT_USER_ACTION"] = "ignore"
        with tempfile.TemporaryDirectory(prefix="summon-wheels-") as house_name:
            house = Path(house_name)
            built: list[str] = []
            while True:
                links = house if built else None
                cmd = pip_command(requirements, interp, staging, no_deps, links)
                output = sdists.run_pip(cmd, env, PIP_TIMEOUT, _SLOW)
                if output is None:
                    break
                if (full := _disk_failure(output)) is not None:
                    raise full  # said as the host's failure, naming the folder (cli/main.py)
                missing = sdists.missing_requirement(output)
                if missing is not None:
                    # Named as the manifest writes it, not as pip re-orders it.
                    named = [r for r in requirements if _req_name(r) == _req_name(missing)]
                    other = sdists.other_python(
                        named[0] if named else missing, output, interp.version
                    )
                    if other is not None:
                        raise BuildError(other)
                if missing is None or missing in built or len(built) >= MAX_SDISTS:
                    raise BuildError(_failure_line(requirements, output))
                if say is not None:
                    say(f"building a wheel of {missing} from its source distribution (no wheel)")
                if sdists.build_wheel(missing, house, env) is None:
                    raise BuildError(_failure_line(requirements, output))
                built.append(missing)
        packages = read_packages(staging)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
        return packages
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_SLOW = (
    f"pip did not finish installing the requirements within {PIP_TIMEOUT:.0f} s; "
    "check the network or the package index"
)


# pip's account of a write that failed ("[Errno 28] No space left on device: 'from' -> 'to'"),
# which it ends with "Exception:" or a list of every file it could not copy.
_DISK_ERROR = re.compile(
    rf"\[Errno ({errno.ENOSPC}|{errno.EDQUOT}|{errno.EROFS})\] "
    r"[^'\n]*?'([^'\n]+)'(?: -> '([^'\n]+)')?"
)


def _disk_failure(output: str) -> OSError | None:
    """The OSError of a full or read-only disk pip met, naming the file it wrote, if that is
    why it failed: its line was "requirement 'x' could not be installed: Exception:"."""
    found = _DISK_ERROR.search(output)
    if found is None:
        return None
    number = int(found.group(1))
    return OSError(number, os.strerror(number), found.group(3) or found.group(2))


def _failure_line(requirements: Sequence[str], output: str) -> str:
    errors = [
        line.removeprefix("ERROR:").strip()
        for line in output.splitlines()
        if line.startswith("ERROR:")
    ]
    # pip ends with its conclusion ("No matching distribution found for x"); the lines
    # before it explain, but the last one is what the user needs.
    reason = errors[-1] if errors else _last_line(output) or "pip failed"
    named = [r for r in requirements if _req_name(r) and _req_name(r) in _norm(reason)]
    which = named or list(requirements)
    if len(which) == 1:
        return f"requirement {which[0]!r} could not be installed: {reason}"
    listed = ", ".join(repr(r) for r in which)
    return f"requirements {listed} could not be installed: {reason}"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _req_name(requirement: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return _norm(m.group(1)) if m else ""


def _norm(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def read_packages(site: Path) -> list[Package]:
    """Every distribution installed in site, from its .dist-info, sorted by name."""
    out = [read_dist_info(d) for d in sorted(site.glob("*.dist-info")) if d.is_dir()]
    return sorted(out, key=lambda p: _norm(p.name))


def read_dist_info(info: Path) -> Package:
    site = info.parent
    try:
        meta = HeaderParser().parsestr((info / "METADATA").read_text(errors="replace"))
        record = (info / "RECORD").read_text(errors="replace")
    except OSError as e:
        raise BuildError(
            f"{info} is incomplete ({e.strerror}); remove {site} and build again"
        ) from None
    # RECORD may list scripts outside the folder ("../../bin/x"); they are not the package's.
    files = tuple(
        PurePosixPath(row[0])
        for row in csv.reader(record.splitlines())
        if row and row[0] and not row[0].startswith(("../", "/"))
    )
    top_file = info / "top_level.txt"
    if top_file.is_file():
        top = tuple(sorted({t.strip() for t in top_file.read_text().splitlines() if t.strip()}))
    else:
        top = _top_level_from_files(files, info.name)
    size = 0
    for f in files:
        try:
            size += (site / f).stat().st_size
        except OSError:
            continue
    wheel = info / "WHEEL"
    pure = True
    if wheel.is_file():
        headers = HeaderParser().parsestr(wheel.read_text(errors="replace"))
        pure = str(headers.get("Root-Is-Purelib", "true")).strip().lower() == "true"
    return Package(
        name=str(meta.get("Name", info.name.split("-")[0])),
        version=str(meta.get("Version", "")),
        top_level=top,
        files=files,
        size=size,
        pure=pure,
        license=_license(meta),
        license_files=tuple(f for f in files if f.parts[0] == info.name and _is_licence(f.name)),
    )


def _license(meta: Any) -> str:
    """The licence a distribution declares: its SPDX expression, its License field (first
    line), or the licence classifiers."""
    for field in ("License-Expression", "License"):
        value = str(meta.get(field) or "").strip()
        if value and value.upper() != "UNKNOWN":
            return value.splitlines()[0][:200]
    classifiers = [
        str(c).rpartition(" :: ")[2]
        for c in meta.get_all("Classifier") or []
        if str(c).startswith("License ::")
    ]
    return ", ".join(classifiers)


def _is_licence(name: str) -> bool:
    stem = name.upper().split(".")[0]
    return stem in ("LICENSE", "LICENCE", "COPYING", "NOTICE") or stem.startswith(
        ("LICENSE", "LICENCE", "COPYING")
    )


def _top_level_from_files(files: Sequence[PurePosixPath], info_name: str) -> tuple[str, ...]:
    names: set[str] = set()
    for f in files:
        first = f.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "bin", "__pycache__"):
            continue
        if len(f.parts) == 1:
            if f.suffix == ".py":
                names.add(f.stem)
            elif f.suffix == ".so":
                names.add(f.name.split(".")[0])
        elif first.isidentifier():
            names.add(first)
    return tuple(sorted(names))
