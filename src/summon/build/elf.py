"""The shared-library closure of ELF binaries, read from their dynamic sections as ld.so would.

ldd runs the binary's loader on the host, which trusts the host's ld.so.cache and
LD_LIBRARY_PATH and executes code from the file; reading PT_INTERP, DT_NEEDED, DT_RPATH and
DT_RUNPATH directly needs neither and works for binaries of any machine.
"""

from __future__ import annotations

import glob
import os
import re
import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from summon.errors import BuildError

LD_SO_CONF = Path("/etc/ld.so.conf")

_TAG_ATTRS = {
    "DT_NEEDED": "needed",
    "DT_RPATH": "rpath",
    "DT_RUNPATH": "runpath",
    "DT_SONAME": "soname",
}

# Debian's multiarch folder per ELF machine.
_TRIPLETS = {
    "EM_X86_64": "x86_64-linux-gnu",
    "EM_AARCH64": "aarch64-linux-gnu",
    "EM_386": "i386-linux-gnu",
    "EM_ARM": "arm-linux-gnueabihf",
    "EM_RISCV": "riscv64-linux-gnu",
    "EM_PPC64": "powerpc64le-linux-gnu",
    "EM_S390": "s390x-linux-gnu",
}


def loader_dirs(machine: str = "EM_X86_64") -> tuple[str, ...]:
    """The folders glibc's ld.so searches with no ld.so.cache: all an image can rely on.

    For Debian's x86_64 loader `ld.so --help` lists them as its "system search path".
    """
    triplet = _TRIPLETS.get(machine)
    multiarch = (f"/lib/{triplet}", f"/usr/lib/{triplet}") if triplet else ()
    return (*multiarch, "/lib", "/usr/lib")


def default_dirs(machine: str = "EM_X86_64") -> tuple[str, ...]:
    """The folders searched on the host after RPATH/RUNPATH and ld.so.conf."""
    triplet = _TRIPLETS.get(machine)
    multiarch = (f"/lib/{triplet}", f"/usr/lib/{triplet}") if triplet else ()
    return (*multiarch, "/lib64", "/lib", "/usr/lib")


@dataclass(frozen=True)
class Library:
    """One shared object to put in the image."""

    soname: str  # the name it is asked for by (DT_NEEDED), hence its file name in the image
    image_path: str  # where it goes: a folder the loader searches with no cache (PT_INTERP's
    # path for the loader itself)
    host_path: Path  # the real file to copy (symlinks resolved)
    size: int
    needed_by: tuple[Path, ...]  # the given binaries that need it, directly or not


@dataclass
class LibraryClosure:
    """Every shared object the given binaries need: what to copy into the image."""

    interpreter: Library | None  # the loader, from PT_INTERP (also in libraries)
    # Sorted by image path; the loader included, so that copying these is enough.
    libraries: list[Library] = field(default_factory=list)
    # An optional binary whose libraries are not all on this host -> (soname it lacks, the
    # object that needs it). It cannot be loaded here either; the image holds it as it is.
    unresolved: dict[Path, tuple[str, Path]] = field(default_factory=dict)

    def get(self, soname: str) -> Library | None:
        """The library asked for as soname, or None."""
        return next((lib for lib in self.libraries if lib.soname == soname), None)

    def sonames(self) -> list[str]:
        """The sonames of the libraries, the loader left out."""
        return sorted(lib.soname for lib in self.libraries if lib is not self.interpreter)

    def files(self) -> dict[str, Path]:
        """Image path -> host file for every shared object, the loader included."""
        return {lib.image_path: lib.host_path for lib in self.libraries}

    def size(self) -> int:
        return sum(lib.size for lib in self.libraries)


