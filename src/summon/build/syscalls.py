"""The build's recording run: the syscalls an image makes, for its derived sandbox profile.

The image runs once in the sandbox under the recording profile (targets/sandbox/record.py),
through its real entrypoint: the runtime starts, the probe warms the app up, the seal closes,
the app serves. The build then exercises each declared port from the host (over TCP, HTTP
GETs of `/` and the pages it leads to, crawl.py: the protocol of most summon apps; a UDP
datagram), and stops the instance with SIGTERM so the shutdown is recorded too. An app
without ports in its manifest is watched until it listens, and each socket it listens on is
exercised from inside its namespace (undeclared.py); one that never listens runs to its end.

The image's allowlist is then the sandbox's base set, what the run called, the calls of the
devices it uses that a short run may not reach (a KV_RW store's: seccomp.device_syscalls),
and the manifest's `syscalls`; it is written into the image config (label
dev.summon.syscalls), read back by RunSpec.for_image, and listed in the bill of materials.
An app's volumes are empty scratch folders in that run. When the run cannot be made (no runc
or not root) or the app did not come up, the image carries no list and keeps the static one.

The same run learns the code the app compiles from strings after the seal (a router that
sanic-routing renders to Python source once the app has bound its port, say): the runtime
lets it through in that run (SUMMON_SEAL_LEARN) and says each one, and the build puts them
in app.json "seal"/"code" (build/image.py), so that the sealed image lets exactly those
sources through at run time (docs/sealing.md, "Code the build saw"); the pages whose request
made such code are named too (an app the runtime serves asks for them at its warm-up).

Also here: the app.json "seal" object (mode, and the shared objects to load before the seal).
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summon.build.crawl import Crawl, ask, crawl
from summon.build.elf import undefined_symbols
from summon.build.learned import Learned, learned_code, learned_note, warm_note
from summon.build.readonly import ReadOnlyWrite, readonly_line, refused_write
from summon.build.rootfs import Rootfs
from summon.build.standins import recording_secrets
from summon.runtime.config import manifest_table
from summon.runtime.seal import LEARN_ENV, LEARNED_EARLY_PREFIX, LEARNED_PREFIX, MAX_LEARNED
from summon.targets.base import PortForward, RunSpec, SecretFile, Volume
from summon.targets.sandbox import seccomp
from summon.targets.sandbox.seccomp import REPORT_KEY

__all__ = [
    "REPORT_KEY",
    "DerivedSyscalls",
    "Learned",
    "learned_code",
    "own_listeners",
    "record_image",
    "seal_config",
    "static_with",
    "warm_note",
]

EXERCISE_DATAGRAM = bytes(12)  # zeros: a DNS header with no question, for example
RUN_TIMEOUT = 20.0  # seconds for an app without ports to end, or a server to listen
# Seconds a server may take to its first byte (an app that warms up before it answers: a
# numba or an ORM compiling ahead), then may pause in its answer or keep the connection.
FIRST_BYTE_PATIENCE = 10.0
ANSWER_PATIENCE = 3.0
UDP_PATIENCE = 3.0  # seconds of datagrams, half a second apart, until one is answered
LINGER = 2.0  # seconds a served app runs at least (start included): a 1 s timer fires once
MAX_RERUNS = 2  # recording runs made again, each without a page that ended the app
_TAIL = 10


@dataclass(frozen=True)
class DerivedSyscalls:
    """An image's derived allowlist and how it came about."""

    network: str
    allowed: tuple[str, ...]  # sorted: the base set, the recorded calls, the manifest's extra
    recorded: tuple[str, ...]
    extra: tuple[str, ...]
    seconds: float
    # The calls of the devices the image uses, allowed whether the run reached them or not.
    declared: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)

    @property
    def unconditional(self) -> list[str]:
        """The calls allowed whatever their arguments (docs/sandbox.md's count)."""
        from summon.targets.sandbox import seccomp

        return seccomp.unconditional(self.allowed, self.network)

    def label(self) -> str:
        """The value of the image config label dev.summon.syscalls."""
        return " ".join(self.allowed)

    def bom(self) -> dict[str, Any]:
        """The bill of materials' entry under REPORT_KEY."""
        from summon.targets.sandbox import seccomp

        return {
            "network": self.network,
            "syscalls_allowed": len(self.unconditional),
            "syscalls": self.unconditional,
            "conditional": sorted(set(self.allowed) & set(seccomp.CONDITIONAL)),
            "recorded": list(self.recorded),
            "base": sorted(seccomp.base_syscalls(self.network)),
            "extra": list(self.extra),
            "declared": list(self.declared),
        }


