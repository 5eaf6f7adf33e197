"""App folder -> image: runs the build steps in order and writes the result into the store.

manifest -> interpreter -> vendored packages -> module closure -> library closure ->
byte-compiled rootfs -> layer, config, bill of materials -> OCI index, tagged.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import summon
from summon import manifest as manifest_mod
from summon.build import debian
from summon.build.closure import Closure, ModuleInfo, app_sources, compute_closure
from summon.build.elf import LibraryClosure, library_closure
from summon.build.python import Interpreter, probe_interpreter
from summon.build.rootfs import Rootfs
from summon.build.syscalls import REPORT_KEY, DerivedSyscalls, record_image, seal_config
from summon.build.vendor import Package, vendor
from summon.errors import BuildError
from summon.manifest import Manifest
from summon.store.image import APP_JSON, BOM_TYPE, Image, unpack
from summon.store.layout import (
    CONFIG,
    INDEX,
    LAYER_GZIP,
    MANIFEST,
    Descriptor,
    Store,
    normalize_ref,
)
from summon.targets.base import SYSCALLS_LABEL

RUNTIME_ROOT = "/usr/lib/summon"
SITE_DIR = RUNTIME_ROOT + "/site"
APP_DIR = "/app"
DATA_DIR = "/data"
MOUNT_POINTS = ("/proc", "/dev", "/sys", "/tmp")

Step = Callable[[str], None]


@dataclass
class BuildResult:
    ref: str
    image: Image
    sizes: dict[str, int]
    layer_size: int  # compressed
    modules: int
    left_out: int
    warnings: list[str] = field(default_factory=list)
    syscalls: DerivedSyscalls | None = None  # None: the image keeps the static allowlist


def image_argv(interp: Interpreter) -> list[str]:
    major, minor = interp.version_info[:2]
    return [f"/usr/bin/python{major}.{minor}", "-S", "-E", f"{RUNTIME_ROOT}/boot.py"]


def runtime_source() -> Path:
    """The folder holding the `summon` package whose runtime goes into images."""
    return Path(summon.__file__).resolve().parent.parent


def runtime_modules(m: Manifest) -> tuple[str, ...]:
    """The parts of summon.runtime this app's image needs; each costs size and start time."""
    # vm and ctypes (mount, reboot) in every image, so the same image boots as a VM without
    # a rebuild: 0.23 MB unpacked (vm, ctypes, _ctypes, libffi) that a sandboxed run never
    # imports but for vm itself (0.4 ms, to see that it is not a VM's init).
    mods = ["summon.runtime.init", "summon.runtime.vm", "ctypes"]
    if m.seal != "off":
        mods += ["summon.runtime.seal", "summon.runtime.seal_hook"]
    if m.entry.kind == "function":
        mods += ["summon.devices", "summon.runtime.posix_devices"]
        if m.network == "socket":
            mods.append("summon.runtime.socket_stack")
        elif m.network == "direct":
            # The stack and what it imports only when configured so: the link of either
            # target, DHCP and the stub resolver.
            mods += ["summon.net.stack", "summon.net.links.tap", "summon.net.links.packet",
                     "summon.net.dhcp", "summon.net.dns"]  # fmt: skip
    return tuple(mods)


