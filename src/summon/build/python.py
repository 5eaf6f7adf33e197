"""Probe the interpreter that goes into the image: version, ABI, stdlib layout, libc, wheel tags."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from summon.errors import BuildError

MIN_VERSION = (3, 11)
PROBE_TIMEOUT = 30.0

# Runs under the probed interpreter with -S -E, so: stdlib only, and nothing newer than 3.0
# syntax before the version check, so that an old interpreter still answers instead of
# failing to parse the probe.
_PROBE = r"""
import sys
startup = sorted(sys.modules)
import json
out = {"implementation": sys.implementation.name, "version_info": list(sys.version_info[:3])}
if sys.implementation.name == "cpython" and sys.version_info >= (3, 11):
    import os, sysconfig, platform, _imp
    import importlib.machinery as machinery
    dynload = [p for p in sys.path if p.endswith("lib-dynload")]
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if not libc:
        name, ver = platform.libc_ver(sys.executable)
        libc = (name + " " + ver) if name else ""
    frozen = getattr(_imp, "_frozen_module_names", None)
    out.update(
        executable=sys.executable,
        version=platform.python_version(),
        cache_tag=sys.implementation.cache_tag,
        abiflags=getattr(sys, "abiflags", ""),
        soabi=sysconfig.get_config_var("SOABI") or "",
        ext_suffixes=list(machinery.EXTENSION_SUFFIXES),
        prefix=sys.prefix,
        base_prefix=sys.base_prefix,
        stdlib=getattr(sys, "_stdlib_dir", None) or sysconfig.get_path("stdlib"),
        dynload=dynload[0] if dynload else sysconfig.get_config_var("DESTSHARED"),
        builtin_modules=list(sys.builtin_module_names),
        frozen_modules=sorted(frozen()) if frozen else None,
        libc=libc,
        machine=os.uname().machine,
        platform=sysconfig.get_platform(),
        startup_modules=startup,
    )
sys.stdout.write(json.dumps(out))
"""

# manylinux tags older than PEP 600 that pip still matches by their legacy names.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Interpreter:
    """What summon needs to know about the image's interpreter."""

    executable: Path  # the real file (symlinks resolved)
    requested: Path  # the path as the manifest gave it
    version: str  # "3.11.2"
    version_info: tuple[int, int]
    abi: str  # "cp311" (plus ABI flags such as "d" if any)
    soabi: str  # "cpython-311-x86_64-linux-gnu"
    ext_suffixes: tuple[str, ...]
    prefix: Path
    stdlib: Path  # /usr/lib/python3.11
    dynload: Path  # /usr/lib/python3.11/lib-dynload
    builtin_modules: frozenset[str]
    frozen_modules: frozenset[str] | None
    libc: tuple[str, tuple[int, int]] | None  # ("glibc", (2, 36)); None if unknown
    machine: str  # "x86_64"
    platform_tags: tuple[str, ...]  # most specific first, for pip --platform
    # What is in sys.modules when the interpreter starts as the image runs it (-S -E), before
    # any code of its own: in every closure.
    startup_modules: frozenset[str] = frozenset()
    version_tuple: tuple[int, int, int] = (3, 11, 0)  # sys.version_info[:3]

    @property
    def name(self) -> str:
        """The interpreter's file name, e.g. python3.11."""
        return self.executable.name

    @property
    def xy(self) -> str:
        """The version as "3.11"."""
        return f"{self.version_info[0]}.{self.version_info[1]}"


def platform_tags(libc: tuple[str, tuple[int, int]] | None, machine: str) -> tuple[str, ...]:
    """Wheel platform tags an interpreter on this libc and machine can load, best first.

    glibc is backward compatible, so every manylinux_2_N with N up to the running version
    works; PEP 600 tags stop at 2_17 for x86_64 (older wheels carry manylinux1/2010 names).
    """
    arch = machine.replace("-", "_").replace(".", "_")
    tags: list[str] = []
    if libc is not None and libc[0] == "glibc":
        major, minor = libc[1]
        floor = 5 if arch in ("x86_64", "i686") else 17
        for m in range(minor, floor - 1, -1):
            tags.append(f"manylinux_{major}_{m}_{arch}")
            legacy = _LEGACY_MANYLINUX.get((major, m))
            if legacy and arch in ("x86_64", "i686"):
                tags.append(f"{legacy}_{arch}")
            elif legacy == "manylinux2014":
                tags.append(f"{legacy}_{arch}")
    elif libc is not None and libc[0] == "musl":
        major, minor = libc[1]
        tags.extend(f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1))
    tags.append(f"linux_{arch}")
    return tuple(tags)


