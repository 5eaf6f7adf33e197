"""Kernels specialized per image: config fragments, the build from Debian's source, the cache.

A summon kernel is `make tinyconfig` plus the fragments in summon/build/kernel/*.config: a
small base and one fragment per device class the image uses (select_fragments reads them off
the image's app.json). After `make olddefconfig` every requested option is checked against
the final .config, since olddefconfig silently drops an option whose dependencies are off.
The final .config is hashed, and the kernel is cached by that hash:

    <cache>/kernels/<sha256 of .config>/   bzImage, config, build.log, kernel.json
    <cache>/kernels/requests/<key>         request (source + fragments) -> config hash
    <cache>/kernel-src/<source id>/        the unpacked linux-source tarball
    <cache>/kernel-build/<source id>/      the build folder (make O=), reused between builds

A request file lets a cached kernel be found without running kconfig at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import BuildError, UserError

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
FRAGMENT_DIR = Path(__file__).with_name("kernel")
# Always in, in this order; device fragments follow.
BASE_FRAGMENTS = ("base", "serial-console", "virtio-rng")
# Bumped when the way a kernel is made changes, so old request records stop matching.
RECIPE = "1"
# What `make` is told, so the same config and compiler give the same bytes.
REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01 00:00:00 UTC",
    "KBUILD_BUILD_USER": "summon",
    "KBUILD_BUILD_HOST": "summon",
    "KBUILD_BUILD_VERSION": "1",
}
# Output lines of a first build, when no earlier build tells better (measured: base fragments).
DEFAULT_BUILD_LINES = 1400
MAX_SIZE = 2 * 1000 * 1000  # the size a specialized bzImage must stay under (issue 3)

_OPTION_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
# A line make prints for each step of the build ("  CC      kernel/fork.o").
_STEP_RE = re.compile(r"^\s+[A-Z][A-Z0-9_]*\s+\S")


class KernelSourceMissing(UserError):
    """The kernel source package is not installed."""


class KernelConfigError(UserError):
    """A fragment asks for an option the final .config does not have."""


class KernelBuildError(UserError):
    """`make` failed; the message names the log."""


@dataclass(frozen=True)
class Option:
    """One line of a fragment: CONFIG_NAME=value, and the comment above it saying why."""

    name: str  # "CONFIG_VIRTIO_NET"
    value: str  # "y", "n", "m", a number, or a quoted string
    reason: str
    fragment: str

    def line(self) -> str:
        if self.value == "n":
            return f"# {self.name} is not set"
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class Fragment:
    name: str
    description: str  # the fragment's opening comment
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Progress:
    """Where a kernel build is: a phase, and during compilation, lines done of about total."""

    phase: str
    done: int = 0
    total: int = 0
    line: str = ""


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Kernel:
    """A built kernel in the cache."""

    config_hash: str
    path: Path  # its folder

    @property
    def bzimage(self) -> Path:
        return self.path / "bzImage"

    @property
    def config(self) -> Path:
        return self.path / "config"

    @property
    def log(self) -> Path:
        return self.path / "build.log"

    @property
    def id(self) -> str:
        return self.config_hash[:12]

    def meta(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.path / "kernel.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return doc


# --- fragments -------------------------------------------------------------------------------


def fragment_names() -> list[str]:
    return sorted(p.stem for p in FRAGMENT_DIR.glob("*.config"))


def load_fragment(name: str) -> Fragment:
    path = FRAGMENT_DIR / f"{name}.config"
    try:
        text = path.read_text()
    except FileNotFoundError:
        known = ", ".join(fragment_names())
        raise UserError(f"no kernel fragment {name!r}; known fragments: {known}") from None
    return parse_fragment(name, text)


def parse_fragment(name: str, text: str) -> Fragment:
    """Parse a fragment: an opening comment, then options each under a comment saying why.

    An option without a comment of its own is an error: every option must say why it is on.
    """
    description: list[str] = []
    comment: list[str] = []
    options: list[Option] = []
    seen_blank = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            if comment and not options and not seen_blank:
                description, comment = comment, []
            seen_blank = True
            comment = []
            continue
        unset = _UNSET_RE.match(line)
        option = _OPTION_RE.match(line)
        if unset or option:
            opt_name, value = (unset[1], "n") if unset else (option[1], option[2])  # type: ignore[index]
            if not comment:
                raise BuildError(
                    f"kernel fragment {name}, line {number}: {opt_name} has no comment "
                    "above it saying why it is on"
                )
            options.append(Option(opt_name, value, " ".join(comment), name))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("#").strip())
        else:
            raise BuildError(f"kernel fragment {name}, line {number}: cannot read {line!r}")
    return Fragment(name, " ".join(description), tuple(options))


def select_fragments(app_config: Mapping[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """The fragments the kernel of an image with this app.json needs, base first.

    Every VM has a console and a virtio-rng; socket mode adds virtio-net and the kernel's
    TCP/IP, direct mode virtio-net and raw packet sockets for summon's own stack; volumes
    add virtio-blk and ext4; an image that seals itself after start adds seccomp.
    """
    names = list(BASE_FRAGMENTS)
    network = app_config.get("network", "socket")
    if network == "socket":
        names += ["virtio-net", "inet"]
    elif network == "direct":
        names += ["virtio-net", "packet"]
    if app_config.get("volumes"):
        names.append("virtio-blk")
    seal = app_config.get("seal")
    if isinstance(seal, dict) and seal.get("mode") == "on":
        names.append("seccomp")
    for name in extra:
        if name not in names:
            load_fragment(name)  # an unknown name is the user's error, said now
            names.append(name)
    return names


def requested_options(fragments: Sequence[str]) -> dict[str, Option]:
    """CONFIG name -> the option the fragments ask for; two fragments may not disagree."""
    wanted: dict[str, Option] = {}
    for name in fragments:
        for opt in load_fragment(name).options:
            before = wanted.get(opt.name)
            if before is not None and before.value != opt.value:
                raise BuildError(
                    f"kernel fragments {before.fragment} and {name} disagree on {opt.name} "
                    f"({before.value} and {opt.value}); fix one of them"
                )
            wanted[opt.name] = opt
    return wanted


# --- .config ---------------------------------------------------------------------------------


def parse_config(text: str) -> dict[str, str]:
    """A .config as CONFIG name -> value ("n" for `# CONFIG_X is not set`)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = _OPTION_RE.match(line)
        if m:
            values[m[1]] = m[2]
            continue
        m = _UNSET_RE.match(line)
        if m:
            values[m[1]] = "n"
    return values