def build(
    app_dir: Path,
    store: Store,
    tag: str | None = None,
    step: Step = lambda s: None,
    whole_stdlib: bool = False,
    boot: bool = False,
    record: bool = True,
) -> BuildResult:
    """Build the app in app_dir into an image in store, tagged `tag` (default name:version).

    whole_stdlib puts every stdlib module and extension in, as a generic image would: the
    baseline the benchmarks compare the traced closure against. boot adds the boot artifact
    for VM targets (summon.build.boot; building the image's kernel if it is not cached).
    record runs the image once in the sandbox to derive its syscall allowlist
    (summon.build.syscalls); without it, or where it cannot run, the static list holds.
    """
    step("reading the manifest")
    m = manifest_mod.load(app_dir)
    ref = normalize_ref(tag or f"{m.name}:{m.version}")
    step(f"probing the image interpreter {m.python}")
    interp = probe_interpreter(m.python)

    with tempfile.TemporaryDirectory(dir=store.tmp_dir, prefix="build-") as tmp_name:
        tmp = Path(tmp_name)
        site = tmp / "site"
        site.mkdir()
        packages: list[Package] = []
        if m.requirements:
            step(f"vendoring {len(m.requirements)} requirement(s) for Python {interp.version}")
            packages = vendor(m.requirements, interp, site)

        step("tracing the module closure")
        closure = compute_closure(
            interp,
            m.app_dir,
            m.entry,
            search_path=[m.app_dir, site],
            probe=m.probe,
            include=m.include,
            runtime_modules=runtime_modules(m),
        )

        step("finding the shared-library closure")
        extensions = sorted(closure.extension_files())
        if whole_stdlib:
            extensions = sorted(set(extensions) | set(interp.dynload.glob("*.so")))
        # glibc dlopens libgcc_s for pthread_exit (thread teardown); no DT_NEEDED names it.
        libs = library_closure([interp.executable, *extensions, *_dlopened(interp)])

        step("byte-compiling modules")
        fs = Rootfs()
        for mp in MOUNT_POINTS:
            fs.add_dir(mp, 0o1777 if mp == "/tmp" else 0o755)
        argv = image_argv(interp)
        # The interpreter looks for lib-dynload at start and complains if it is missing.
        fs.add_dir(str(interp.dynload))
        fs.add_file(argv[0], interp.executable, "interpreter", 0o755)
        for lib in libs.libraries:
            fs.add_file(lib.image_path, lib.host_path, "libraries", 0o755)
        jobs, module_paths = _module_files(fs, m, interp, closure, site, tmp / "pyc")
        if whole_stdlib:
            jobs += _whole_stdlib(fs, interp, {j.image_path for j in jobs}, tmp / "pyc")
        _compile(fs, interp, jobs)
        data_map = _add_data(fs, m)
        app_config = _app_config(m, data_map)
        script = m.app_dir / m.entry.script if m.entry.kind == "script" else None
        sources = [f for f, _name, _pkg in app_sources(m.app_dir, exclude=m.data)]
        app_config["seal"] = seal_config(m.seal, fs, sources, script)
        fs.add_bytes(
            "/" + APP_JSON,
            json.dumps(app_config, indent=2, sort_keys=True).encode() + b"\n",
            "config",
        )

        step("writing the root filesystem")
        writer = store.writer()
        try:
            diff_id, uncompressed = fs.write(writer)  # type: ignore[arg-type]
            layer = writer.commit(LAYER_GZIP)
        except BaseException:
            writer.abort()
            raise

        derived: DerivedSyscalls | None = None
        notes: list[str] = []
        if record:
            step("recording the syscalls the image makes (in the sandbox)")
            derived, notes = record_image(
                unpack(store, layer), app_config, argv, image=ref, extra=m.syscalls
            )

        step("writing the image")
        labels = {"dev.summon.name": m.name, "dev.summon.version": summon.__version__}
        if derived is not None:
            labels[SYSCALLS_LABEL] = derived.label()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": argv,
                "Env": [f"{k}={v}" for k, v in sorted(m.env.items())],
                "WorkingDir": "/",
                "ExposedPorts": {str(p): {} for p in m.ports},
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_desc = store.put_json(config, CONFIG)
        image_manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.to_json()],
        }
        image_desc = store.put_json(
            image_manifest, MANIFEST, platform={"architecture": "amd64", "os": "linux"}
        )
        bom = _bom(
            m,
            interp,
            closure,
            module_paths,
            libs,
            packages,
            fs,
            app_config,
            layer,
            diff_id,
            uncompressed,
        )
        bom[REPORT_KEY] = derived.bom() if derived is not None else {"derived": False}
        bom_blob = store.put_json(bom, BOM_TYPE)
        bom_desc = store.put_artifact(BOM_TYPE, [bom_blob], image_desc)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [image_desc.to_json(), bom_desc.to_json()],
            "annotations": {"org.opencontainers.image.title": m.name},
        }
        index_desc = store.put_json(index, INDEX)
        store.tag(ref, index_desc)
        sizes = fs.sizes()

    image = Image(store, ref, Descriptor(INDEX, index_desc.digest, index_desc.size))
    if boot:
        from summon.build.boot import add_boot_artifact

        image = add_boot_artifact(image, step)
    return BuildResult(
        ref=ref,
        image=image,
        sizes=sizes,
        layer_size=layer.size,
        modules=len(closure.modules),
        left_out=len(closure.left_out),
        warnings=[*closure.warnings, *notes],
        syscalls=derived,
    )