@dataclass(frozen=True)
class _Dynamic:
    elfclass: int
    machine: str
    little_endian: bool
    interp: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def read_dynamic(path: Path) -> _Dynamic:
    """The loader-relevant facts of one ELF file; BuildError if it is not ELF."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            interp = None
            soname = None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            # Segments, not sections: a stripped binary may have no section headers, and
            # the loader itself only reads program headers.
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
                elif isinstance(seg, DynamicSegment):
                    for tag in seg.iter_tags():
                        kind = tag.entry.d_tag
                        if kind not in _TAG_ATTRS:
                            continue
                        # pyelftools sets these string attributes per tag at run time.
                        value = str(getattr(tag, _TAG_ATTRS[kind]))
                        if kind == "DT_NEEDED":
                            needed.append(value)
                        elif kind == "DT_RPATH":
                            rpath.extend(_split_path(value))
                        elif kind == "DT_RUNPATH":
                            runpath.extend(_split_path(value))
                        else:
                            soname = value
            return _Dynamic(
                elfclass=elf.elfclass,
                machine=elf["e_machine"],
                little_endian=elf.little_endian,
                interp=interp,
                soname=soname,
                needed=tuple(needed),
                rpath=tuple(rpath),
                runpath=tuple(runpath),
            )
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror}; check that it exists") from None
    except (ELFError, ValueError, KeyError, AssertionError) as e:
        raise BuildError(
            f"{path} is not a valid ELF file ({e}); it cannot go in the image"
        ) from None


def _split_path(value: str) -> list[str]:
    return [p for p in value.split(":") if p]


def _expand(entry: str, origin: Path) -> str | None:
    """Substitute $ORIGIN; None for tokens that cannot be known here ($LIB, $PLATFORM)."""
    value = re.sub(r"\$(ORIGIN\b|\{ORIGIN\})", str(origin), entry)
    return None if "$" in value else value


def read_ld_so_conf(path: Path = LD_SO_CONF, _seen: set[Path] | None = None) -> list[str]:
    """The folders listed in ld.so.conf, following `include` globs, in order."""
    seen = _seen if _seen is not None else set()
    real = path.resolve()
    if real in seen:
        return []
    seen.add(real)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    dirs: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include":
            for pattern in words[1:]:
                if not os.path.isabs(pattern):
                    pattern = str(path.parent / pattern)
                for conf in sorted(glob.glob(pattern)):
                    dirs.extend(read_ld_so_conf(Path(conf), seen))
        elif words[0] == "hwcap":
            continue
        else:
            # ldconfig accepts several folders per line, split on blanks, commas and colons.
            dirs.extend(d for d in re.split(r"[\s,:]+", line) if d.startswith("/"))
    return dirs


def host_libraries(mapped: Iterable[Path], ld_so_conf: Path = LD_SO_CONF) -> list[Path]:
    """Of the shared objects the build's trace had mapped, the host's own libraries (in its
    loader's folders or ld.so.conf's): those the app loaded by name (ctypes, cffi) are among
    them, which no DT_NEEDED names. A vendored package's libraries and extension modules,
    whose folders are none of these, are not."""
    folders = {Path(d) for d in (*default_dirs(), *loader_dirs(), *read_ld_so_conf(ld_so_conf))}
    return [p for p in mapped if p.parent in folders and p.is_file()]


def library_closure(
    binaries: Iterable[Path],
    *,
    ld_so_conf: Path = LD_SO_CONF,
    search_dirs: Sequence[str] | None = None,
    dlopened: Iterable[Path] = (),
    loaded: Iterable[Path] = (),
    optional: Collection[Path] = (),
) -> LibraryClosure:
    """Follow DT_NEEDED from binaries (executables, extension modules) to every library.

    Search order, as glibc's loader: the RPATH of the needing object and of those that
    loaded it (unless it has a RUNPATH), its RUNPATH, then ld.so.conf (standing in for the
    host's ld.so.cache), then search_dirs (default: default_dirs() for the machine).

    dlopened: libraries no DT_NEEDED names but that get loaded at run time for the first
    binary (glibc dlopens libgcc_s.so.1 when a thread ends in pthread_exit): they go in
    themselves, by their soname, with what they need.

    loaded: libraries the app loaded by name (host_libraries()), which go in as dlopened
    ones do, unless a binary's DT_NEEDED already brought them.

    optional: binaries that may lack a library (extension modules nothing loaded while the
    build traced the app). One that does is not an error: it is in unresolved, and the
    libraries only it needs are left out. Any other binary's missing library is BuildError.
    """
    roots = [Path(b) for b in binaries]
    if not roots:
        return LibraryClosure(None)
    conf_dirs = read_ld_so_conf(ld_so_conf)
    cache: dict[Path, _Dynamic] = {}

    def facts_of(path: Path) -> _Dynamic:
        if path not in cache:
            cache[path] = read_dynamic(path)
        return cache[path]

    facts = {root: facts_of(root) for root in roots}
    first = facts[roots[0]]
    for root, d in facts.items():
        if (d.elfclass, d.machine) != (first.elfclass, first.machine):
            raise BuildError(
                f"{root} is {d.elfclass}-bit {d.machine} but {roots[0]} is "
                f"{first.elfclass}-bit {first.machine}; an image holds one architecture"
            )
    dirs = tuple(search_dirs) if search_dirs is not None else default_dirs(first.machine)
    image_dirs = loader_dirs(first.machine)

    interps = {d.interp for d in facts.values() if d.interp}
    if len(interps) > 1:
        raise BuildError(
            f"the binaries ask for different program interpreters ({', '.join(sorted(interps))}); "
            "an image holds one"
        )
    interpreter: Library | None = None
    provided: set[str] = set()  # sonames the loader itself satisfies
    if interps:
        interp_path = Path(interps.pop())
        if not interp_path.exists():
            raise BuildError(
                f"program interpreter {interp_path} of {roots[0]} does not exist on this host; "
                "install the C library it was built for"
            )
        host = interp_path.resolve()
        interp_facts = read_dynamic(host)
        provided.add(interp_facts.soname or interp_path.name)
        provided.add(interp_path.name)
        interpreter = Library(
            soname=interp_facts.soname or interp_path.name,
            image_path=interp_path.as_posix(),
            host_path=host,
            size=host.stat().st_size,
            needed_by=tuple(r for r in roots if facts[r].interp),
        )

    found: dict[str, tuple[Path, str]] = {}  # soname -> (path as found, folder searched)
    unresolved: dict[Path, tuple[str, Path]] = {}
    droppable = set(optional)
    needers: dict[str, list[Path]] = {}

    def search(name: str, obj: Path, d: _Dynamic, inherited: tuple[str, ...]) -> Path | None:
        if "/" in name:
            p = Path(name)
            return p if _matches(p, first) else None
        origin = obj.parent
        candidates: list[str] = []
        if not d.runpath:
            candidates += [x for x in (_expand(e, origin) for e in d.rpath) if x]
            candidates += list(inherited)
        candidates += [x for x in (_expand(e, origin) for e in d.runpath) if x]
        candidates += conf_dirs
        candidates += dirs
        for folder in candidates:
            p = Path(folder) / name
            if p.is_file() and _matches(p, first):
                return p
        return None

    # (object, its facts, RPATH inherited from the objects that loaded it, the root binary)
    queue: list[tuple[Path, _Dynamic, tuple[str, ...], Path]] = [
        (r, facts[r], (), r) for r in roots
    ]
    visited: set[tuple[str, Path]] = set()

    def add(libs: Iterable[Path]) -> None:
        for lib in libs:
            lib_facts = facts_of(lib)
            name = lib_facts.soname or lib.name
            if name in provided or name in found or not _matches(lib, first):
                continue
            found[name] = (lib, str(lib.parent))
            needers[name] = [roots[0]]
            visited.add((name, roots[0]))
            queue.append((lib, lib_facts, (), roots[0]))

    def drain() -> None:
        while queue:
            obj, d, inherited, root = queue.pop(0)
            own_rpath = tuple(x for x in (_expand(e, obj.parent) for e in d.rpath) if x)
            passed_on = (own_rpath if not d.runpath else ()) + inherited
            for name in d.needed:
                if name in provided:
                    continue
                needers.setdefault(name, [])
                if root not in needers[name]:
                    needers[name].append(root)
                if (name, root) in visited:
                    continue
                visited.add((name, root))
                if name in found:
                    path = found[name][0]
                else:
                    hit = search(name, obj, d, inherited)
                    if hit is None and root in droppable:
                        unresolved.setdefault(root, (name, obj))
                        continue
                    if hit is None:
                        via = f" (loaded for {root})" if obj != root else ""
                        raise BuildError(
                            f"shared library {name} needed by {obj}{via} was not found in its "
                            "RPATH/RUNPATH, /etc/ld.so.conf or the default library folders; "
                            "install the package that provides it"
                        )
                    path = hit
                    found[name] = (hit, str(hit.parent))
                queue.append((path, facts_of(path), passed_on, root))

    add(dlopened)
    drain()
    add(loaded)  # after: a library some DT_NEEDED names keeps the path its search found
    drain()

    libraries: list[Library] = [interpreter] if interpreter is not None else []
    for name, (path, folder) in sorted(found.items()):
        if needers[name] and all(r in unresolved for r in needers[name]):
            continue  # only for binaries that cannot load anyway
        image_dir = folder if folder in image_dirs else image_dirs[0]
        host = path.resolve()
        libraries.append(
            Library(
                soname=name,
                image_path=f"{image_dir}/{name}",
                host_path=host,
                size=host.stat().st_size,
                needed_by=tuple(needers[name]),
            )
        )
    libraries.sort(key=lambda lib: lib.image_path)
    return LibraryClosure(interpreter, libraries, unresolved)


def _matches(path: Path, want: _Dynamic) -> bool:
    """True if path is an ELF object of the same class and machine (the loader skips others)."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            return bool(elf.elfclass == want.elfclass and elf["e_machine"] == want.machine)
    except (OSError, ELFError, ValueError, KeyError, AssertionError):
        return False


def iter_elf_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The ELF files among paths (by magic number), e.g. the .so files of a vendored package."""
    for p in paths:
        try:
            with p.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield p
        except OSError:
            continue


def undefined_symbols(paths: Iterable[Path], wanted: Collection[str]) -> set[str]:
    """Which of the wanted symbols the ELF files among paths import (undefined in their
    dynamic symbol table): e.g. glibc's pre-2.33 stat wrappers, which a wheel built against
    an older glibc calls and today's glibc answers with the legacy stat syscalls."""
    found: set[str] = set()
    for path in paths:
        try:
            with path.open("rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
                f.seek(0)
                elf = ELFFile(f)
                dynsym = elf.get_section_by_name(".dynsym")
                dynstr = elf.get_section_by_name(".dynstr")
                if dynsym is None or dynstr is None:
                    continue
                found |= _undefined(elf, dynsym, dynstr.data(), wanted)
        except (ELFError, OSError, ValueError, struct.error):
            continue
    return found


def _undefined(elf: ELFFile, dynsym: Any, names: bytes, wanted: Collection[str]) -> set[str]:
    """The wanted names that dynsym holds undefined (section index 0), names its strings."""
    offsets: dict[int, str] = {}
    for name in wanted:  # where each name is a whole string of the table
        at = names.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            offsets[at + 1] = name
    if not offsets:
        return set()  # most files name none: their symbols are not read
    if elf.elfclass != 64:
        return {
            sym.name
            for sym in dynsym.iter_symbols()
            if sym.name in wanted and sym["st_shndx"] == "SHN_UNDEF"
        }
    # Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value, st_size u64.
    form = ("<" if elf.little_endian else ">") + "IBBHQQ"
    return {
        offsets[name]
        for name, _, _, shndx, _, _ in struct.iter_unpack(form, dynsym.data())
        if shndx == 0 and name in offsets
    }