def static_with(network: str, extra: Sequence[str]) -> DerivedSyscalls | None:
    """An image without a recorded list keeps the static allowlist; the manifest's
    `syscalls` are added to it (as they are to a recorded one), or None when it names none."""
    added = sorted(set(extra) - set(seccomp.allowed_syscalls(network)))
    if not added:
        return None
    allowed = {*seccomp.allowed_syscalls(network), *seccomp.RECORDABLE_CONDITIONAL, *added}
    return DerivedSyscalls(
        network=network, allowed=tuple(sorted(allowed)), recorded=(), extra=tuple(added),
        seconds=0.0,
    )  # fmt: skip


def can_record() -> str:
    """Why no recording run can be made here, or "" if one can."""
    if os.geteuid() != 0:
        return "the recording run needs root (the sandbox target)"
    if shutil.which("runc") is None:
        return "the recording run needs runc"
    return ""


def record_image(
    rootfs: Path,
    app_config: Mapping[str, Any],
    argv: Sequence[str],
    *,
    image: str,
    extra: Sequence[str] = (),
    timeout: float = RUN_TIMEOUT,
    secrets: tuple[SecretFile, ...] = (),
    learned: Learned | None = None,
    modules: Collection[str] = (),
    elf_files: Collection[Path] = (),
    env: Mapping[str, str] | None = None,
    warm: list[str] | None = None,
) -> tuple[DerivedSyscalls | None, list[str]]:
    """Run the unpacked image under the recording profile; (derived list, warnings).

    A page the crawl found by following links that ended the app (a "quit" link) cost the
    run everything after it: the image kept the static allowlist and learned none of the
    pages' code. The run is made again without that page (MAX_RERUNS times at most), and
    the build says so. elf_files: the image's extension modules and shared libraries (host
    paths), whose imported symbols may need calls (seccomp.device_syscalls). The other
    arguments are _record_once's."""
    symbols = undefined_symbols(elf_files, seccomp.symbols_with_calls())
    skip: list[str] = []
    said: list[str] = []
    while True:
        ended: list[str] = []
        derived, warnings = _record_once(
            rootfs, app_config, argv, image=image, extra=extra, timeout=timeout,
            secrets=secrets, learned=learned, modules=modules, symbols=symbols, env=env,
            warm=warm, skip=tuple(skip), ended=ended,
        )  # fmt: skip
        if derived is not None or not ended or len(skip) >= MAX_RERUNS:
            return derived, [*said, *warnings]
        skip.append(ended[0])
        said.append(
            f"the recording run's GET {ended[0]} (a page it found by following links) ended "
            "the app, and with it the run: it ran again without asking for that page"
        )


