"""Where the image's import system would find a module: answered from the files, importing nothing.

It follows what CPython does with the image's sys.path (the app folder, the vendored site
folder, summon's runtime, the stdlib and lib-dynload): builtin modules first, then frozen
ones, then each path folder in order, where a package (a folder with __init__) wins over a
module file, extension modules over sources over bytecode, and folders without __init__
become namespace package portions only when nothing else matches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

# Entries a module puts in sys.modules for another one: `import os.path` works because os
# does sys.modules["os.path"] = posixpath, not because a file os/path.py exists.
ALIASES = {"os.path": "posixpath"}


@dataclass(frozen=True)
class Location:
    """A module as the image would find it."""

    name: str
    kind: str  # builtin, frozen, source, sourceless, extension, package, namespace
    origin: Path | None  # the host file (a package's __init__); None for builtins, namespaces
    root: Path | None  # the search-path folder it sits under, for its relative image path
    group: str  # stdlib, site, app, runtime, builtin
    search_locations: tuple[Path, ...] = ()  # a package's __path__
    alias_of: str | None = None

    @property
    def is_package(self) -> bool:
        return bool(self.search_locations)

    @property
    def source(self) -> Path | None:
        """The Python source to scan for imports, if there is one."""
        if self.origin is not None and self.origin.suffix == ".py" and self.alias_of is None:
            return self.origin
        return None

    @property
    def relpath(self) -> PurePosixPath | None:
        if self.origin is None or self.root is None:
            return None
        return PurePosixPath(self.origin.relative_to(self.root).as_posix())


@dataclass(frozen=True)
class SearchEntry:
    """One folder of the image's sys.path, as a host folder."""

    folder: Path
    group: str
    only: str | None = None  # the one top-level name it may provide ("summon"), or any


class Resolver:
    """Finds modules by name, as the image's interpreter would; answers are remembered."""

    def __init__(
        self,
        path: Sequence[SearchEntry],
        *,
        builtin: frozenset[str],
        frozen: frozenset[str] | None,
        ext_suffixes: Sequence[str],
        stdlib: Path,
        roots: Sequence[tuple[Path, str]] = (),
        is_file: Callable[[Path], bool] = Path.is_file,
        is_dir: Callable[[Path], bool] = Path.is_dir,
    ) -> None:
        """roots: (folder, group) pairs that place a file (the most specific one wins); by
        default the path folders themselves. lib-dynload belongs under the stdlib root, so
        that its files keep their lib-dynload/ prefix. is_file and is_dir answer for the
        file system searched: the host's, or an image's list of files."""
        self.is_file = is_file
        self.is_dir = is_dir
        self.path = list(path)
        self.builtin = builtin
        self.frozen = frozen or frozenset()
        self.suffixes = [*ext_suffixes, ".py", ".pyc"]
        self.ext_suffixes = tuple(ext_suffixes)
        self.stdlib = stdlib
        places = list(roots) or [(e.folder, e.group) for e in path]
        self._roots = sorted(places, key=lambda r: len(r[0].parts), reverse=True)
        self._cache: dict[str, Location | None] = {}

    def place(self, path: Path) -> tuple[Path, str] | None:
        """(root, group) of the search-path folder a file lies under."""
        for root, group in self._roots:
            if path.is_relative_to(root):
                return root, group
        return None

    def find(self, name: str) -> Location | None:
        if name not in self._cache:
            self._cache[name] = self._find(name)
        return self._cache[name]

    def _find(self, name: str) -> Location | None:
        # Not only identifiers: import_module() finds a file by any name, and the stdlib
        # itself has one no import statement could name (_sysconfigdata__x86_64-linux-gnu,
        # which sysconfig imports by its computed name).
        if not name or any(not part.replace("-", "_").isidentifier() for part in name.split(".")):
            return None
        if name in ALIASES:
            target = self.find(ALIASES[name])
            if target is None:
                return None
            return replace(
                target, name=name, origin=None, root=None, group="builtin", alias_of=target.name
            )
        if name in self.builtin:
            return Location(name, "builtin", None, None, "builtin")
        if name in self.frozen:
            return self._frozen(name)
        parent, _, tail = name.rpartition(".")
        folders: list[Path]
        if parent:
            pkg = self.find(parent)
            if pkg is None or not pkg.is_package:
                return None
            folders = list(pkg.search_locations)
        else:
            folders = [e.folder for e in self.path if e.only in (None, name)]
        portions: list[Path] = []
        for folder in folders:
            found = self._in_folder(name, folder / tail, folder, tail)
            if isinstance(found, Location):
                return found
            if found is not None:
                portions.append(found)
        if portions:
            placed = self.place(portions[0])
            root, group = placed if placed else (None, "builtin")
            return Location(name, "namespace", None, root, group, tuple(portions))
        return None

    def _in_folder(
        self, name: str, pkg_dir: Path, folder: Path, tail: str
    ) -> Location | Path | None:
        """The module `tail` in one folder; a Path is a namespace portion found there."""
        portion: Path | None = None
        if self.is_dir(pkg_dir):
            for suffix in self.suffixes:
                init = pkg_dir / f"__init__{suffix}"
                if self.is_file(init):
                    return self._located(name, "package", init, (pkg_dir,))
            portion = pkg_dir
        for suffix in self.suffixes:
            file = folder / f"{tail}{suffix}"
            if self.is_file(file):
                kind = (
                    "extension"
                    if suffix in self.ext_suffixes
                    else "source"
                    if suffix == ".py"
                    else "sourceless"
                )
                return self._located(name, kind, file, ())
        return portion

    def _located(
        self, name: str, kind: str, file: Path, locations: tuple[Path, ...]
    ) -> Location | None:
        placed = self.place(file)
        if placed is None:
            return None
        root, group = placed
        return Location(name, kind, file, root, group, locations)

    def _frozen(self, name: str) -> Location:
        # Frozen code runs without its file, but the stdlib keeps it where the interpreter
        # looks for landmarks (getpath looks for os.py); modules frozen under another name
        # (_frozen_importlib is importlib._bootstrap) have no file of their own.
        rel = Path(*name.split("."))
        for file, locations in (
            (self.stdlib / rel / "__init__.py", (self.stdlib / rel,)),
            (self.stdlib / rel.with_suffix(".py"), ()),
        ):
            if self.is_file(file):
                return Location(name, "frozen", file, self.stdlib, "stdlib", locations)
        return Location(name, "frozen", None, None, "builtin")


def module_name(relpath: PurePosixPath, ext_suffixes: Sequence[str]) -> str | None:
    """The module a file under a search-path folder provides ("a/b/__init__.py" -> "a.b")."""
    name = relpath.name
    stem = None
    for suffix in (*ext_suffixes, ".py", ".pyc"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    if stem is None:
        return None
    parts = [*relpath.parent.parts, stem]
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def sysconfig_data(name: str, loc: Location) -> list[str]:
    """The modules sysconfig imports by a name it computes (f"_sysconfigdata_{abiflags}_
    {platform}_{multiarch}", its build-time variables), found beside it, when `name` is
    sysconfig: zoneinfo asks it for TZPATH at import. An app whose trace never reached
    sysconfig (typer imports pydantic, which imports zoneinfo, while it parses a command's
    arguments) died at start without them."""
    if name != "sysconfig" or loc.origin is None:
        return []
    found = {p.name.partition(".")[0] for p in loc.origin.parent.glob("_sysconfigdata_*.py*")}
    return sorted(found)