def _dlopened(interp: Interpreter) -> list[Path]:
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        candidate = Path(folder) / "libgcc_s.so.1"
        if candidate.is_file():
            return [candidate]
    return []


@dataclass(frozen=True)
class CompileJob:
    source: Path
    out: Path  # where the .pyc is written on the host
    shown: str  # the source's image path, for tracebacks
    image_path: str  # where the .pyc goes in the image
    group: str


def _module_files(
    fs: Rootfs, m: Manifest, interp: Interpreter, closure: Closure, site: Path, pyc_dir: Path
) -> tuple[list[CompileJob], dict[str, str]]:
    """Put every module of the closure into fs.

    Return the jobs that make the .pyc files, and each module's image path.
    """
    image_roots = {"site": SITE_DIR, "runtime": RUNTIME_ROOT, "app": APP_DIR}
    jobs: list[CompileJob] = []
    module_paths: dict[str, str] = {}

    def place(info: ModuleInfo) -> tuple[str, str]:
        if info.relpath is None or info.root is None:
            raise BuildError(f"module {info.name} has no file the image could hold")
        # stdlib folders keep their host paths, so the interpreter finds them where it looks.
        image_root = image_roots.get(info.group, str(info.root))
        return f"{image_root}/{info.relpath}", info.group

    for info in sorted(closure.modules.values(), key=lambda i: i.name):
        if info.origin is None:
            continue
        host = Path(info.origin)
        image_path, group = place(info)
        module_paths[info.name] = image_path
        if group == "app":
            continue  # the whole app folder is added below
        if host.suffix == ".py":
            # Sourceless .pyc in place of the .py: imported directly, no source needed.
            pyc = image_path[:-3] + ".pyc"
            module_paths[info.name] = pyc
            jobs.append(CompileJob(host, pyc_dir / pyc.lstrip("/"), image_path, pyc, group))
        else:
            fs.add_file(image_path, host, group, 0o755 if host.suffix == ".so" else 0o644)

    # Vendored packages also need their data files and metadata, not only their modules.
    for top in closure.site_packages():
        folder = site / top
        for f in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts:
                fs.add_file(SITE_DIR + "/" + f.relative_to(site).as_posix(), f, "site")
    for dist in sorted(site.glob("*.dist-info")):
        for f in sorted(dist.iterdir()):
            if f.is_file() and f.name in ("METADATA", "top_level.txt", "WHEEL"):
                fs.add_file(SITE_DIR + "/" + f.relative_to(site).as_posix(), f, "site")

    boot = runtime_source() / "summon" / "runtime" / "boot.py"
    fs.add_file(RUNTIME_ROOT + "/boot.py", boot, "runtime", 0o644)

    # The app's own code: sources kept (tracebacks show lines) with unchecked-hash .pyc beside.
    cache_tag = f"cpython-{interp.version_info[0]}{interp.version_info[1]}"
    # The same files the closure trace scanned, so an app module it saw is never left out.
    for f, _name, _pkg in app_sources(m.app_dir, exclude=m.data):
        rel = f.relative_to(m.app_dir)
        image_path = f"{APP_DIR}/{rel.as_posix()}"
        fs.add_file(image_path, f, "app", 0o644)
        pyc_rel = (rel.parent / "__pycache__" / f"{rel.stem}.{cache_tag}.pyc").as_posix()
        jobs.append(
            CompileJob(f, pyc_dir / "app" / pyc_rel, image_path, f"{APP_DIR}/{pyc_rel}", "app")
        )
    return jobs, module_paths


