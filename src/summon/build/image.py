"""App folder -> image: runs the build steps in order and writes the result into the store.

manifest -> interpreter -> vendored packages -> module closure -> library closure ->
byte-compiled rootfs -> layer, config, bill of materials -> OCI index, tagged.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from summon import manifest as manifest_mod
from summon.build import zones
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
from summon.build.closure import OPTIONAL, Closure, app_sources, compute_closure
from summon.build.distributions import MODULES_TSV
from summon.build.elf import host_libraries, library_closure
from summon.build.graph import SCRIPT
from summon.build.imageroot import write_root, write_root_again
from summon.build.imports import RUNS_IMPORT
from summon.build.interface import (
    TLS_PYTHON_REQUIREMENTS,
    add_runtime_requirements,
    add_server_requirements,
    entry_interface,
)
from summon.build.own_dist import dotenv_warnings, own_distribution
from summon.build.python import Interpreter, probe_interpreter
from summon.build.records import (
    ETC_FILES,
    app_json,
    bom_of,
    host_etc_files,
    image_argv,
    image_config,
    modules_tsv,
)
from summon.build.rootfs import Rootfs
from summon.build.syscalls import (
    REPORT_KEY,
    DerivedSyscalls,
    Learned,
    record_image,
    seal_config,
    static_with,
    warm_note,
)
from summon.build.vendor import Package, vendor
from summon.build.verify import Verification, VerifyPlan, verify_image
from summon.errors import BuildError
from summon.manifest import Manifest
from summon.store import rootfs_artifact
from summon.store.image import APP_JSON, BOM_TYPE, Image, unpacked_size
from summon.store.layout import (
    CONFIG,
    INDEX,
    MANIFEST,
    Descriptor,
    Store,
    normalize_ref,
)
from summon.store.unpacked import unpack
from summon.targets.base import SecretFile

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

DATA_DIR = manifest_mod.DATA_IMAGE_DIR
# Where targets mount things over the read-only image: it has the empty folders, so that runc
# need not (and cannot) make them. /run/secrets: the run's secrets (--secret).
MOUNT_POINTS = ("/proc", "/dev", "/sys", "/tmp", "/run", "/run/secrets")

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
    syscalls: DerivedSyscalls | None = None  # None: the image keeps the static allowlist
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    untagged: str = ""  # the ID of the image the tag named before, now <none>


# summon.tls's modules each TLS backend uses (its own lazy imports included).
_TLS_COMMON = (
    "device", "errors", "events", "hello", "record", "session", "settings", "state", "streams",
    "pem", "x509.certificate", "x509.der", "x509.names",
)  # fmt: skip
TLS_MODULES = {
    "openssl": (*_TLS_COMMON, "openssl_backend"),
    "python": (*_TLS_COMMON, "python_backend", "tlslite_ng", "x509.path", "x509.signature"),
}


def _optional(m: Manifest) -> tuple[str, ...]:
    """What the trace keeps out unless the app itself asks for it (closure.OPTIONAL): the
    openssl TLS backend needs ssl for real."""
    if m.tls is None:
        return OPTIONAL
    if m.tls.backend == "openssl":
        return ()
    return OPTIONAL


def runtime_modules(m: Manifest) -> tuple[str, ...]:
    """The parts of summon.runtime this app's image needs; each costs size and start time."""
    # vm and ctypes (mount, reboot) in every image, so the same image boots as a VM without
    # a rebuild: 0.23 MB unpacked (vm, ctypes, _ctypes, libffi) that a sandboxed run never
    # imports but for vm itself (0.4 ms, to see that it is not a VM's init).
    # hints: what the runtime says when an app's fork or exec is denied (imported on that
    # error path only, so no trace would see it). resume: what a VM restored from a snapshot
    # reseeds (vm imports it at the snapshot point; summon.net registers its hooks there).
    # stats: imported when the host first asks for the app's figures (SIGQUIT). localzone:
    # imported when a run sets TZ. findlib: ctypes.util's find_library, in the image.
    mods = ["summon.runtime.init", "summon.runtime.vm", "summon.runtime.hints", "ctypes",
            "summon.runtime.resume", "summon.runtime.stats",
            "summon.runtime.localzone", "summon.runtime.findlib"]  # fmt: skip
    if m.seal != "off":
        mods += ["summon.runtime.seal", "summon.runtime.seal_hook", "summon.runtime.seal_digest",
                 "summon.runtime.seal_early", "summon.runtime.seal_net",  # early: learning only
                 "summon.runtime.seal_said", "summon.runtime.seal_ctypes",
                 "summon.runtime.seal_cells", "summon.runtime.seal_stdlib",
                 "summon.runtime.seal_end", "summon.runtime.prepare"]  # fmt: skip
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
            # The runtime's HTTP server for a WSGI/ASGI entry (h11 is vendored for it), and
            # its socketless twin (6.5 kB, never imported on a socket target) so that the
            # same image serves from a browser tab, which has no sockets.
            mods += ["summon.runtime.http.settings", "summon.runtime.http.server",
                     "summon.runtime.http.exchange"]  # fmt: skip
            if m.seal != "off":
                mods.append("summon.runtime.http.warmup")  # its requests before the seal
            if m.interface == "asgi":
                # Imported at the first WebSocket upgrade only, with wsproto (vendored for it).
                mods.append("summon.runtime.http.websocket")
        if m.tls is not None or m.secrets:
            mods.append("summon.secrets")
        if m.stores:
            # The KV_RW device: summon.kv and what it imports only where it is used: fcntl
            # (the store's lock) and warnings are imported when a store opens, json when a
            # merge uses the "json" policy, bundle for store.export_bundle; no trace sees them.
            mods += ["summon.kv", "summon.kv.bundle", "fcntl", "warnings", "json"]
        if m.tls is not None:
            # The TLS device and its one backend: "openssl" brings ssl (libssl, libcrypto),
            # "python" tlslite-ng and no libssl or libcrypto at all. The device imports most
            # of these only when a context is made, which no trace sees.
            mods += [f"summon.tls.{name}" for name in TLS_MODULES[m.tls.backend]]
            if m.tls.ports:
                mods.append("summon.tls.terminate")
    return tuple(mods)