def merge_config(base: str, options: Mapping[str, Option]) -> str:
    """base .config text with the options set, each replacing any line for the same name."""
    out: list[str] = []
    for line in base.splitlines():
        m = _OPTION_RE.match(line) or _UNSET_RE.match(line)
        if m and m[1] in options:
            continue
        out.append(line)
    out += [opt.line() for opt in options.values()]
    return "\n".join(out) + "\n"


def dropped_options(wanted: Mapping[str, Option], final: Mapping[str, str]) -> list[Option]:
    """The requested options the final config does not hold as asked (absent counts as n)."""
    return [opt for opt in wanted.values() if final.get(opt.name, "n") != opt.value]


def verify_config(
    wanted: Mapping[str, Option], final_text: str, source: Path | None = None
) -> None:
    """Raise KernelConfigError naming every option olddefconfig dropped or changed."""
    final = parse_config(final_text)
    dropped = dropped_options(wanted, final)
    if not dropped:
        return
    parts = []
    for opt in dropped:
        why = ""
        if source is not None:
            deps = kconfig_dependencies(source, opt.name)
            if deps:
                why = f", needs {' && '.join(deps)}"
        got = final.get(opt.name, "n")
        parts.append(f"{opt.line()} (fragment {opt.fragment}) ended up {got}{why}")
    raise KernelConfigError(
        "the kernel config lost options its fragments ask for: "
        + "; ".join(parts)
        + ". Add what they depend on to the fragment"
    )


def kconfig_dependencies(source: Path, option: str) -> list[str]:
    """The `depends on` lines of a symbol in the source's Kconfig files (for messages)."""
    symbol = option.removeprefix("CONFIG_")
    header = re.compile(rf"^\s*(?:menu)?config\s+{re.escape(symbol)}\s*$")
    deps: list[str] = []
    for kconfig in source.rglob("Kconfig*"):
        try:
            lines = kconfig.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            if not header.match(line):
                continue
            for follow in lines[i + 1 :]:
                stripped = follow.strip()
                if re.match(
                    r"^(config|menuconfig|menu|endmenu|choice|endchoice|if|endif)\b", stripped
                ):
                    break
                if stripped.startswith("depends on "):
                    deps.append(stripped.removeprefix("depends on ").strip())
    return deps


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the source ------------------------------------------------------------------------------