def _record_once(
    rootfs: Path,
    app_config: Mapping[str, Any],
    argv: Sequence[str],
    *,
    image: str,
    extra: Sequence[str],
    timeout: float,
    secrets: tuple[SecretFile, ...],
    learned: Learned | None,
    modules: Collection[str],
    symbols: Collection[str],
    env: Mapping[str, str] | None,
    warm: list[str] | None,
    skip: tuple[str, ...],
    ended: list[str],
) -> tuple[DerivedSyscalls | None, list[str]]:
    """Run the unpacked image once under the recording profile; (derived list, warnings).

    modules: the image's modules, symbols what its ELF files import of
    seccomp.symbols_with_calls() (seccomp.device_syscalls adds what some of them need).
    env: the run's environment (default: app.json's), summon build -e's over the manifest's.

    secrets: what `summon build --secret` gave the run (standins.py adds TLS stand-ins).
    The list is None, with a warning saying why, when the run cannot be made or the app did
    not come up: the image then keeps the sandbox's static allowlist.
    learned: filled with the code the app compiled from strings in that run (a sealing
    image's), after the seal and before it (seal_early.py), however the run went.
    warm: filled with the paths whose request made code after the seal (crawl.py).
    skip: pages the crawl does not ask for; ended: gets the page whose request ended the
    app, when one did.
    """
    from summon.targets.sandbox.record import record_syscalls

    why_not = can_record()
    if why_not:
        learns = (
            ", and learns none of the code an app compiles after the seal (docs/sealing.md)"
            if _learning(app_config)
            else ""
        )
        return None, [f"{why_not}: the image keeps the sandbox's static syscall allowlist{learns}"]
    network = str(app_config.get("network", "socket"))
    ports = tuple(_forwards(app_config))
    started = time.monotonic()
    learned_warning: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="summon-record-") as state,
        tempfile.TemporaryFile() as out,
    ):
        run_secrets, lacking = recording_secrets(app_config, secrets, Path(state))
        if lacking:
            flags = " ".join(f"--secret {n}=FILE" for n in lacking)
            return None, [
                f"the recording run needs the secrets {', '.join(lacking)}, which the build "
                "was not given: the image keeps the sandbox's static syscall allowlist; give "
                f"stand-ins with `summon build {flags}` (used for that run only, never put "
                "in the image)"
            ]
        spec = RunSpec(
            name=f"record-{uuid.uuid4().hex[:10]}",
            volumes=scratch_volumes(app_config, Path(state)),
            image=image,
            rootfs=rootfs,
            # Hermetic: the build never reaches the app's peers (a database, an API), so
            # the run has no egress; seccomp.device_syscalls declares what connecting takes.
            app_config={k: v for k, v in app_config.items() if k != "egress"},
            argv=tuple(argv),
            env={
                **(dict(app_config.get("env") or {}) if env is None else dict(env)),
                **_learning(app_config),
            },
            ports=ports,
            network=network,
            memory=int(app_config.get("memory", 128 * 1024 * 1024)),
            pids=int(app_config.get("pids", 64)),
            state_dir=Path(state),
            stdout=out.fileno(),
            secrets=run_secrets,
        )
        answered: list[str] = []
        made_code: list[str] = []  # pages whose request made code after the seal
        read = [0]

        def console() -> str:
            """What the instance printed since the last call."""
            data = b""
            while chunk := os.pread(out.fileno(), 1 << 20, read[0] + len(data)):
                data += chunk
            read[0] += len(data)
            return data.decode(errors="replace")

        alive: list[bool] = []
        unanswered: list[str] = []  # the page the app ended at
        undeclared: list[tuple[str, int]] = []  # listening, not in the manifest's ports
        elsewhere: list[int] = []  # listened on, when none of the manifest's ports answered

        def drive(instance: Any) -> None:
            if not ports:
                if network == "socket":
                    undeclared[:] = _exercise_undeclared(
                        instance, timeout, answered, console, made_code
                    )
                if not undeclared:
                    instance.wait(max(0.0, timeout - (time.monotonic() - started)))
                    return
                time.sleep(max(0.0, LINGER - (time.monotonic() - started)))
                alive.append(instance.wait(0) is None)
                return
            # TCP first: the forwarder holds a connection until the app listens, so by the
            # time UDP is tried the app is up.
            # A direct-mode app listens on its own stack, never on a kernel socket: asked,
            # it held every such build for the whole timeout.
            own = own_listeners(instance, ports, timeout) if network != "direct" else {}
            late = {f for f, listens in own.items() if not listens()}  # asked last
            for fwd in sorted(ports, key=lambda f: (f.protocol != "tcp", f in late)):
                _host, port = instance.bound[fwd]
                if fwd.protocol == "tcp":
                    if fwd in late and not own[fwd]():
                        continue  # not listened on by its turn: a port opened per transfer
                    seen = _crawl(port, timeout, console, skip=skip)
                    made_code.extend(seen.made_code)
                    if seen.unanswered and instance.wait(0.5) is not None:
                        unanswered.append(seen.unanswered)  # and the app is gone
                    if seen.answered:
                        answered.append(str(fwd))
                elif _exercise_udp(port):
                    answered.append(str(fwd))
            if not answered:  # a port other than the manifest's, say: which one, then
                from summon.build.undeclared import listening

                guests = {f.guest_port for f in ports if f.protocol == "tcp"}
                elsewhere.extend(p for _, p in listening(instance.pid) if p not in guests)
            # Outlive a one-second timer of the app's (or of summon.net's counters).
            time.sleep(max(0.0, LINGER - (time.monotonic() - started)))
            alive.append(instance.wait(0) is None)

        recording = record_syscalls(spec, drive, extra=extra)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        tail = "\n".join(lines[-_TAIL:])
        if warm is not None:
            warm[:] = list(dict.fromkeys(made_code))
        if learned is not None:
            learned[:] = learned_code(lines, (LEARNED_PREFIX, LEARNED_EARLY_PREFIX))
            after = learned_code(lines)
            if after:
                learned_warning.append(learned_note(after, len(learned)))
            if any(f"sealed: over {MAX_LEARNED} pieces of code" in line for line in lines):
                learned_warning.append(
                    f"the app made over {MAX_LEARNED} pieces of code from strings after the "
                    "seal in the recording run, and the seal lets through only those it saw: "
                    "one that makes new code as it serves will be refused (seal.code); "
                    'seal = "audit" shows what it makes (docs/sealing.md)'
                )
    warnings = learned_warning
    if undeclared:
        listed = ", ".join(str(port) for port in sorted({port for _, port in undeclared}))
        warnings.append(
            f"the app listens on TCP port {listed}, which {manifest_table(app_config)} does "
            "not list in ports: the recording run found it and exercised it inside the "
            f"sandbox; add ports = [{listed}] so that summon run -p and the gateway know it"
        )
    served = bool(ports or undeclared)
    if served and not (alive and alive[0]):
        if (problem := refused_write(tail)) is not None and "refused by the seal" not in tail:
            # As the entry's import writing /app fails the build (verify.py): it would at
            # every start. A script's own start runs first here (FastHTML's .sesskey).
            raise ReadOnlyWrite(
                readonly_line("the app failed as it started in the image's recording run", problem),
                tail,
            )
        ended[:] = unanswered
        sealed = (
            " It died of a seal refusal, and will when it runs: the app does that work after "
            "the seal closes (a script's at its first bind), so move it before, or call "
            'summon.runtime.ready() once it is done, or set seal = "audit" to see all of '
            "it (docs/sealing.md)."
            if "refused by the seal" in tail
            else ""
        )
        return None, [
            f"the recording run's app ended before it was exercised (exit status "
            f"{recording.status}); the image keeps the sandbox's static syscall allowlist."
            f"{sealed} Its last lines:\n{tail}",
            *warnings,
        ]
    refused = sorted(set(recording.refused) & seccomp.outside_ceiling(extra, network))
    if refused:
        names = ", ".join(f'"{n}"' for n in refused)
        warnings.append(
            f"the app called {', '.join(refused)} in the recording run, which the sandbox "
            "refuses (EPERM, with a line on the console: they are outside its allowlist); if "
            f"it needs them, add syscalls = [{names}] to {manifest_table(app_config)}"
        )
    if served and not answered:
        # What answering takes (writing to a socket, at least) was never made: a derived
        # list would refuse every answer. The static list holds instead.
        tried = [*(_guest(f) for f in ports), *(f"{port}/tcp" for _, port in undeclared)]
        instead = ", ".join(map(str, sorted(set(elsewhere))))
        hint = (
            f"; the app listens on TCP port {instead} instead: list that in ports (or make "
            "the app listen on the manifest's), or summon run -p and the gateway reach nothing"
            if instead
            else ""
        )
        return None, [
            f"no port of {', '.join(tried)} answered the recording run's request "
            "(GET / over HTTP/1.1, or a UDP datagram), so its syscall list would lack what "
            f"answering takes; the image keeps the sandbox's static syscall allowlist{hint}",
            *warnings,
        ]
    declared = seccomp.device_syscalls(dict(app_config), modules, symbols)
    derived = DerivedSyscalls(
        network=network,
        allowed=tuple(sorted(recording.allowlist(extra) | set(declared))),
        recorded=tuple(sorted(recording.syscalls)),
        extra=tuple(sorted(extra)),
        declared=tuple(sorted(declared)),
        seconds=time.monotonic() - started,
        warnings=warnings,
    )
    return derived, warnings


