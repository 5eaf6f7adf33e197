"""ctypes.util.find_library inside an image: the image's own libraries, found without a program.

On Linux the stdlib's find_library asks `/sbin/ldconfig -p`, then gcc and ld, each in a child
process: an image has none of them, and the sandbox refuses the fork with a line that says to
use threads ("refused fork"), so every app that finds a library by name (python-magic's
libmagic, cairocffi's libcairo) got None, or a stray refusal at each start. The
build ships the libraries an app loaded by name (build/elf.py: host_libraries), under their
sonames in the loader's folders: find_library("magic") answers "libmagic.so.1" from there, as
ldconfig's cache would, and starts nothing. Installed by the runtime's init (root "/" only:
the unix target runs on the host, whose ldconfig answers).

platform likewise: platform.platform(), uname() and processor() run `uname -p` in a child
process, and architecture() runs `file -b`; Sanic's start banner, telemetry and version
pages ask them, and every start of such an app printed "refused fork". Inside an image they
answer as those programs' absence would (an empty processor, architecture from the
interpreter's own pointer size), with no child process.

subprocess likewise, for a program the image does not hold (an image holds none but its
interpreter): sentry-sdk runs `git rev-parse HEAD` for its release, matplotlib `fc-list`
for the fonts, each ready for a host without it (FileNotFoundError), and each start printed
"refused fork" instead. Popen of a program found neither at its path nor on PATH now raises
that FileNotFoundError, as such a host's would, before any fork; one the image holds (its
python) still forks, and the sandbox refuses it with its line.

uuid likewise: uuid.uuid1() asks libuuid (uuid_generate_time_safe), which looks for a MAC
address and for the uuidd daemon (a socket, umask, getppid, a clock file under /var/lib), and
without libuuid, uuid.getnode() runs `ip link`, `ifconfig`, `arp`... in child processes. A
request's first uuid1() in a sealed sandbox said three refusals ("refused socket", "refused
getppid", "refused umask": calls the build's recording run never saw). An image has no MAC
worth telling the world anyway: uuid is given the random node RFC 4122 (4.5) provides for
hosts without one (48 random bits, the multicast bit set), and uuid1 makes its UUIDs in
Python, from the clock (safe within the instance, which is one process: uuid's own
_last_timestamp keeps them increasing).
"""

from __future__ import annotations

import os
import re
import sys

# The folders glibc's loader searches with no cache (build/elf.py: loader_dirs), x86_64 and
# arm64 images alike.
FOLDERS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib",
    "/usr/lib",
)


def find_library(name: str, folders: tuple[str, ...] = FOLDERS) -> str | None:
    """The soname of lib{name} in the image's library folders, as ldconfig -p would give it;
    None if there is none (as the stdlib says of a library the host lacks)."""
    pattern = re.compile(rf"lib{re.escape(name)}\.so(\.[0-9]+)*")
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found = [n for n in names if pattern.fullmatch(n)]
        if found:
            return max(found, key=lambda n: (n.count("."), n))  # libmagic.so.1 over .so
    return None


def _no_program(module: object) -> None:
    """platform's calls that run a program: answered as a host without it answers."""
    module._Processor.from_subprocess = _none  # type: ignore[attr-defined]
    module._syscmd_file = _default  # type: ignore[attr-defined]


def _none() -> None:
    return None


def _default(target: object, default: str = "") -> str:
    return default


def _find_library(module: object) -> None:
    module.find_library = find_library  # type: ignore[attr-defined]


def _program(args: object, executable: object, shell: object) -> str | None:
    """The program a Popen would run, as a str (None when it cannot be told)."""
    if shell:
        return "/bin/sh" if executable is None else _text(executable)
    if executable is not None:
        return _text(executable)
    if isinstance(args, str | bytes | os.PathLike):
        return _text(args)
    try:
        first = next(iter(args))  # type: ignore[call-overload]
    except (TypeError, StopIteration):
        return None
    return _text(first)


def _text(value: object) -> str | None:
    try:
        name = os.fsdecode(value)  # type: ignore[arg-type]
    except TypeError:
        return None
    return name or None


def _missing(program: str, cwd: object, env: object) -> bool:
    """Whether no such program is there to run: at its path, or on PATH for a bare name."""
    if "/" in program:
        folder = _text(cwd) if cwd is not None else None
        path = os.path.join(folder, program) if folder else program
        return not os.path.exists(path)
    search = env.get("PATH") if isinstance(env, dict) else os.environ.get("PATH")
    for folder in (search if isinstance(search, str) else os.defpath).split(os.pathsep):
        if os.access(os.path.join(folder or ".", program), os.X_OK):
            return False
    return True


def _no_missing_program(module: object) -> None:
    """subprocess.Popen of a program the image lacks: FileNotFoundError, before a fork."""
    popen: type = module.Popen  # type: ignore[attr-defined]
    init = vars(popen)["__init__"]

    def __init__(self: object, args: object, *more: object, **kwargs: object) -> None:
        if not more:  # the keyword form, as every caller writes it
            program = _program(args, kwargs.get("executable"), kwargs.get("shell"))
            if program is not None and _missing(program, kwargs.get("cwd"), kwargs.get("env")):
                raise FileNotFoundError(2, "No such file or directory", program)
        init(self, args, *more, **kwargs)

    popen.__init__ = __init__  # type: ignore[misc]


def _random_node(module: object) -> None:
    """uuid: a random node (RFC 4122, 4.5: the multicast bit set), no libuuid, no program."""
    import random  # noqa: F401  uuid1 imports it at its first call (clock_seq): now, before the seal

    module._node = int.from_bytes(os.urandom(6), "big") | (1 << 40)  # type: ignore[attr-defined]
    module._generate_time_safe = None  # type: ignore[attr-defined]


PATCHES = {
    "ctypes.util": _find_library,
    "platform": _no_program,
    "subprocess": _no_missing_program,
    "uuid": _random_node,
}


class _Finder:
    """On sys.meta_path: when a module of PATCHES is imported, its patch is applied."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> object:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)  # type: ignore[arg-type]
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: object) -> None:
            run(module)  # type: ignore[arg-type]
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Put the finder first on sys.meta_path; a module of PATCHES imported already is
    patched now."""
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _Finder)  # type: ignore[arg-type]
