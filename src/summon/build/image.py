"""App folder -> image: runs the build steps in order and writes the result into the store.

manifest -> interpreter -> vendored packages -> module closure -> library closure ->
byte-compiled rootfs -> layer, config, bill of materials -> OCI index, tagged.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import summon
from summon import manifest as manifest_mod
from summon.build import debian
from summon.build.assemble import (
    APP_DIR,
    RUNTIME_ROOT,
    SITE_DIR,
    compile_jobs,
    module_files,
    runtime_source,
)
from summon.build.assemble import whole_stdlib as whole_stdlib_jobs
from summon.build.check import check_image
from summon.build.closure import Closure, compute_closure
from summon.build.distributions import MODULES_TSV, modules_table
from summon.build.elf import LibraryClosure, library_closure
from summon.build.graph import ABSENT_EXCLUDED, ABSENT_MISSING, SCRIPT, Edge, ImportGraph
from summon.build.imports import RUNS_IMPORT
from summon.build.interface import add_server_requirements, entry_interface
from summon.build.python import Interpreter, probe_interpreter
from summon.build.rootfs import Rootfs
from summon.build.vendor import Package, vendor
from summon.build.verify import Verification, VerifyPlan, verify_image
from summon.errors import BuildError
from summon.manifest import Manifest
from summon.store.image import APP_JSON, BOM_TYPE, Image, unpack, unpacked_size
from summon.store.layout import (
    CONFIG,
    INDEX,
    LAYER_GZIP,
    MANIFEST,
    Descriptor,
    Store,
    normalize_ref,
)

__all__ = [
    "APP_DIR",
    "DATA_DIR",
    "RUNTIME_ROOT",
    "SITE_DIR",
    "BuildResult",
    "build",
    "image_argv",
    "runtime_modules",
    "runtime_source",
]

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
    unpacked: int = 0  # bytes of its files: what `summon images` shows as UNPACKED
    verification: Verification | None = None  # None with verify=False
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step


def image_argv(interp: Interpreter) -> list[str]:
    major, minor = interp.version_info[:2]
    return [f"/usr/bin/python{major}.{minor}", "-S", "-E", f"{RUNTIME_ROOT}/boot.py"]


def runtime_modules(m: Manifest) -> tuple[str, ...]:
    """The parts of summon.runtime this app's image needs; each costs size and start time."""
    # vm and ctypes (mount, reboot) in every image, so the same image boots as a VM without
    # a rebuild: 0.23 MB unpacked (vm, ctypes, _ctypes, libffi) that a sandboxed run never
    # imports but for vm itself (0.4 ms, to see that it is not a VM's init).
    # hints: what the runtime says when an app's fork or exec is denied (imported on that
    # error path only, so no trace would see it).
    # stats: imported when the host first asks for the app's figures (SIGQUIT).
    mods = ["summon.runtime.init", "summon.runtime.vm", "summon.runtime.hints", "ctypes",
            "summon.runtime.stats"]  # fmt: skip
    if m.entry.kind == "function":
        mods += ["summon.devices", "summon.runtime.posix_devices"]
        if m.network == "socket":
            # handoff: imported only when a gateway hands connections over.
            mods += ["summon.runtime.socket_stack", "summon.runtime.handoff"]
        elif m.network == "direct":
            # The stack and what it imports only when configured so: the link of either
            # target, DHCP and the stub resolver.
            mods += ["summon.net.stack", "summon.net.links.tap", "summon.net.links.packet",
                     "summon.net.dhcp", "summon.net.dns"]  # fmt: skip
        if m.interface:
            # The runtime's HTTP server for a WSGI/ASGI entry (h11 is vendored for it).
            mods += ["summon.runtime.http.settings", "summon.runtime.http.server"]
    return tuple(mods)


