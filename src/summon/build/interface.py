"""How the runtime serves an entry: call an entry function, or serve a WSGI or ASGI app.

`entry_interface` decides, at build time, for a "module:attr" entry: the manifest's
`interface` if given, else what the entry's signature says (_interface_probe.py, run under
the image's interpreter with the app's vendored packages, as the image would import it).
Detection runs in both cases, so that an interface that contradicts the signature fails the
build with one line instead of the first request.

Why at build time and not when the image starts: the builder must know before the closure
trace whether the runtime's HTTP server (and h11, vendored for it) goes into the image, and
detecting it at start would cost every start an import of inspect (~10 ms).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import summon
from summon.build.python import Interpreter
from summon.build.tracing import shielded
from summon.build.vendor import Package, vendor
from summon.errors import BuildError
from summon.manifest import Manifest
from summon.runtime.injection import DEVICE_TYPES

# What the runtime's HTTP server needs in the image beyond the stdlib (requirement -> the
# top-level module it installs). 0.16.0 is the first h11 without CVE-2025-43859 (request
# smuggling through chunked bodies).
SERVER_REQUIREMENTS = {"h11==0.16.0": "h11"}
# What its WebSocket needs besides, for ASGI entries (WSGI has no WebSocket): wsproto, which
# frames on top of whichever h11 the image has (1.2.0 takes any h11 from 0.9 on).
WEBSOCKET_REQUIREMENTS = {"wsproto==1.2.0": "wsproto"}
# What the pure-Python TLS backend needs (tls = { backend = "python" }): tlslite-ng and its
# one dependency, pinned because summon drives their internals (docs/tls.md). six comes with
# ecdsa. tlslite-ng is LGPL-2.1: it ships unmodified, with its licence, as its own files.
TLS_PYTHON_REQUIREMENTS = {"tlslite-ng==0.8.2": "tlslite", "ecdsa==0.19.2": "ecdsa"}
_PROBE = Path(__file__).with_name("_interface_probe.py")
DETECT_TIMEOUT = 60.0


class Detected(NamedTuple):
    """What _interface_probe.py reports of the entry (see there)."""

    kind: str
    why: str
    stack: bool
    unfilled: tuple[str, ...] = ()


def detect(
    m: Manifest,
    interp: Interpreter,
    site: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = DETECT_TIMEOUT,
) -> Detected:
    """(kind, why, stack, unfilled) of the entry, as _interface_probe.py reports them."""
    with tempfile.TemporaryDirectory(prefix="summon-interface-") as tmp:
        work = Path(tmp)
        # A folder holding only `summon` (for apps that import summon.devices), so that
        # nothing else of the host's site-packages becomes importable.
        runtime = work / "runtime"
        runtime.mkdir()
        (runtime / "summon").symlink_to(Path(summon.__file__).resolve().parent)
        config: dict[str, object] = {
            "search_path": [str(m.app_dir), str(site), str(runtime)],
            "module": m.entry.module,
            "attr": m.entry.function,
            "device_types": list(DEVICE_TYPES),  # the runtime's, so the two never disagree
        }
        if m.entry.call is not None:
            config["call"] = m.entry.call.to_json()
        (work / "in.json").write_text(json.dumps(config))
        path = os.environ.get("PATH", "/usr/bin:/bin")
        run_env = {"PATH": path, "LC_ALL": "C.UTF-8", **(m.env if env is None else env)}
        argv = [str(interp.executable), "-S", "-E", "-B", str(_PROBE)]
        try:
            proc = subprocess.run(
                shielded(
                    [*argv, str(work / "in.json"), str(work / "out.json")],
                    m.volumes,
                    m.app_dir,
                    work / "app-writes",
                ),
                cwd=m.app_dir,
                env=run_env,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BuildError(
                f"importing the entry module {m.entry.module!r} took over {timeout:g} s; "
                "make its import finish sooner"
            ) from None
        try:
            result = json.loads((work / "out.json").read_text())
        except (OSError, ValueError):
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            why = f"could not be inspected ({lines[-1] if lines else 'no output'})"
            return Detected("error", why, True)
        return Detected(
            str(result["kind"]),
            str(result["why"]),
            bool(result.get("stack", True)),
            tuple(str(n) for n in result.get("unfilled", ())),
        )


def entry_interface(
    m: Manifest, interp: Interpreter, site: Path, env: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """ "wsgi" or "asgi" if the runtime serves the entry, "" if it calls or runs it; and
    whether the runtime's Stack serves the app: False for an entry function that asks for no
    Stack device (it opens its own listeners: uvicorn.run in main), so that no target hands
    it listeners it would never accept on.

    BuildError if the manifest's interface contradicts the entry's signature, if the
    signature says nothing and the manifest does not either, or if a served app has no TCP
    port or no network.
    """
    if m.entry.kind != "function":
        return "", False
    kind, why, stack, unfilled = detect(m, interp, site, env)
    where = f"in {m.source.name}"
    if m.entry.call is not None:
        _check_factory(m, kind, why)
    elif kind == "other" and unfilled and not m.interface:
        # The runtime would stop at the first start with this line: say it now.
        example = ", ".join("None" for _ in unfilled)
        raise BuildError(
            f"entry {m.entry} {why}, and the runtime fills an entry function's parameters "
            f"with devices only ({', '.join(DEVICE_TYPES)}), not {', '.join(unfilled)}. If "
            "it is an app factory returning a WSGI or ASGI app, write its call with the "
            f'arguments it takes: entry = "{m.entry}({example})"'
        )
    if m.interface:
        if kind in ("wsgi", "asgi", "function") and kind != m.interface:
            said = {"wsgi": "a WSGI app", "asgi": "an ASGI app", "function": "an entry function"}
            raise BuildError(
                f'interface = "{m.interface}" {where}, but entry {m.entry} {why}, which makes '
                f"it {said[kind]}; fix interface or entry"
            )
        interface = m.interface
    elif kind == "unknown":
        raise BuildError(
            f"entry {m.entry} {why}: summon cannot tell whether it is a WSGI or an ASGI app; "
            f'set interface = "wsgi" or interface = "asgi" {where}'
        )
    else:
        interface = kind if kind in ("wsgi", "asgi") else ""
    if interface and not any(p.protocol == "tcp" for p in m.ports):
        raise BuildError(
            f"entry {m.entry} is a {interface.upper()} app, served over HTTP, but {m.source.name} "
            f"lists no TCP port; add ports = [8000] to {m.table}"
        )
    if interface and m.network == "none":
        raise BuildError(
            f"entry {m.entry} is a {interface.upper()} app, served over HTTP, but {where} "
            'network = "none"; set network = "socket" (or "direct")'
        )
    return interface, bool(interface) or stack or kind == "error"


def _check_factory(m: Manifest, kind: str, why: str) -> None:
    """BuildError unless the factory's call returned an app the runtime can serve."""
    if kind == "error":
        raise BuildError(f"entry {m.entry}: the app factory {why}")
    if kind in ("wsgi", "asgi") or (kind == "unknown" and m.interface):
        return
    if kind == "unknown":
        raise BuildError(
            f"entry {m.entry} {why}: summon cannot tell whether it is a WSGI or an ASGI "
            f'app; set interface = "wsgi" or interface = "asgi" in {m.source.name}'
        )
    raise BuildError(
        f"entry {m.entry} {why}, neither a WSGI nor an ASGI app, which is what the runtime "
        "serves of a factory's result. An app that needs its own server (aiohttp's "
        "web.Application, Tornado's Application) runs as a script that starts it: "
        'entry = "app.py"'
    )