def _whole_stdlib(
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


def _compile(fs: Rootfs, interp: Interpreter, jobs: list[CompileJob]) -> None:
    """Byte-compile with the image's interpreter (its magic number), then add the results."""
    if not jobs:
        return
    for job in jobs:
        job.out.parent.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("_compile.py")
    payload = json.dumps([[str(j.source), str(j.out), j.shown] for j in jobs])
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
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"byte-compiling failed: {last}")
    for job in jobs:
        fs.add_file(job.image_path, job.out, job.group, 0o644)


def _add_data(fs: Rootfs, m: Manifest) -> dict[str, str]:
    """Bake each data folder in under /data/<name>; return name -> image path."""
    out = {}
    for folder in m.data:
        image_root = f"{DATA_DIR}/{folder.name}"
        fs.add_dir(image_root)
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if f.is_symlink():
                raise BuildError(
                    f"{f}: symbolic links in data folders are not supported; copy the file"
                )
            if f.is_dir():
                fs.add_dir(f"{image_root}/{rel}")
            elif f.is_file():
                fs.add_file(f"{image_root}/{rel}", f, "data", 0o644)
        out[folder.name] = image_root
    return out


def _app_config(m: Manifest, data_map: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, str]
    if m.entry.kind == "function":
        entry = {"kind": "function", "module": m.entry.module, "function": m.entry.function}
    else:
        entry = {"kind": "script", "path": f"{APP_DIR}/{m.entry.script}"}
    return {
        "name": m.name,
        "entry": entry,
        "path": [APP_DIR, SITE_DIR],
        "data": data_map,
        "network": m.network,
        "ports": [str(p) for p in m.ports],
        "env": dict(sorted(m.env.items())),
        "args": list(m.args),
        "memory": m.memory,
        "pids": m.pids,
        "volumes": list(m.volumes),
        "probe": m.probe,
    }


def _bom(
    m: Manifest,
    interp: Interpreter,
    closure: Closure,
    module_paths: dict[str, str],
    libs: LibraryClosure,
    packages: list[Package],
    fs: Rootfs,
    app_config: dict[str, Any],
    layer: Descriptor,
    diff_id: str,
    uncompressed: int,
) -> dict[str, Any]:
    """The bill of materials: everything in the image, with versions and sizes."""
    host_files = [interp.executable, *(lib.host_path for lib in libs.libraries)]
    owner = debian.owners(host_files)
    size_of = {path: node.size() for path, node in fs.nodes.items()}
    pkg_of_top = {top: p for p in packages for top in p.top_level}

    modules = []
    for info in sorted(closure.modules.values(), key=lambda i: i.name):
        version = interp.version
        if info.group == "site":
            pkg = pkg_of_top.get(info.name.split(".")[0])
            version = pkg.version if pkg else "?"
        elif info.group == "app":
            version = m.version
        elif info.group == "runtime":
            version = summon.__version__
        modules.append(
            {
                "name": info.name,
                "group": info.group,
                "kind": info.kind,
                "reason": info.reason,
                "version": version,
                "path": module_paths.get(info.name, ""),
                "size": size_of.get(module_paths.get(info.name, ""), 0),
            }
        )
    return {
        "schemaVersion": 1,
        "name": m.name,
        "version": m.version,
        "entry": str(m.entry),
        "app": app_config,
        "interpreter": {
            "path": image_argv(interp)[0],
            "version": interp.version,
            "package": owner.get(interp.executable, ""),
            "size": interp.executable.stat().st_size,
        },
        "libraries": [
            {
                "soname": lib.soname,
                "path": lib.image_path,
                "package": owner.get(lib.host_path, ""),
                "size": lib.size,
                "needed_by": sorted(str(p) for p in lib.needed_by),
            }
            for lib in libs.libraries
        ],
        "packages": [{"name": p.name, "version": p.version, "size": p.size} for p in packages],
        "modules": modules,
        "left_out": [{"name": k, "reason": v} for k, v in sorted(closure.left_out.items())],
        "files": [
            {"path": path, "group": node.group, "size": node.size()}
            for path, node in sorted(fs.nodes.items())
            if node.kind == "file" and node.group in ("app", "data")
        ],
        "sizes": fs.sizes(),
        "layer": {
            "digest": layer.digest,
            "size": layer.size,
            "diff_id": diff_id,
            "uncompressed": uncompressed,
        },
    }
