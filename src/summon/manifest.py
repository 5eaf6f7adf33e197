"""The app manifest: `[tool.summon]` in pyproject.toml, or a summon.toml; schema and validation.

Every problem is a ManifestError whose one line names the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summon import reqfile
from summon.egress import EgressError, parse_rules
from summon.errors import ManifestError
from summon.manifest_entry import MODULE_RE as _MODULE_RE
from summon.manifest_entry import Entry as Entry
from summon.manifest_entry import code_dir_of, parse_entry, script_entry
from summon.manifest_ports import Port as Port
from summon.manifest_ports import parse_ports

NETWORK_MODES = ("socket", "direct", "none")
INTERFACES = ("wsgi", "asgi")
DEFAULT_PYTHON = "/usr/bin/python3.11"
DEFAULT_MEMORY = 128 * 1024 * 1024

_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_SIZE_RE = re.compile(r"^(\d+)\s*([KMG]i?B?|[kmg])?\Z", re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# key -> (python types accepted, what to write, for the error line)
_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), 'a string such as "http"'),
    "entry": ((str,), '"module:function" or a script path such as "app.py"'),
    "python": ((str,), "the path of the interpreter to put in the image"),
    "data": ((list,), 'a list of folders, such as ["static"]'),
    "requirements": ((list,), 'a list of requirement strings, such as ["h11==0.14.0"]'),
    "network": ((str,), "one of " + ", ".join(NETWORK_MODES)),
    "ports": ((list,), 'a list of ports, such as [80, "53/udp", "21000-21010"]'),
    "memory": ((str, int), 'a size such as "64M" or a number of bytes'),
    "pids": ((int,), "the most processes and threads the app may have"),
    "env": ((dict,), 'a table of strings, such as {LEVEL = "info"}'),
    "args": ((list,), "a list of strings"),
    "include": ((list,), "a list of module names to put in the image even if not seen in use"),
    "exclude": ((list,), "a list of module names to leave out although shipped code names them"),
    "probe": ((str,), '"module:function" called after import to exercise the app'),
    "version": ((str,), "a version string used as the default tag"),
    "volumes": ((list,), 'a list of absolute paths the app keeps data under, such as ["/data"]'),
    "stores": ((dict,), 'a table of KV_RW stores in the volumes, such as {todo = "/data/todo"}'),
    "seal": ((bool, str), 'true (the default), false, or "audit" (docs/sealing.md)'),
    "syscalls": ((list,), 'syscalls the app needs beyond what its recording run made, ["..."]'),
    "interface": ((str,), '"wsgi" or "asgi": the runtime serves the "module:app" entry'),
    "tls": ((dict,), 'a table such as { backend = "openssl", ports = [443] }'),
    "secrets": ((list,), 'the names of the secrets the app reads, such as ["api-token"]'),
    "egress": ((list,), 'a list of destinations the app may connect to, such as ["db:5432"]'),
    "host_sockets": ((bool,), "true: an app that may connect is still handed the host's sockets"),
    "warm_up": ((list,), 'paths a WSGI/ASGI app is asked for (GET) before the seal, ["/"]'),
}
SEAL_MODES = {True: "on", False: "off", "audit": "audit"}


@dataclass(frozen=True)
class Manifest:
    """A validated app manifest. Paths are absolute."""

    app_dir: Path
    source: Path  # the file the manifest was read from
    name: str
    entry: Entry
    python: str = DEFAULT_PYTHON
    version: str = "latest"
    data: tuple[Path, ...] = ()
    requirements: tuple[str, ...] = ()
    network: str = "socket"
    ports: tuple[Port, ...] = ()
    memory: int = DEFAULT_MEMORY
    pids: int = 64
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # modules (and their submodules) left out of the closure
    probe: str = ""
    volumes: tuple[str, ...] = ()  # where -v volumes may be mounted (a VM's kernel gets disks)
    # KV_RW stores: parameter name -> the store's folder, below one of `volumes`.
    stores: dict[str, str] = field(default_factory=dict)
    seal: str = "on"  # "on" | "audit" | "off": the runtime's seal once the app is up
    syscalls: tuple[str, ...] = ()  # added to the sandbox's recorded syscall allowlist
    # "wsgi" | "asgi": the entry is an app the runtime serves; "" an entry function or script.
    # As written in the manifest; the build finds it from the entry's signature otherwise.
    interface: str = ""
    # Whether the runtime's Stack serves the app (a WSGI/ASGI app, or an entry function that
    # asks for a Stack): found by the build, never written in a manifest.
    stack_serves: bool = True
    tls: TLSConfig | None = None  # the TLS device's backend, and ports the runtime serves so
    secrets: tuple[str, ...] = ()  # names a run must give (--secret NAME=FILE)
    # Outbound connections allowed (summon.egress): "HOST:PORT", "CIDR:PORT"...; none if empty.
    egress: tuple[str, ...] = ()
    # Handed the host's sockets though its profile allows connect (docs/sandbox.md): it can
    # then reach what the host reaches. For an app that must see its peers' addresses.
    host_sockets: bool = False
    # Paths the runtime asks a WSGI/ASGI app for before the seal (None: the default, "/").
    warm_up: tuple[str, ...] | None = None
    # Where its keys are written, for messages: "[tool.summon]", "summon.toml"... (table_name)
    table: str = "[tool.summon]"
    # No manifest at all: the entry is the project's one [project.scripts] command.
    entry_from_scripts: bool = False


TLS_BACKENDS = ("openssl", "python")
CLIENT_AUTH = ("none", "optional", "required")
_TLS_KEYS = {"backend", "ports", "cert", "key", "client_auth", "client_ca", "alpn"}
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_STORE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_WARM_UP_PATH = re.compile(r"^/[!-~]{0,1023}\Z")  # an origin-form target: no space, no controls
MAX_WARM_UP = 32
DATA_IMAGE_DIR = "/data"  # where data folders are baked in (build/image.py DATA_DIR)


@dataclass(frozen=True)
class TLSConfig:
    """[tool.summon.tls]: which TLS the image carries, and what the runtime terminates.

    ports: TCP ports the app listens on through its Stack device that the runtime serves over
    TLS for it (the app sees plain connections); the certificate chain and key are secrets
    given at run time, never in the image.
    """

    backend: str = "openssl"
    ports: tuple[int, ...] = ()
    cert: str = "tls.crt"
    key: str = "tls.key"
    client_auth: str = "none"
    client_ca: str = ""
    alpn: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        """The secrets a run needs for the ports the runtime terminates."""
        if not self.ports:
            return ()
        return (self.cert, self.key, *((self.client_ca,) if self.client_ca else ()))


def _parse_tls(value: dict[str, Any], ports: tuple[Port, ...], bad: Any) -> TLSConfig:
    for key in value:
        if key not in _TLS_KEYS:
            raise bad("tls", f"unknown key {key!r}; known keys: {', '.join(sorted(_TLS_KEYS))}")
    backend = value.get("backend", "openssl")
    if backend not in TLS_BACKENDS:
        raise bad("tls", f"backend {backend!r} is not one of {', '.join(TLS_BACKENDS)}")
    served = {p.number for p in ports if p.protocol == "tcp"}
    tls_ports = value.get("ports", [])
    if not isinstance(tls_ports, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) for p in tls_ports
    ):
        raise bad("tls", f"ports {tls_ports!r} is not a list of port numbers such as [443]")
    for p in tls_ports:
        if p not in served:
            raise bad("tls", f"port {p} is not one of the app's TCP ports {sorted(served)}")
    names = {k: value.get(k, d) for k, d in (("cert", "tls.crt"), ("key", "tls.key"))}
    names["client_ca"] = value.get("client_ca", "")
    for key, name in names.items():
        if name and (not isinstance(name, str) or not _SECRET_NAME.match(name)):
            raise bad("tls", f"{key} {name!r} is not a secret name such as tls.key")
    client_auth = value.get("client_auth", "none")
    if client_auth not in CLIENT_AUTH:
        raise bad("tls", f"client_auth {client_auth!r} is not one of {', '.join(CLIENT_AUTH)}")
    if client_auth != "none" and not names["client_ca"]:
        raise bad("tls", f'client_auth = "{client_auth}" needs client_ca (the CA\'s secret name)')
    alpn = value.get("alpn", [])
    if not isinstance(alpn, list) or not all(isinstance(a, str) and a for a in alpn):
        raise bad("tls", f'alpn {alpn!r} is not a list of protocols such as ["http/1.1"]')
    return TLSConfig(
        backend, tuple(tls_ports), names["cert"], names["key"], client_auth,
        names["client_ca"], tuple(alpn),
    )  # fmt: skip


def table_name(source: Path, in_tool_table: bool) -> str:
    """Where a manifest's keys are, as messages name it: "[tool.summon]" in a pyproject.toml,
    "[tool.summon] in FILE" in another file's tool table, else the file: "summon.toml"."""
    if not in_tool_table:
        return source.name
    return "[tool.summon]" if source.name == "pyproject.toml" else f"[tool.summon] in {source.name}"