def build(
    app_dir: Path,
    store: Store,
    tag: str | None = None,
    step: Step = lambda s: None,
    whole_stdlib: bool = False,
    boot: bool = False,
    verify: bool = True,
    record: bool = True,
    manifest: Path | None = None,
    secrets: tuple[SecretFile, ...] = (),
    env: Mapping[str, str] | None = None,
) -> BuildResult:
    """Build the app in app_dir into an image in store, tagged `tag` (default name:version).

    whole_stdlib puts every stdlib module and extension in, as a generic image would: the
    baseline the benchmarks compare the traced closure against. boot adds the boot artifact
    for VM targets (summon.build.boot; building the image's kernel if it is not cached).
    verify imports the entry (and runs the probe) inside the built image before tagging it
    (summon.build.verify): a module the image lacks fails the build. record (with verify)
    then runs the image once in the sandbox to derive its syscall allowlist
    (summon.build.syscalls); without it, or where it cannot run, the static list holds.
    secrets are for that run only (summon build --secret); nothing of them enters the image.
    env: variables the build's own runs of the app (the interface probe, the trace, the
    check inside the image, the recording run) get over the manifest's, as an app reading
    SECRET_KEY at import needs (summon build -e); never written into the image.
    """
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    step("reading the manifest")
    m = manifest_mod.load(app_dir, manifest)
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
            packages = vendor(m.requirements, interp, site, say=step)
        packages += own_distribution(m, site)
        step("inspecting the entry")
        run_env = {**m.env, **(env or {})}  # the build's runs of the app, never the image
        interface, stack_serves = entry_interface(m, interp, site, run_env)
        m = replace(m, interface=interface, stack_serves=stack_serves)
        if m.interface and m.stores:
            raise BuildError(
                f"{m.source}: stores: the {m.interface.upper()} app {m.entry} has no parameters "
                "to get a store by; make the entry a function asking for (stack: Stack, "
                "NAME: KV_RW) that serves the app with summon.runtime.http.server.serve "
                "(examples/todo does)"
            )
        if m.warm_up is not None and not m.interface:
            raise BuildError(
                f"{m.source}: warm_up: {m.entry} is not a WSGI or ASGI app the runtime serves; "
                "remove warm_up, or point entry at the app object"
            )
        if m.interface:
            what = "h11 and wsproto" if m.interface == "asgi" else "h11"
            step(f"vendoring {what} for the runtime's HTTP server ({m.interface.upper()} entry)")
            packages += add_server_requirements(interp, site, m.interface)
        if m.tls is not None and m.tls.backend == "python":
            # No libcrypto in these images: hashlib's OpenSSL accelerator stays out (hashlib
            # uses its builtin sha2, sha3 and blake2), unless the manifest includes it.
            if "_hashlib" not in m.include:
                m = replace(m, exclude=(*m.exclude, "_hashlib"))
            step("vendoring tlslite-ng for the pure-Python TLS backend")
            packages += add_runtime_requirements(
                interp, site, TLS_PYTHON_REQUIREMENTS, "the python TLS backend"
            )
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
            env=run_env,
            optional=_optional(m),
            volumes=m.volumes,
            table=m.table,
        )
        lap("closure")

        step("finding the shared-library closure")
        extensions = sorted(closure.extension_files())
        if whole_stdlib:
            extensions = sorted(set(extensions) | set(interp.dynload.glob("*.so")))
        # glibc dlopens libgcc_s for pthread_exit (thread teardown); no DT_NEEDED names it.
        libs = library_closure(
            [interp.executable, *extensions],
            dlopened=_dlopened(interp),
            loaded=host_libraries(closure.libraries),
            optional=closure.extension_files(traced=False),
        )

        step("byte-compiling modules")
        fs = Rootfs()
        for mp in MOUNT_POINTS:
            fs.add_dir(mp, 0o1777 if mp == "/tmp" else 0o755)
        for mp in m.volumes:  # a read-only root cannot have them made at run time; 1777:
            fs.add_dir(mp, 0o1777)  # an engine's new volume copies it, the app (65532) writes
        argv = image_argv(interp)
        # The interpreter looks for lib-dynload at start and complains if it is missing.
        fs.add_dir(str(interp.dynload))
        fs.add_file(argv[0], interp.executable, "interpreter", 0o755)
        for lib in libs.libraries:
            fs.add_file(lib.image_path, lib.host_path, "libraries", 0o755)
        jobs, module_paths = module_files(fs, m, interp, closure, packages, site, tmp / "pyc")
        if whole_stdlib:
            jobs += whole_stdlib_jobs(fs, interp, {j.image_path for j in jobs}, tmp / "pyc")
        with store.disk_full_said():  # the .pyc files are written under the store's .tmp
            compile_jobs(fs, interp, jobs)
        data_map = _add_data(fs, m)
        app_config = app_json(m, data_map)
        script = m.app_dir / m.entry.script if m.entry.kind == "script" else None
        sources = [f for f, _name, _pkg in app_sources(m.app_dir, exclude=m.data)]
        app_config["seal"] = seal_config(m.seal, fs, sources, script)
        if m.interface:
            app_config["seal"]["warm_up"] = list(m.warm_up if m.warm_up is not None else ["/"])
        _add_app_json(fs, app_config)
        fs.add_bytes(MODULES_TSV, modules_tsv(closure, packages), "config")
        for path, content in ETC_FILES.items():
            fs.add_bytes(path, content, "config")
        if zones.needs_zones(closure, packages):  # UTC only: other zones come with tzdata
            for path, content in zones.ZONE_FILES.items():
                fs.add_bytes(path, content, "config")
        for path in host_etc_files(closure.modules):
            fs.add_file(path, Path(path).resolve(), "config", 0o644)
        if m.egress and "_ssl" in closure.modules and HOST_CA_BUNDLE.is_file():
            # TLS to the app's peers: what ssl.create_default_context() trusts is the file
            # OpenSSL reads by default (Debian's libssl, the image's: OPENSSLDIR /usr/lib/ssl).
            fs.add_file(str(IMAGE_CA_BUNDLE), HOST_CA_BUNDLE.resolve(), "config", 0o644)
        lap("assemble")
        # Every module of the closure must be where the image's interpreter looks for it.
        check_image(fs, closure, interp, module_paths)
        lap("check")

        step("writing the root filesystem")
        written = write_root(store, fs, step, lap)
        diff_id, uncompressed, layer, erofs_blob, files_blob = written
        verification = None
        if verify:
            step("verifying: importing the entry inside the image")
            rootfs = unpack(store, layer, files_blob)  # where `summon run` will find it, too
            lap("verify-unpack")
            verification = verify_image(
                rootfs,
                _verify_plan(m, interp, closure, app_config, run_env),
                image=ref,
                app_config=app_config,
            )
            lap("verify")

        derived: DerivedSyscalls | None = None
        notes: list[str] = []
        if verify and record:
            step("recording the syscalls the image makes (in the sandbox)")
            learned: Learned = []
            warm: list[str] = []
            derived, notes = record_image(
                unpack(store, layer, files_blob),
                app_config,
                argv,
                image=ref,
                extra=m.syscalls,
                secrets=secrets,
                learned=learned,
                modules=closure.modules,
                elf_files=[*extensions, *(lib.host_path for lib in libs.libraries)],
                env=run_env,
                warm=warm,
            )
            lap("record")
            if learned:
                # The seal lets exactly these through: app.json changes, so the root is
                # written again (and the first one's blobs removed).
                app_config["seal"]["code"] = [list(pair) for pair in learned]
                if warm and m.interface and m.warm_up is None:  # made anew at each start too
                    app_config["seal"]["warm_up"] = list(dict.fromkeys(["/", *warm]))
                    notes.append(warm_note(warm, m.table))
                _add_app_json(fs, app_config, again=True)
                step("writing the root filesystem again, with the code the seal lets through")
                written = write_root_again(store, fs, written, step, lap)
                diff_id, uncompressed, layer, erofs_blob, files_blob = written
        if derived is None:
            derived = static_with(str(app_config.get("network", "socket")), m.syscalls)
            if derived is not None:
                notes.append(
                    f"the manifest's syscalls {', '.join(derived.extra)} are added to the "
                    "static allowlist the image keeps"
                )

        step("writing the image")
        bom = bom_of(
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
        config = image_config(m, argv, diff_id, bom_blob, derived)
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
        rootfs_desc = rootfs_artifact.attach(store, layer, image_desc, erofs_blob, files_blob)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [image_desc.to_json(), bom_desc.to_json(), rootfs_desc.to_json()],
            "annotations": {"org.opencontainers.image.title": m.name},
        }
        index_desc = store.put_json(index, INDEX)
        left = store.tag(ref, index_desc)
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
        warnings=[
            *closure.warnings,
            *zones.zone_warnings(closure, packages, sources),
            *manifest_mod.script_entry_note(m),
            *dotenv_warnings(m),
            *_unloadable_warnings(closure, libs.unresolved, m.table),
            *(verification.warnings if verification else []),
            *notes,
        ],
        unpacked=unpacked_size(bom),
        verification=verification,
        syscalls=derived,
        timings={**timings, **{f"closure-{k}": v for k, v in closure.timings.items()}},
        untagged=left.short_id if left is not None else "",
    )