def source_id(tarball: Path = SOURCE_TARBALL) -> str:
    """Names one version of the source tarball cheaply (size and mtime change with upgrades)."""
    try:
        st = tarball.stat()
    except FileNotFoundError:
        raise KernelSourceMissing(
            f"{SOURCE_PACKAGE} is not installed: apt-get install {SOURCE_PACKAGE}"
        ) from None
    key = f"{tarball}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def kernels_dir() -> Path:
    return paths.cache_dir() / "kernels"


def source_tree(progress: ProgressFn = lambda p: None, tarball: Path = SOURCE_TARBALL) -> Path:
    """The unpacked kernel source, unpacked into the cache on first use."""
    sid = source_id(tarball)
    base = paths.cache_dir() / "kernel-src" / sid
    tree = base / SOURCE_PACKAGE
    if (tree / "Makefile").is_file():
        return tree
    base.mkdir(parents=True, exist_ok=True)
    with paths.locked(base / ".lock"):
        if (tree / "Makefile").is_file():
            return tree
        progress(Progress(f"unpacking {tarball.name}"))
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".unpack-"))
        try:
            # tar(1) rather than tarfile: it unpacks the 1.3 GB tree several times faster.
            proc = subprocess.run(
                ["tar", "-xf", str(tarball), "-C", str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not (tmp / SOURCE_PACKAGE / "Makefile").is_file():
                detail = proc.stderr.strip().splitlines()[-1:] or ["no Makefile in it"]
                raise KernelBuildError(f"cannot unpack {tarball}: {detail[0]}")
            os.rename(tmp / SOURCE_PACKAGE, tree)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tree


# --- the build -------------------------------------------------------------------------------


def request_key(fragments: Sequence[str], sid: str) -> str:
    """What decides a kernel before kconfig runs: the source, the recipe, the fragments' text."""
    h = hashlib.sha256(f"recipe {RECIPE}\nsource {sid}\n".encode())
    for name in fragments:
        h.update(f"fragment {name}\n".encode())
        h.update((FRAGMENT_DIR / f"{name}.config").read_bytes())
    return h.hexdigest()


def cached_kernel(fragments: Sequence[str]) -> Kernel | None:
    """The cached kernel for these fragments, if one was built; never runs make."""
    record = kernels_dir() / "requests" / request_key(fragments, source_id())
    try:
        digest = record.read_text().strip()
    except OSError:
        return None
    kernel = Kernel(digest, kernels_dir() / digest)
    return kernel if kernel.bzimage.is_file() else None


def list_kernels() -> list[Kernel]:
    folder = kernels_dir()
    if not folder.is_dir():
        return []
    found = [
        Kernel(p.name, p)
        for p in folder.iterdir()
        if re.fullmatch(r"[0-9a-f]{64}", p.name) and (p / "bzImage").is_file()
    ]
    return sorted(found, key=lambda k: k.path.stat().st_mtime)


def find_kernel(prefix: str) -> Kernel:
    hits = [k for k in list_kernels() if k.config_hash.startswith(prefix)]
    if len(hits) != 1:
        what = "no" if not hits else "more than one"
        raise UserError(f"{what} cached kernel matches {prefix!r}; see `summon kernel ls`")
    return hits[0]


def build_kernel(
    fragments: Sequence[str], progress: ProgressFn = lambda p: None, jobs: int | None = None
) -> Kernel:
    """The kernel for these fragments: from the cache, or configured, verified and built."""
    cached = cached_kernel(fragments)
    if cached is not None:
        return cached
    sid = source_id()
    tree = source_tree(progress)
    build_dir = paths.cache_dir() / "kernel-build" / sid
    build_dir.mkdir(parents=True, exist_ok=True)
    # One build at a time per build folder: make runs in it, and tinyconfig rewrites .config.
    with paths.locked(build_dir / ".lock"):
        progress(Progress("configuring (tinyconfig + fragments)"))
        final_text = configure(fragments, tree, build_dir)
        digest = config_hash(final_text)
        kernel = Kernel(digest, kernels_dir() / digest)
        if not kernel.bzimage.is_file():
            make = _make(tree, build_dir)
            _compile(make, build_dir, kernel, fragments, final_text, progress, jobs)
        _record_request(fragments, sid, digest)
    return kernel


def configure(fragments: Sequence[str], tree: Path, build_dir: Path) -> str:
    """Write build_dir/.config for the fragments (tinyconfig, merge, olddefconfig); verify it.

    Returns the final .config; raises KernelConfigError if an option did not survive.
    """
    wanted = requested_options(fragments)
    make = _make(tree, build_dir)
    _run_quiet([*make, "tinyconfig"], build_dir)
    dot_config = build_dir / ".config"
    dot_config.write_text(merge_config(dot_config.read_text(), wanted))
    _run_quiet([*make, "olddefconfig"], build_dir)
    final_text = dot_config.read_text()
    verify_config(wanted, final_text, tree)
    return final_text


def _make(tree: Path, build_dir: Path) -> list[str]:
    return ["make", "-C", str(tree), f"O={build_dir}", "ARCH=x86_64"]


def _compile(
    make: list[str],
    build_dir: Path,
    kernel: Kernel,
    fragments: Sequence[str],
    final_text: str,
    progress: ProgressFn,
    jobs: int | None,
) -> None:
    kernels_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=kernels_dir(), prefix=".build-"))
    log_path = tmp / "build.log"
    total = _expected_lines()
    done = 0
    started = time.monotonic()
    env = {**os.environ, **REPRODUCIBLE_ENV, "LC_ALL": "C"}
    cmd = [*make, f"-j{jobs or os.cpu_count() or 1}", "bzImage"]
    try:
        with log_path.open("w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=build_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                preexec_fn=_stop_with_parent,
            )
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    log.write(line)
                    if _STEP_RE.match(line):
                        done += 1
                        progress(Progress("compiling", done, max(total, done), line.strip()))
                status = proc.wait()
            finally:
                if proc.poll() is None:  # interrupted: make must not keep running
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
        image = build_dir / "arch" / "x86" / "boot" / "bzImage"
        if status != 0 or not image.is_file():
            saved = _keep_failed_log(log_path, kernel.config_hash)
            raise KernelBuildError(
                f"the kernel build failed (make exit status {status}); its log is {saved}"
            )
        shutil.copyfile(image, tmp / "bzImage")
        (tmp / "config").write_text(final_text)
        meta = {
            "config_hash": kernel.config_hash,
            "fragments": list(fragments),
            "version": _kernel_version(build_dir),
            "size": image.stat().st_size,
            "build_seconds": round(time.monotonic() - started, 1),
            "build_lines": done,
            "source": SOURCE_PACKAGE,
        }
        (tmp / "kernel.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if kernel.path.exists():  # built meanwhile by another summon: keep theirs
            return
        os.rename(tmp, kernel.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_with_parent() -> None:
    """In the child: SIGTERM when summon dies, even by a signal it cannot catch.

    make then stops starting compilers; the few running finish their file and exit.
    """
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_quiet(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        preexec_fn=_stop_with_parent,
    )
    if proc.returncode != 0:
        log = kernels_dir() / "logs" / f"{cmd[-1]}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        raise KernelBuildError(f"`make {cmd[-1]}` failed; its log is {log}")


def _keep_failed_log(log_path: Path, digest: str) -> Path:
    saved = kernels_dir() / "logs" / f"failed-{digest[:12]}.log"
    saved.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log_path, saved)
    return saved


def _expected_lines() -> int:
    """About how many step lines a build prints: the most of any earlier build."""
    seen = [int(k.meta().get("build_lines", 0)) for k in list_kernels()]
    return max([n for n in seen if n > 0] or [DEFAULT_BUILD_LINES])


def _kernel_version(build_dir: Path) -> str:
    release = build_dir / "include" / "config" / "kernel.release"
    with contextlib.suppress(OSError):
        return release.read_text().strip()
    return ""


def _record_request(fragments: Sequence[str], sid: str, digest: str) -> None:
    folder = kernels_dir() / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{os.getpid()}.tmp"
    tmp.write_text(digest + "\n")
    tmp.rename(folder / request_key(fragments, sid))


def kernel_options(kernel: Kernel) -> dict[str, str]:
    """The final .config of a cached kernel, as CONFIG name -> value."""
    return parse_config(kernel.config.read_text())