def find_manifest(app_dir: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Return (file, summon table, [project] table) for an app folder: the file is a
    pyproject.toml only when the table is its [tool.summon]."""
    if not app_dir.is_dir():
        raise ManifestError(f"{app_dir}: not a folder; give the folder that holds your app")
    summon_toml = app_dir / "summon.toml"
    pyproject = app_dir / "pyproject.toml"
    project: dict[str, Any] = {}
    if pyproject.is_file():
        doc = _load_toml(pyproject)
        project = doc.get("project", {}) if isinstance(doc.get("project"), dict) else {}
        tool = doc.get("tool", {})
        if not summon_toml.is_file():
            if not isinstance(tool, dict) or "summon" not in tool:
                # An ordinary project, unchanged: its one console script is the entry.
                return pyproject, _ScriptsTable(entry=script_entry(pyproject, project)), project
            table = tool["summon"]
            if not isinstance(table, dict):
                raise ManifestError(f"{pyproject}: tool.summon must be a table")
            return pyproject, table, project
    if summon_toml.is_file():
        doc = _load_toml(summon_toml)
        return summon_toml, doc, project
    raise ManifestError(
        f"{app_dir}: no summon.toml or pyproject.toml with [tool.summon]; "
        'write one with at least entry = "module:function"'
    )


class _ScriptsTable(dict[str, Any]):
    """The manifest of a project without one: its entry from [project.scripts]."""


def script_entry_note(m: Manifest) -> list[str]:
    """What a build says of an entry taken from [project.scripts] (no [tool.summon])."""
    if not m.entry_from_scripts:
        return []
    return [
        f"{m.source} has no [tool.summon] table: built with its one command "
        f"([project.scripts]) as the entry, {m.entry}; add [tool.summon] with entry (and "
        "ports) to set them yourself"
    ]


def _given_manifest(path: Path, app_dir: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    if not app_dir.is_dir():
        raise ManifestError(f"{app_dir}: not a folder; give the folder that holds your app")
    if not path.is_file():
        what = "not a file" if path.exists() else "no such file"  # a folder, /dev/zero
        raise ManifestError(f"--manifest {path}: {what}")
    doc = _load_toml(path)
    if path.name == "pyproject.toml" or "tool" in doc:
        table = doc.get("tool", {}).get("summon") if isinstance(doc.get("tool"), dict) else None
        if not isinstance(table, dict):
            raise ManifestError(f"{path}: no [tool.summon] table")
        project = doc.get("project", {}) if isinstance(doc.get("project"), dict) else {}
        return path.resolve(), table, project
    return path.resolve(), doc, {}


def _has_tool_table(path: Path) -> bool:
    return isinstance(_load_toml(path).get("tool"), dict)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror}") from None


def load(app_dir: Path | str, manifest: Path | None = None) -> Manifest:
    """Read and validate the manifest of the app in app_dir.

    manifest: another file to read it from (a summon.toml, or a pyproject.toml with
    [tool.summon]) instead of the folder's own, as `docker build -f` does: the same app built
    another way (examples/https is examples/http with TLS). Paths in it are the app folder's.
    """
    app_dir = Path(os.path.realpath(app_dir))  # a link loop is no folder (resolve: RuntimeError)
    if manifest is None:
        source, table, project = find_manifest(app_dir)
        where = table_name(source, source.name == "pyproject.toml")
    else:
        source, table, project = _given_manifest(manifest, app_dir)
        where = table_name(source, source.name == "pyproject.toml" or _has_tool_table(source))

    def bad(key: str, why: str) -> ManifestError:
        return ManifestError(f"{source}: {key}: {why}")

    for key, value in table.items():
        if key == "tool" and source.name == "summon.toml":
            raise bad(key, "summon.toml holds the keys at its top level, without [tool.summon]")
        if key not in _KEYS:
            hint = _closest(key)
            more = f" (did you mean {hint!r}?)" if hint else ""
            raise bad(key, f"unknown key{more}; known keys: {', '.join(sorted(_KEYS))}")
        types, what = _KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(key, f"expected {what}, got {type(value).__name__} {value!r}")

    # The image's name: the manifest's, the project's, else the app folder's (as docker's).
    name = table.get("name") or project.get("name") or app_dir.name
    if not isinstance(name, str) or not name:
        raise bad("name", 'missing; set name = "myapp" (or [project].name)')
    name = name.lower().replace("_", "-")
    if not _NAME_RE.match(name):
        why = f"{name!r} is not a valid image name (lowercase letters, digits, . _ -)"
        if "name" not in table and "name" not in project:
            why += '; it is the folder\'s, used when none is set: set name = "myapp"'
        raise bad("name", why)

    if "entry" not in table:
        raise bad("entry", 'missing; set entry = "module:function" or entry = "app.py"')
    # The code's folder: the app folder, or its src/ in a src layout (the PyPA's): the entry's
    # package is found there, and only that folder goes in as /app.
    code_dir, entry_text = code_dir_of(table["entry"], app_dir)
    entry = parse_entry(entry_text, code_dir, lambda why: bad("entry", why))

    data: list[Path] = []
    for item in table.get("data", []):
        if not isinstance(item, str):
            raise bad("data", f"expected folder names, got {item!r}")
        folder = Path(os.path.realpath(app_dir / item))
        if not folder.is_dir():
            raise bad("data", f"{item!r} is not a folder in {app_dir}")
        if not folder.is_relative_to(app_dir):
            raise bad("data", f"{item!r} is outside the app folder")
        data.append(folder)
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise bad("data", "two data folders have the same name")

    reqs = table.get("requirements")
    if reqs is None:
        reqs = project.get("dependencies")
    if reqs is None and (app_dir / reqfile.FILE_NAME).is_file():
        reqs = reqfile.read(
            app_dir / reqfile.FILE_NAME, lambda why: bad("requirements", why), where
        )
    reqs = reqs or []
    for r in reqs:
        if not isinstance(r, str) or not r.strip():
            raise bad("requirements", f"expected requirement strings, got {r!r}")

    network = table.get("network", "socket")
    if network not in NETWORK_MODES:
        raise bad("network", f"{network!r} is not one of {', '.join(NETWORK_MODES)}")

    ports = parse_ports(table.get("ports", []), lambda why: bad("ports", why))

    memory = table.get("memory", DEFAULT_MEMORY)
    memory = parse_size(memory, lambda why: bad("memory", why))
    if memory < 8 * 1024 * 1024:
        raise bad("memory", "at least 8M is needed to start Python")

    pids = table.get("pids", 64)
    if pids < 1:
        raise bad("pids", "must be at least 1")

    env = table.get("env", {})
    for k, v in env.items():
        if not _ENV_RE.match(k):
            raise bad("env", f"{k!r} is not a valid variable name")
        if not isinstance(v, str):
            raise bad("env", f"{k}: expected a string, got {v!r}")
        if k == "SUMMON_SEAL_LEARN":
            raise bad(
                "env",
                "SUMMON_SEAL_LEARN is the build's recording run's own (it lets code from "
                'strings through); to see what the seal would refuse, set seal = "audit"',
            )

    args = table.get("args", [])
    if not all(isinstance(a, str) for a in args):
        raise bad("args", "expected a list of strings")

    include = table.get("include", [])
    for m in include:
        if not isinstance(m, str) or not _MODULE_RE.match(m):
            raise bad("include", f"{m!r} is not a module name")

    exclude = table.get("exclude", [])
    for m in exclude:
        if not isinstance(m, str) or not _MODULE_RE.match(m):
            raise bad("exclude", f"{m!r} is not a module name")
        if m in include:
            raise bad("exclude", f"{m!r} is also in include; keep it in one of the two")

    probe = table.get("probe", "")
    if probe:
        parse_entry(probe, code_dir, lambda why: bad("probe", why), allow_script=False)

    version = table.get("version") or project.get("version") or "latest"

    volumes = _parse_volumes(table.get("volumes", []), [f.name for f in data], bad)
    stores = _parse_stores(table.get("stores", {}), volumes, bad)
    if stores and entry.kind == "script":
        raise bad(
            "stores",
            "a script gets no devices; make the entry a function that asks for its store, "
            f'such as entry = "app:main" with def main({next(iter(stores))}: KV_RW)',
        )

    seal = table.get("seal", True)
    if seal not in SEAL_MODES:
        raise bad("seal", f'{seal!r} is not true, false or "audit"')

    syscalls = table.get("syscalls", [])
    if not all(isinstance(s, str) for s in syscalls):
        raise bad("syscalls", 'expected a list of syscall names, such as ["getcwd"]')
    if syscalls:
        # Only here: the table is the sandbox's, and loading it costs a few ms.
        from summon.targets.sandbox.seccomp import SyscallNameError, check_names

        try:
            syscalls = check_names(syscalls)
        except SyscallNameError as e:
            raise bad("syscalls", str(e)) from None

    interface = table.get("interface", "")
    if interface and interface not in INTERFACES:
        raise bad("interface", f"{interface!r} is not one of {', '.join(INTERFACES)}")
    if interface and entry.kind != "function":
        raise bad(
            "interface",
            f'applies to an entry "module:app", not to the script {entry.script!r}; '
            'point entry at the app object, such as "app:app"',
        )

    warm_up = _parse_warm_up(table["warm_up"], entry, bad) if "warm_up" in table else None

    tls = _parse_tls(table["tls"], ports, bad) if "tls" in table else None
    secrets = table.get("secrets", [])
    for secret in secrets:  # (not `name`: that is the image's, below)
        if not isinstance(secret, str) or not _SECRET_NAME.match(secret):
            raise bad("secrets", f"{secret!r} is not a secret name such as api-token or tls.key")
    needed = tuple(dict.fromkeys([*secrets, *(tls.secrets() if tls else ())]))
    try:
        egress = tuple(str(r) for r in parse_rules(table.get("egress", [])))
    except EgressError as e:
        raise bad("egress", str(e)) from None
    if egress and network != "socket":
        raise bad(
            "egress",
            f'outbound connections need network = "socket" (this app has {network!r}); '
            "remove egress or change network",
        )

    return Manifest(
        app_dir=code_dir,
        source=source,
        name=name,
        entry=entry,
        python=table.get("python", DEFAULT_PYTHON),
        version=str(version),
        data=tuple(data),
        requirements=tuple(reqs),
        network=network,
        ports=ports,
        memory=memory,
        pids=pids,
        env=dict(env),
        args=tuple(args),
        include=tuple(include),
        exclude=tuple(exclude),
        probe=probe,
        volumes=tuple(volumes),
        stores=stores,
        seal=SEAL_MODES[seal],
        syscalls=tuple(syscalls),
        interface=interface,
        tls=tls,
        secrets=needed,
        egress=egress,
        host_sockets=table.get("host_sockets") is True,
        warm_up=warm_up,
        table=where,
        entry_from_scripts=isinstance(table, _ScriptsTable),
    )


def _parse_warm_up(value: list[Any], entry: Entry, bad: Any) -> tuple[str, ...]:
    """Request targets such as "/" or "/items?page=1"; only for an entry the runtime serves."""
    if entry.kind != "function":
        raise bad(
            "warm_up",
            f"applies to a WSGI or ASGI entry the runtime serves, not to the script "
            f"{entry.script!r}, which brings its own server; remove warm_up",
        )
    if len(value) > MAX_WARM_UP:
        raise bad("warm_up", f"has {len(value)} paths; at most {MAX_WARM_UP}")
    for path in value:
        if not isinstance(path, str) or not _WARM_UP_PATH.match(path):
            raise bad("warm_up", f'{path!r} is not a path such as "/" or "/items?page=1"')
    return tuple(value)


def _parse_volumes(value: list[Any], data: list[str], bad: Any) -> list[str]:
    """The volume mount points: absolute, not the image's or the runtime's, not nested, and
    not over a data folder baked in under /data (the volume would hide it)."""
    from summon.targets.volumes import mount_path_problem

    volumes: list[str] = []
    for given in value:
        v = given.rstrip("/") or given if isinstance(given, str) else given
        why = mount_path_problem(v) if isinstance(v, str) else "not a string"
        if why:
            raise bad("volumes", f"{given!r}: {why}")
        for other in volumes:
            if _nested(v, other):
                raise bad("volumes", f"{other} and {v} nest; give each volume its own folder")
        for name in data:
            if _nested(v, f"{DATA_IMAGE_DIR}/{name}"):
                raise bad(
                    "volumes",
                    f"{v} would hide the data folder {name!r} baked in at {DATA_IMAGE_DIR}/{name}; "
                    "mount the volume elsewhere, such as /state",
                )
        volumes.append(v)
    return volumes


def _parse_stores(value: dict[str, Any], volumes: list[str], bad: Any) -> dict[str, str]:
    """[tool.summon.stores]: parameter name -> a folder strictly inside one of the volumes."""
    stores: dict[str, str] = {}
    for name, path in value.items():
        if not _STORE_NAME.match(name):
            raise bad("stores", f"{name!r} is not a parameter name (letters, digits and _)")
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            raise bad("stores", f"{name} = {path!r} is not an absolute path such as /data/{name}")
        path = path.rstrip("/")
        if path in volumes:
            raise bad(
                "stores",
                f"{name} = {path!r} is a volume's mount point; give a folder in it, "
                f"such as {path}/{name}",
            )
        if not any(_nested(path, v) for v in volumes):
            example = volumes[0] if volumes else "/data"
            raise bad(
                "stores",
                f"{name} = {path!r} is in no volume; declare its volume with "
                f'volumes = ["{path.rpartition("/")[0] or "/data"}"] or put it under {example}',
            )
        for other, where in stores.items():
            if _nested(path, where):
                raise bad("stores", f"{other} and {name} nest ({where}, {path}); one folder each")
        stores[name] = path
    return stores


def _nested(a: str, b: str) -> bool:
    """Whether one of two absolute paths is the other or inside it."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def parse_size(value: object, bad: Any) -> int:
    """Parse 64M, 1G, 512k, 1048576 (bytes) into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE_RE.match(str(value).strip())
    if not m:
        raise bad(f'{value!r} is not a size such as "64M"')
    unit = (m.group(2) or "")[:1].lower()
    return int(m.group(1)) * _SIZE_UNITS[unit]


def host_memory() -> int:
    """This host's memory in bytes (MemTotal), 0 when /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _closest(key: str) -> str | None:
    import difflib

    hits = difflib.get_close_matches(key, list(_KEYS), n=1, cutoff=0.6)
    return hits[0] if hits else None