def _add_app_json(fs: Rootfs, app_config: dict[str, Any], again: bool = False) -> None:
    data = json.dumps(app_config, indent=2, sort_keys=True).encode() + b"\n"
    if again:
        fs.replace_bytes("/" + APP_JSON, data)
    else:
        fs.add_bytes("/" + APP_JSON, data, "config")


def _unloadable_warnings(
    closure: Closure, unresolved: Mapping[Path, tuple[str, Path]], table: str
) -> list[str]:
    """Extension modules the app did not load in the trace whose libraries this host lacks."""
    names = {m.origin: m.name for m in closure.extension_modules()}
    return [
        f"module {names.get(so, so.name)} needs {soname}, which is not on this host (nor in "
        f"its package): importing it will fail in the image as it does here, with ImportError "
        f"(the app did not import it while the build traced it); to leave it out, add "
        f'exclude = ["{names.get(so, so.name)}"] to {table}'
        for so, (soname, _needer) in sorted(unresolved.items())
    ]


def _dlopened(interp: Interpreter) -> list[Path]:
    """Libraries glibc dlopens for the interpreter that no DT_NEEDED names: libgcc_s.so.1,
    which pthread_exit and pthread_cancel need to unwind a thread (Python ends threads
    still alive at shutdown that way; without it the process aborts with "libgcc_s.so.1
    must be installed for pthread_exit to work")."""
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        candidate = Path(folder) / "libgcc_s.so.1"
        if candidate.is_file():
            return [candidate]
    return []