def _parse_libc(text: str) -> tuple[str, tuple[int, int]] | None:
    m = re.match(r"^(glibc|musl)\s+(\d+)\.(\d+)", text.strip())
    if not m:
        return None
    return m.group(1), (int(m.group(2)), int(m.group(3)))


def _install_hint(path: str) -> str:
    name = os.path.basename(path)
    if re.fullmatch(r"python3\.\d+", name):
        return f"install it (apt-get install {name}) or set python = ... in the manifest"
    return "install it or set python = ... in the manifest to an interpreter that exists"


def probe_interpreter(path: str) -> Interpreter:
    """Run the interpreter at path and describe it; BuildError if it cannot go in an image."""
    requested = Path(path)
    if not requested.is_absolute():
        raise BuildError(
            f'interpreter {path} is not an absolute path; set python = "/usr/bin/python3.11" '
            "(or another absolute path) in the manifest"
        )
    if not requested.exists():
        raise BuildError(f"interpreter {path} not found; {_install_hint(path)}")
    real = requested.resolve()
    if not real.is_file() or not os.access(real, os.X_OK):
        raise BuildError(
            f"interpreter {path} is not an executable file; set python = ... in the manifest "
            "to a CPython 3.11 or newer"
        )
    try:
        proc = subprocess.run(
            [str(real), "-S", "-E", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"interpreter {path} did not answer within {PROBE_TIMEOUT:.0f} s; "
            "check that it is a working Python"
        ) from None
    except OSError as e:
        raise BuildError(
            f"interpreter {path} cannot be run ({e.strerror}); "
            "set python = ... in the manifest to a CPython 3.11 or newer"
        ) from None
    try:
        info = json.loads(proc.stdout)
        if not isinstance(info, dict):
            raise ValueError(info)
    except ValueError:
        raise BuildError(
            f"interpreter {path} is not a working Python 3 (probe exited {proc.returncode}); "
            "set python = ... in the manifest to a CPython 3.11 or newer"
        ) from None
    impl = info.get("implementation")
    vi = tuple(info.get("version_info") or ())
    if impl != "cpython":
        raise BuildError(
            f"interpreter {path} is {impl}, not CPython; "
            "set python = ... in the manifest to a CPython 3.11 or newer"
        )
    if vi[:2] < MIN_VERSION:
        shown = ".".join(str(v) for v in vi)
        raise BuildError(
            f"interpreter {path} is Python {shown}; summon needs 3.11 or newer: "
            'set python = "/usr/bin/python3.11" in the manifest'
        )
    major, minor = int(vi[0]), int(vi[1])
    libc = _parse_libc(info["libc"])
    return Interpreter(
        executable=real,
        requested=requested,
        version=info["version"],
        version_info=(major, minor),
        abi=f"cp{major}{minor}{info['abiflags']}",
        soabi=info["soabi"],
        ext_suffixes=tuple(info["ext_suffixes"]),
        prefix=Path(info["prefix"]),
        stdlib=Path(info["stdlib"]),
        dynload=Path(info["dynload"]),
        builtin_modules=frozenset(info["builtin_modules"]),
        frozen_modules=(
            frozenset(info["frozen_modules"]) if info["frozen_modules"] is not None else None
        ),
        libc=libc,
        machine=info["machine"],
        platform_tags=platform_tags(libc, info["machine"]),
        startup_modules=frozenset(info.get("startup_modules") or ()),
        version_tuple=(major, minor, int(vi[2])),
    )