def _guest(fwd: PortForward) -> str:
    """A manifest's port as its manifest says it ("80", "53/udp"), not the run's forward."""
    return str(fwd.guest_port) if fwd.protocol == "tcp" else f"{fwd.guest_port}/{fwd.protocol}"


def _learning(app_config: Mapping[str, Any]) -> dict[str, str]:
    """The recording run's environment for a sealing image: learn, do not refuse, code."""
    seal = app_config.get("seal")
    mode = seal.get("mode") if isinstance(seal, Mapping) else "off"
    return {LEARN_ENV: "1"} if mode in ("on", "audit") else {}


def scratch_volumes(app_config: Mapping[str, Any], state: Path) -> tuple[Volume, ...]:
    """An empty folder of the app's for each volume it declares, bound for the recording run:
    an app with a KV_RW store opens it on its volume before it serves."""
    from summon.targets.volumes import app_owner

    owner = app_owner()
    mounts = []
    for i, path in enumerate(app_config.get("volumes") or []):
        folder = state / f"volume-{i}"
        folder.mkdir()
        if owner is not None:
            os.chown(folder, *owner)
        mounts.append(Volume(str(folder), str(path)))
    return tuple(mounts)


def _forwards(app_config: Mapping[str, Any]) -> list[PortForward]:
    """A forward from an ephemeral host port to each port app.json declares."""
    out = []
    for item in app_config.get("ports") or []:
        number, _, proto = str(item).partition("/")
        out.append(PortForward(host_port=0, guest_port=int(number), protocol=proto or "tcp"))
    return out