# The host's CA certificates (Debian's ca-certificates), shipped to images that reach out
# with ssl, where the image's libssl looks by default: /etc is the instance's own at run time.
HOST_CA_BUNDLE = Path("/usr/lib/ssl/cert.pem")
IMAGE_CA_BUNDLE = PurePosixPath("/usr/lib/ssl/cert.pem")


def _add_data(fs: Rootfs, m: Manifest) -> dict[str, str]:
    """Bake each data folder in under /data/<name>; return name -> image path. Where the
    folder was in the app's folder, a link leads there, so that the app's own relative paths
    (send_file("data/report.csv"), Path(__file__).parent / "data") find it unchanged."""
    out = {}
    for folder in m.data:
        image_root = f"{DATA_DIR}/{folder.name}"
        try:
            link = f"{APP_DIR}/{folder.relative_to(m.app_dir).as_posix()}"
            # Relative: an image holds no link that points outside it (layer_rules.py).
            fs.add_symlink(link, posixpath.relpath(image_root, posixpath.dirname(link)))
        except ValueError:
            pass  # outside the app's module folder (a src layout's project root)
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


def _verify_plan(
    m: Manifest,
    interp: Interpreter,
    closure: Closure,
    app_config: dict[str, Any],
    env: Mapping[str, str],
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
        env=dict(env),
        network="none" if m.network == "none" else "socket",
        memory=m.memory,
        pids=m.pids,
        syscalls=m.syscalls,
        manifest=m.table,
    )