def build(
    app_dir: Path,
    store: Store,
    tag: str | None = None,
    step: Step = lambda s: None,
    whole_stdlib: bool = False,
    boot: bool = False,
    verify: bool = True,
) -> BuildResult:
    """Build the app in app_dir into an image in store, tagged `tag` (default name:version).

    whole_stdlib puts every stdlib module and extension in, as a generic image would: the
    baseline the benchmarks compare the traced closure against. boot adds the boot artifact
    for VM targets (summon.build.boot; building the image's kernel if it is not cached).
    verify imports the entry (and runs the probe) inside the built image before tagging it
    (summon.build.verify): a module the image lacks fails the build.
    """
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

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
        step("inspecting the entry")
        m = replace(m, interface=entry_interface(m, interp, site))
        if m.interface:
            step(f"vendoring h11 for the runtime's HTTP server ({m.interface.upper()} entry)")
            packages += add_server_requirements(interp, site)
        lap("vendor")

        step("computing the module closure")
        closure = compute_closure(
            interp,
            m.app_dir,
            m.entry,
            search_path=[m.app_dir, site],
            probe=m.probe,
            include=m.include,
            exclude=m.exclude,
            runtime_modules=runtime_modules(m),
            packages=packages,
            env=m.env,
        )
        lap("closure")

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
        jobs, module_paths = module_files(fs, m, interp, closure, packages, site, tmp / "pyc")
        if whole_stdlib:
            jobs += whole_stdlib_jobs(fs, interp, {j.image_path for j in jobs}, tmp / "pyc")
        compile_jobs(fs, interp, jobs)
        data_map = _add_data(fs, m)
        app_config = _app_config(m, data_map)
        fs.add_bytes(
            "/" + APP_JSON,
            json.dumps(app_config, indent=2, sort_keys=True).encode() + b"\n",
            "config",
        )
        fs.add_bytes(MODULES_TSV, _modules_tsv(closure, packages), "config")
        lap("assemble")
        # Every module of the closure must be where the image's interpreter looks for it.
        check_image(fs, closure, interp, module_paths)
        lap("check")

        step("writing the root filesystem")
        writer = store.writer()
        try:
            diff_id, uncompressed = fs.write(writer)  # type: ignore[arg-type]
            layer = writer.commit(LAYER_GZIP)
        except BaseException:
            writer.abort()
            raise
        lap("write")

        verification = None
        if verify:
            step("verifying: importing the entry inside the image")
            rootfs = unpack(store, layer)  # where `summon run` will find it, too
            lap("verify-unpack")
            verification = verify_image(
                rootfs,
                _verify_plan(m, interp, closure, app_config),
                image=ref,
                app_config=app_config,
            )
            lap("verify")

        step("writing the image")
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
        bom_blob = store.put_json(bom, BOM_TYPE)
        config = image_config(m, argv, diff_id, bom_blob)
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
        lap("image")

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
        warnings=[*closure.warnings, *(verification.warnings if verification else [])],
        unpacked=unpacked_size(bom),
        verification=verification,
        timings={**timings, **{f"closure-{k}": v for k, v in closure.timings.items()}},
    )


# The user an image runs as in container engines (podman, containerd, Kubernetes): numeric, so
# runAsNonRoot can check it, and not root. The sandbox target maps the same uid.
IMAGE_UID = 65532


