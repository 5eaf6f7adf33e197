"""What an image says about itself: app.json, the OCI image config, the bill of materials.

build/image.py assembles the image; these are the records it writes into it and beside it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import summon
from summon.build import debian
from summon.build.assemble import (
    APP_DIR,
    RUNTIME_ROOT,
    SITE_DIR,
)
from summon.build.closure import Closure
from summon.build.distributions import modules_table
from summon.build.elf import LibraryClosure
from summon.build.graph import ABSENT_EXCLUDED, ABSENT_MISSING, SCRIPT, Edge, ImportGraph
from summon.build.imports import RUNS_IMPORT
from summon.build.python import Interpreter
from summon.build.rootfs import Rootfs
from summon.build.syscalls import DerivedSyscalls
from summon.build.vendor import Package
from summon.manifest import Manifest, TLSConfig
from summon.store.layout import (
    Descriptor,
)
from summon.targets.base import HANDOFF_LABEL, SYSCALLS_LABEL, VM_CONTROL_LABEL


def image_argv(interp: Interpreter) -> list[str]:
    major, minor = interp.version_info[:2]
    return [f"/usr/bin/python{major}.{minor}", "-S", "-E", f"{RUNTIME_ROOT}/boot.py"]


# The user an image runs as in container engines (podman, containerd, Kubernetes): numeric, so
# runAsNonRoot can check it, and not root. The sandbox target maps the same uid.
IMAGE_UID = 65532
# The uid the sandbox target runs the app as (targets/sandbox/config.py APP_UID).
SANDBOX_UID = 1000

# What glibc reads to resolve names: localhost answers on every target (getaddrinfo fails
# with EAI_AGAIN without a hosts file), names go to the hosts file first, and no nameserver
# is known (the default, 127.0.0.1, refuses at once in an empty network namespace). They
# are also the mount points the sandbox binds its own over (docs/sandbox.md): a read-only
# root cannot get files created on it.
ETC_FILES = {
    "/etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "/etc/nsswitch.conf": b"hosts: files dns\n",
    "/etc/resolv.conf": b"",
    # Who the app runs as, by name: getpass.getuser(), pwd.getpwuid(os.getuid()) and the
    # libraries that ask them for a cache folder (home is /tmp, the one writable folder)
    # raised KeyError. root in a VM, SANDBOX_UID in the sandbox, IMAGE_UID in an engine.
    "/etc/passwd": (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"app:x:{SANDBOX_UID}:{SANDBOX_UID}:the app:/tmp:/usr/sbin/nologin\n"
        f"nonroot:x:{IMAGE_UID}:{IMAGE_UID}:the app:/tmp:/usr/sbin/nologin\n"
    ).encode(),
    "/etc/group": f"root:x:0:\napp:x:{SANDBOX_UID}:\nnonroot:x:{IMAGE_UID}:\n".encode(),
}


# Host files the stdlib reads when a module of it is in the image: (module, path). The same
# app run by `python app.py` reads them, and the unix target's process still does; an image
# without them answered differently in the sandbox and a VM: mimetypes.guess_type knew no
# .webp, .woff2 or .avif (Starlette's StaticFiles, Flask's send_file and http.server sent
# them as application/octet-stream), and getaddrinfo(host, "http"), getservbyname and
# getprotobyname failed. Shipped as the host has them (Debian's media-types and netbase).
HOST_ETC_FILES = (
    ("mimetypes", "/etc/mime.types"),
    ("socket", "/etc/services"),
    ("socket", "/etc/protocols"),
)


def host_etc_files(modules: Collection[str], root: Path = Path("/")) -> list[str]:
    """The HOST_ETC_FILES an image of these modules gets: those whose module is in it and
    whose file the host (under root) has."""
    return [
        path
        for module, path in HOST_ETC_FILES
        if module in modules and (root / path.lstrip("/")).is_file()
    ]


def image_config(
    m: Manifest,
    argv: list[str],
    diff_id: str,
    bom: Descriptor,
    syscalls: DerivedSyscalls | None = None,
) -> dict[str, Any]:
    """The OCI image config: what an engine needs to run the image unchanged, and labels that
    tie it to its bill of materials and summon (and hold its recorded syscall allowlist)."""
    from summon.runtime import (
        handoff,  # (it imports asyncio: here, not at every CLI start)
        vm,
    )

    labels = {
        "dev.summon.name": m.name,
        "dev.summon.version": summon.__version__,
        "dev.summon.network": m.network,
        "dev.summon.bom": bom.digest,
        # What a gateway may send the runtime this image holds (a newer one sends an older
        # runtime only what it knows).
        HANDOFF_LABEL: str(handoff.VERSION),
        # How its runtime talks to a VM's host (the qemu target boots no other).
        VM_CONTROL_LABEL: str(vm.CONTROL_VERSION),
    }
    if syscalls is not None:
        labels[SYSCALLS_LABEL] = syscalls.label()
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
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }


def app_json(m: Manifest, data_map: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any]
    if m.interface:
        entry = {"kind": m.interface, "module": m.entry.module, "attr": m.entry.function}
        if m.entry.call is not None:  # an app factory: the runtime serves what it returns
            entry["call"] = m.entry.call.to_json()
    elif m.entry.kind == "function":
        entry = {"kind": "function", "module": m.entry.module, "function": m.entry.function}
        if not m.stack_serves:  # it opens its own listeners: targets forward to them
            entry["stack"] = False
    else:
        entry = {"kind": "script", "path": f"{APP_DIR}/{m.entry.script}"}
        if m.entry.package:
            entry["package"] = m.entry.package  # run as `python -m` runs it
    return {
        "name": m.name,
        # Where its keys were written ("[tool.summon]", "summon.toml"): for messages that
        # say which key to change (runtime/config.py manifest_table).
        "manifest": m.table,
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
        "secrets": list(m.secrets),
        **({"tls": _tls_config(m.tls)} if m.tls is not None else {}),
        # Read by the targets, which enforce it (docs/sandbox.md); absent when none is allowed.
        **({"egress": list(m.egress)} if m.egress else {}),
        **({"host_sockets": True} if m.host_sockets else {}),
        **({"stores": dict(sorted(m.stores.items()))} if m.stores else {}),
    }


def _tls_config(tls: TLSConfig) -> dict[str, Any]:
    return {
        "backend": tls.backend,
        "ports": list(tls.ports),
        "cert": tls.cert,
        "key": tls.key,
        "client_auth": tls.client_auth,
        "client_ca": tls.client_ca,
        "alpn": list(tls.alpn),
    }


def bom_of(
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
    # needed_by names the image's files: a vendored extension's host path is a temporary
    # build folder, different at every build, which would make no two images alike.
    image_path_of = {str(node.source): path for path, node in fs.nodes.items() if node.source}
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
                "needed_by": sorted(image_path_of.get(str(p), str(p)) for p in lib.needed_by),
            }
            for lib in libs.libraries
        ],
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "size": p.size,
                "top_level": list(p.top_level),
                "license": p.license,
                "license_files": [f"{SITE_DIR}/{f}" for f in p.license_files],
            }
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


def modules_tsv(closure: Closure, packages: list[Package]) -> bytes:
    """/etc/summon/modules.tsv: what the runtime's hint says about a module it cannot find."""
    missing = [a.name for a in closure.absent.values() if a.why == ABSENT_MISSING]
    excluded = {a.name: a.detail for a in closure.absent.values() if a.why == ABSENT_EXCLUDED}
    return modules_table(missing, excluded, packages)