def add_server_requirements(
    interp: Interpreter, site: Path, interface: str = "wsgi"
) -> list[Package]:
    """Vendor what the runtime's HTTP server needs into `site`: h11, and for an ASGI
    interface wsproto too (its WebSocket)."""
    packages = add_runtime_requirements(interp, site, SERVER_REQUIREMENTS, "the HTTP server")
    if interface == "asgi":
        # h11 is in `site` by now, ours or the app's own: wsproto alone, so that an app's
        # pinned h11 is never fetched a second time beside it.
        packages += add_runtime_requirements(
            interp, site, WEBSOCKET_REQUIREMENTS, "the WebSocket", no_deps=True
        )
    return packages


def add_runtime_requirements(
    interp: Interpreter,
    site: Path,
    requirements: dict[str, str],
    purpose: str,
    no_deps: bool = False,
) -> list[Package]:
    """Vendor what a part of the runtime needs into `site`, unless the app's own requirements
    brought it already (then the app's version is used)."""
    wanted = [r for r, module in requirements.items() if not (site / module).exists()]
    if not wanted:
        return []
    staging = site.parent / (site.name + "-runtime")
    packages = vendor(wanted, interp, staging, no_deps)
    site.mkdir(parents=True, exist_ok=True)
    try:
        for item in sorted(staging.iterdir()):
            if (site / item.name).exists():
                raise BuildError(
                    f"vendoring {', '.join(wanted)} for {purpose}: {item.name} is in the "
                    "app's requirements already; pin the same version in requirements instead"
                )
            item.rename(site / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return packages