def image_config(m: Manifest, argv: list[str], diff_id: str, bom: Descriptor) -> dict[str, Any]:
    """The OCI image config: what an engine needs to run the image unchanged, and labels that
    tie it to its bill of materials and summon."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{IMAGE_UID}:{IMAGE_UID}",
            "Entrypoint": argv,
            "Cmd": list(m.args),
            "Env": ["PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in sorted(m.env.items()))],
            "WorkingDir": "/",
            "ExposedPorts": {str(p): {} for p in m.ports},
            "Labels": {
                "dev.summon.name": m.name,
                "dev.summon.version": summon.__version__,
                "dev.summon.network": m.network,
                "dev.summon.bom": bom.digest,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }


def _dlopened(interp: Interpreter) -> list[Path]:
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        candidate = Path(folder) / "libgcc_s.so.1"
        if candidate.is_file():
            return [candidate]
    return []


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
    if m.interface:
        entry = {"kind": m.interface, "module": m.entry.module, "attr": m.entry.function}
    elif m.entry.kind == "function":
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
    graph = closure.graph
    for info in sorted(closure.modules.values(), key=lambda i: i.name):
        version = interp.version
        if info.group == "site":
            pkg = pkg_of_top.get(info.name.split(".")[0])
            version = pkg.version if pkg else "?"
        elif info.group == "app":
            version = m.version
        elif info.group == "runtime":
            version = summon.__version__
        entry: dict[str, Any] = {
            "name": info.name,
            "group": info.group,
            "kind": info.kind,
            "reason": info.reason,
            "version": version,
            "path": module_paths.get(info.name, ""),
            "size": size_of.get(module_paths.get(info.name, ""), 0),
        }
        if info.via is not None:
            entry["via"] = _edge_json(info.via)
        elif graph is not None and graph.into.get(info.name):
            # In because the trace saw it loaded (no static chain leads to it, e.g. an
            # optional import): who names it, for `summon inspect --why`.
            entry["named_by"] = [
                _edge_json(e) for e in _first_importers(graph.into[info.name], graph)
            ]
        modules.append(entry)
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
        "packages": [
            {"name": p.name, "version": p.version, "size": p.size, "top_level": list(p.top_level)}
            for p in packages
        ],
        "modules": modules,
        "left_out": [{"name": k, "reason": v} for k, v in sorted(closure.left_out.items())],
        "absent": [
            {
                "name": a.name,
                "why": a.why,
                "detail": a.detail,
                "importers": [_edge_json(e) for e in _first_importers(a.importers, graph)],
            }
            for a in sorted(closure.absent.values(), key=lambda a: a.name)
        ],
        "include": list(m.include),
        "exclude": list(m.exclude),
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


_IMPORTERS_KEPT = 5  # importers of an absent module the BOM lists (enough to say who)


def _edge_json(edge: Edge) -> dict[str, Any]:
    """An import edge in the BOM: who imports it, at which line, how (statement, call,
    string, codec, strptime, c) and under which guard."""
    doc: dict[str, Any] = {"module": edge.importer, "line": edge.line, "how": edge.how}
    if edge.guard:
        doc["guard"] = edge.guard
    if edge.runs != RUNS_IMPORT:
        doc["runs"] = edge.runs
    return doc


def _first_importers(edges: list[Edge], graph: ImportGraph | None) -> list[Edge]:
    """The importers worth showing first: unguarded ones, the app's, then vendored code's."""
    rank = {"app": 0, "site": 1, "runtime": 2, "stdlib": 3}

    def group(importer: str) -> int:
        node = graph.nodes.get(importer) if graph is not None else None
        return 0 if importer == SCRIPT else rank.get(node.loc.group, 4) if node else 4

    seen: dict[tuple[str, int], Edge] = {}
    for e in sorted(edges, key=lambda e: (e.guard != "", group(e.importer), e.importer, e.line)):
        seen.setdefault((e.importer, e.line), e)
    return list(seen.values())[:_IMPORTERS_KEPT]


def _modules_tsv(closure: Closure, packages: list[Package]) -> bytes:
    """/etc/summon/modules.tsv: what the runtime's hint says about a module it cannot find."""
    missing = [a.name for a in closure.absent.values() if a.why == ABSENT_MISSING]
    excluded = {a.name: a.detail for a in closure.absent.values() if a.why == ABSENT_EXCLUDED}
    return modules_table(missing, excluded, packages)


def _verify_plan(
    m: Manifest, interp: Interpreter, closure: Closure, app_config: dict[str, Any]
) -> VerifyPlan:
    entry: dict[str, Any]
    if m.entry.kind == "function":
        entry = {"kind": "function", "module": m.entry.module, "function": m.entry.function}
    else:
        graph = closure.graph
        edges = graph.out.get(SCRIPT, []) if graph is not None else []
        # What the script imports at its top level (its __main__ block included): it runs
        # when the script starts.
        imports = sorted(
            {
                (e.target, e.line)
                for e in edges
                if e.runs == RUNS_IMPORT and not e.guard and e.how in ("statement", "call")
            },
            key=lambda t: t[1],
        )
        entry = {"kind": "script", "script": m.entry.script, "imports": imports}
    return VerifyPlan(
        interpreter=image_argv(interp)[0],
        path=(*app_config["path"], RUNTIME_ROOT),
        runtime=runtime_modules(m),
        entry=entry,
        include=m.include,
        probe=m.probe,
        env=dict(m.env),
        network="none" if m.network == "none" else "socket",
        memory=m.memory,
        pids=m.pids,
    )