def _exercise_undeclared(
    instance: Any,
    timeout: float,
    answered: list[str],
    console: Callable[[], str],
    made_code: list[str],
) -> list[tuple[str, int]]:
    """An app without ports in its manifest: once it listens (undeclared.py), exercise each
    listening socket from inside its network namespace; those sockets, [] if it never
    listened (it ended, or runs without serving)."""
    from summon.build import undeclared
    from summon.targets.sandbox.netns import run_inside

    found = undeclared.wait_listening(instance.pid, timeout, lambda: instance.wait(0) is None)
    for host, port in found:

        def talk(host: str = host, port: int = port) -> Crawl:
            return _crawl(port, timeout, console, host)

        seen = run_inside(instance.netns.path, talk)
        made_code.extend(seen.made_code)
        if seen.answered:
            answered.append(f"{port}/tcp")
    return found


def _crawl(
    port: int,
    timeout: float,
    console: Callable[[], str],
    host: str = "127.0.0.1",
    skip: tuple[str, ...] = (),
) -> Crawl:
    """Ask the app on a TCP port for `/` and the pages it leads to (crawl.py). The first
    request may wait `timeout` to connect (the forwarder holds the connection until the app
    listens), the rest ANSWER_PATIENCE; each FIRST_BYTE_PATIENCE for its answer (a page's
    first request compiles, and every new syscall of the recording run is slow)."""
    first = [True]

    def get(path: str) -> Any:
        connect = timeout if first[0] else ANSWER_PATIENCE
        first[0] = False
        patience = min(timeout, FIRST_BYTE_PATIENCE)
        return ask(host, port, path, connect, patience, ANSWER_PATIENCE)

    return crawl(get, console, skip=skip)


