"""Requirements that publish no wheel: a pure-Python one is built into a wheel on the host.

Vendoring installs wheels only (`--only-binary=:all:`): a source distribution builds for the
host's interpreter, not the image's. But many pure-Python projects (pyramid_chameleon,
docopt, and other older ones) publish only an sdist, and pip then says "No matching
distribution found" of a project that `pip install` on the host installs. A wheel built from
such an sdist that is tagged `none-any` holds no compiled code, so it is the same for every
interpreter: it goes into a folder pip is pointed at (`--find-links`), and the install is
tried again. One whose wheel holds compiled code is refused, naming it.

Building an sdist runs its build backend (setup.py) on the host, as `pip install` of it
would; pip fetches the backend in an isolated environment of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from summon import paths
from summon.errors import BuildError

BUILD_TIMEOUT = 600.0
_MISSING = re.compile(r"No matching distribution found for (\S+)")


def run_pip(cmd: list[str], env: dict[str, str], timeout: float, slow: str) -> str | None:
    """Run pip, with no input; None when it succeeded, else what it said. BuildError(slow)
    when it takes over timeout seconds."""
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(slow) from None
    return None if proc.returncode == 0 else proc.stderr + proc.stdout


def missing_requirement(pip_output: str) -> str | None:
    """The requirement pip found no wheel of ("pyramid_chameleon", "foo-bar>=2"), if that
    is why it failed."""
    found = _MISSING.findall(pip_output)
    return found[-1] if found else None


def other_python(requirement: str, pip_output: str, python: str) -> str | None:
    """Why pip found no wheel of requirement, when it is that the versions it allows need
    another Python than the image's (`python`, "3.11.2"): wagtail start writes
    `Django>=6.1,<6.2`, whose wheels say Requires-Python >=3.12, and its source distribution
    says the same, so building one is no way out. None unless pip ignored versions for their
    Python and offered others of it (a project with no wheel at all offers none: sdists)."""
    ignored = _IGNORED.search(pip_output)
    offered = _OFFERED.search(pip_output)
    usable = [v for v in (offered.group(1).split(", ") if offered else ()) if _version_key(v)]
    if ignored is None or not usable:
        return None
    needs = [
        (_version_key(v) or (), v, spec.strip()) for v, spec in _NEEDS.findall(ignored.group(1))
    ]
    if not needs:
        return None
    _, version, spec = max(needs)
    newest = max(usable, key=lambda v: _version_key(v) or ())
    return (
        f"requirement {requirement!r} could not be installed: the versions pip found for it "
        f"need another Python ({version} says Requires-Python {spec}) than the image's "
        f"{python}: allow a version made for it (the newest pip found is {newest})"
    )


_IGNORED = re.compile(
    r"Ignored the following versions that require a different python version: (.*)"
)
_NEEDS = re.compile(r"(\S+) Requires-Python ([^;\n]+)")
_OFFERED = re.compile(r"\(from versions: ([^)]*)\)")


def _version_key(version: str) -> tuple[int, ...] | None:
    """A final release's version as numbers ("5.2.20" -> (5, 2, 20)); None for a pre-release
    or anything else."""
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def is_pure(wheel_name: str) -> bool:
    """Whether a wheel's file name tags it for any interpreter and platform: no compiled
    code (`{name}-{version}(-{build})?-{python}-none-any.whl`, python a py2/py3 tag)."""
    parts = wheel_name.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6) or parts[-2:] != ["none", "any"]:
        return False
    return all(tag.startswith("py") for tag in parts[-3].split("."))


def build_wheel(requirement: str, wheelhouse: Path, env: dict[str, str]) -> Path | None:
    """Build requirement's sdist into a wheel in wheelhouse, and return it when it is pure;
    None when no sdist could be fetched or built (no such project, or its build failed).

    BuildError when the wheel it builds holds compiled code."""
    with tempfile.TemporaryDirectory(prefix="sdist-") as out_name:
        out = Path(out_name)
        cmd = [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary=:all:",
            "--wheel-dir", str(out), "--disable-pip-version-check", "--no-input",
            "--cache-dir", str(paths.cache_dir() / "pip"), "--", requirement,
        ]  # fmt: skip
        failed = run_pip(
            cmd,
            env,
            BUILD_TIMEOUT,
            f"building a wheel of {requirement!r} from its source distribution took over "
            f"{BUILD_TIMEOUT:.0f} s",
        )
        wheels = sorted(out.glob("*.whl"))
        if failed is not None or len(wheels) != 1:
            return None
        wheel = wheels[0]
        if not is_pure(wheel.name):
            raise BuildError(
                f"requirement {requirement!r} publishes no wheel for this image's Python, and "
                f"its source distribution builds compiled code ({wheel.name}), which summon "
                "cannot build for the image: pick a version with wheels, or leave it out"
            )
        wheelhouse.mkdir(parents=True, exist_ok=True)
        return Path(wheel.replace(wheelhouse / wheel.name))
