"""The app's own project as an installed distribution, as `pip install .` leaves it.

A project that runs installed (poetry install, pip install -e ., hatch, pdm) finds its own
metadata: `importlib.metadata.version("myapp")` (often `__version__` at import) and the
plugins it declares under entry points. The build writes that .dist-info into the vendored
site folder from pyproject.toml ([project], else Poetry's [tool.poetry]), so every run of
the build and the image find it where an installed project's is.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from summon.build.vendor import Package
from summon.manifest import Manifest

# PEP 621 tables of entry points, and the groups their scripts tables stand for.
_SCRIPT_GROUPS = {"scripts": "console_scripts", "gui-scripts": "gui_scripts"}


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    summary: str = ""
    # group -> name -> "module:attr", as entry_points.txt holds them
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)


def find_pyproject(manifest_source: Path, app_dir: Path) -> Path | None:
    """The project's pyproject.toml: the manifest's own file, else one beside the manifest (a
    summon.toml in the project's folder) or in the app folder."""
    if manifest_source.name == "pyproject.toml":
        return manifest_source
    for folder in (manifest_source.parent, app_dir):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_project(pyproject: Path) -> Project | None:
    """The name, version and entry points the project declares; None if it declares no
    static name and version (a dynamic version, as setuptools-scm makes, is not known here)."""
    try:
        with pyproject.open("rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    project = _table(doc.get("project"))
    if project:
        return _pep621(project)
    poetry = _table(_table(doc.get("tool")).get("poetry"))
    if poetry:
        return _poetry(poetry)
    return None


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(table: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str)}


def _identity(table: dict[str, Any]) -> tuple[str, str] | None:
    """(name, version) of a [project] or [tool.poetry] table; None unless both are given."""
    name, version = table.get("name"), table.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    return name, version


def _groups(tables: Any) -> dict[str, dict[str, str]]:
    """Entry-point groups as written: group -> {name: "module:attr"}."""
    return {g: _strings(_table(t)) for g, t in _table(tables).items() if isinstance(g, str)}


def _pep621(project: dict[str, Any]) -> Project | None:
    if (identity := _identity(project)) is None:
        return None
    name, version = identity
    groups = _groups(project.get("entry-points"))
    for key, group in _SCRIPT_GROUPS.items():
        if _table(project.get(key)):
            groups[group] = _strings(_table(project.get(key)))
    summary = project.get("description")
    return Project(name, version, summary if isinstance(summary, str) else "", _nonempty(groups))


def _poetry(poetry: dict[str, Any]) -> Project | None:
    if (identity := _identity(poetry)) is None:
        return None
    name, version = identity
    groups = _groups(poetry.get("plugins"))
    scripts = {
        k: v if isinstance(v, str) else str(_table(v).get("callable", ""))
        for k, v in _table(poetry.get("scripts")).items()
    }
    if scripts:
        groups["console_scripts"] = {k: v for k, v in scripts.items() if v}
    summary = poetry.get("description")
    return Project(name, version, summary if isinstance(summary, str) else "", _nonempty(groups))


def _nonempty(groups: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {g: eps for g, eps in sorted(groups.items()) if eps}


def dist_info_name(project: Project) -> str:
    """The folder's name as pip writes it: the name and version with runs of -_. as _."""
    name = re.sub(r"[-_.]+", "_", project.name).lower()
    return f"{name}-{project.version.replace('-', '_')}.dist-info"


def write_dist_info(site: Path, project: Project) -> Package | None:
    """Write the project's .dist-info into site; None (nothing written) if a distribution of
    that name is vendored already (the app lists itself among its requirements)."""
    wanted = re.sub(r"[-_.]+", "_", project.name).lower()
    for existing in site.glob("*.dist-info"):
        if existing.name.partition("-")[0].lower().replace(".", "_") == wanted:
            return None
    folder = dist_info_name(project)
    files: dict[str, str] = {
        "METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {project.name}\n"
            f"Version: {project.version}\n"
            + (f"Summary: {project.summary.splitlines()[0]}\n" if project.summary.strip() else "")
        ),
        "INSTALLER": "summon\n",
    }
    if project.entry_points:
        files["entry_points.txt"] = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in project.entry_points.items()
        )
    names = [*sorted(files), "RECORD"]
    files["RECORD"] = "".join(f"{folder}/{n},,\n" for n in names)
    (site / folder).mkdir(parents=True)
    for n, text in files.items():
        (site / folder / n).write_text(text)
    return Package(
        name=project.name,
        version=project.version,
        top_level=(),
        files=tuple(PurePosixPath(folder, n) for n in names),
        size=sum(len(t.encode()) for t in files.values()),
        pure=True,
    )


def own_distribution(m: Manifest, site: Path) -> list[Package]:
    """The app's own project installed into site, as a list of zero or one packages."""
    pyproject = find_pyproject(m.source, m.app_dir)
    project = read_project(pyproject) if pyproject is not None else None
    if project is None:
        return []
    package = write_dist_info(site, project)
    return [package] if package is not None else []


_DOTENV_LINE = re.compile(r"^\s*(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.?)")


def dotenv_warnings(m: Manifest) -> list[str]:
    """A warning for a .env file the app's developer runs with, which the image leaves out:
    hidden files stay out of /app, and a .env holds secrets an image must not. An app that
    loads it (python-dotenv, pydantic-settings' env_file) silently gets its defaults."""
    out = []
    for folder in dict.fromkeys([m.source.parent, m.app_dir]):
        dotenv = folder / ".env"
        try:
            lines = dotenv.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        found = [match for line in lines if (match := _DOTENV_LINE.match(line))]
        names = [match[2] for match in found]
        shown = " ".join(f"-e {n}=..." for n in names[:4]) + (" ..." if len(names) > 4 else "")
        # python-dotenv takes `export KEY=` and quoted values; --env-file (docker's) does not.
        shell = any(match[1] or match[3] in ("'", '"') for match in found)
        cleanup = " (once rid of its `export`s and quotes: it takes lines as written)"
        out.append(
            f"{dotenv} is not put in the image (hidden files stay out, and a .env holds "
            "secrets an image must not): an app that loads it (python-dotenv, "
            "pydantic-settings' env_file) runs on its defaults; give each run its values "
            f"with summon run --env-file {_shown_path(dotenv)}"
            + (cleanup if shell else "")
            + (f" or {shown}" if names else " or -e NAME=VALUE")
            + ", or write those that are not secret into the manifest's env"
        )
    return out


def _shown_path(path: Path) -> str:
    """PATH relative to the working folder when it is under it (.env), else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):  # elsewhere, or no working folder any more
        return str(path)