def own_listeners(
    instance: Any, ports: Sequence[PortForward], timeout: float
) -> dict[PortForward, Callable[[], bool]]:
    """The TCP forwards whose listener is the app's own (a script binds its ports; the
    runtime's are handed to it), each with whether the app listens on it now, once the app
    listens on any; {} if none is its own or it never listens. The crawl asks those it
    listens on first and leaves out one it still does not listen on by its turn: FTP's
    passive ports, listened on per transfer, held the crawl 20 s each (a pyftpdlib
    server's recording took 43 s)."""
    from summon.build import undeclared

    handed = instance.handed.bound if instance.handed is not None else {}
    mine = [f for f in ports if f.protocol == "tcp" and f not in handed]
    if not mine or not undeclared.wait_listening(
        instance.pid, timeout, lambda: instance.wait(0) is None
    ):
        return {}

    def listens(fwd: PortForward) -> Callable[[], bool]:
        return lambda: fwd.guest_port in {p for _, p in undeclared.listening(instance.pid)}

    return {fwd: listens(fwd) for fwd in mine}


def _exercise_udp(port: int) -> bool:
    """A datagram to the app on a host port, sent again until one is answered."""
    deadline = time.monotonic() + UDP_PATIENCE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            s.sendto(EXERCISE_DATAGRAM, ("127.0.0.1", port))
            try:
                s.recvfrom(65535)
                return True
            except (TimeoutError, ConnectionError):
                continue
    return False


def seal_config(
    mode: str, fs: Rootfs, sources: Sequence[Path] = (), script: Path | None = None
) -> dict[str, Any]:
    """app.json's "seal" object (docs/sealing.md).

    mode; preload: every shared object in the image, loaded before the seal; at: "ready"
    when the app's own code (sources) calls summon.runtime.ready(), so that the seal waits
    for it, else "auto"; for a script entry, imports: the stdlib modules it imports at its
    top level, imported before the seal as a function entry's module is.
    """
    preload = sorted(
        path
        for path, node in fs.nodes.items()
        if node.kind == "file" and (path.endswith(".so") or ".so." in path.rpartition("/")[2])
    )
    calls = any(calls_ready(p.read_text(encoding="utf-8", errors="replace")) for p in sources)
    doc: dict[str, Any] = {"mode": mode, "preload": preload, "at": "ready" if calls else "auto"}
    if script is not None:
        doc["imports"] = top_level_imports(script.read_text(encoding="utf-8"))
    return doc


def top_level_imports(source: str) -> list[str]:
    """The stdlib modules a script imports unconditionally at its top.

    Only the stdlib's: importing the app's own or a vendored module ahead of the script's
    first lines could run it before what those lines set up (the environment, sys.path).
    Imports inside if/try are left out: they may be meant to fail.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    imports: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports.append(node.module)
    return [n for n in dict.fromkeys(imports) if n.partition(".")[0] in sys.stdlib_module_names]


def calls_ready(source: str) -> bool:
    """Whether the source imports summon.runtime and calls a `ready` (its warm-up point)."""
    if "ready" not in source or "summon.runtime" not in source:
        return False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "ready") or (
                isinstance(func, ast.Attribute) and func.attr == "ready"
            ):
                return True
    return False
