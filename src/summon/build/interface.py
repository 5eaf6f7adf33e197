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
from pathlib import Path

import summon
from summon.build.python import Interpreter
from summon.build.vendor import Package, vendor
from summon.errors import BuildError
from summon.manifest import Manifest

# What the runtime's HTTP server needs in the image beyond the stdlib. 0.16.0 is the first
# h11 without CVE-2025-43859 (request smuggling through chunked bodies).
SERVER_REQUIREMENTS = ("h11==0.16.0",)
_PROBE = Path(__file__).with_name("_interface_probe.py")
DETECT_TIMEOUT = 60.0


def detect(
    m: Manifest, interp: Interpreter, site: Path, timeout: float = DETECT_TIMEOUT
) -> tuple[str, str]:
    """(kind, why) of the entry, as _interface_probe.py reports them (see there)."""
    with tempfile.TemporaryDirectory(prefix="summon-interface-") as tmp:
        work = Path(tmp)
        # A folder holding only `summon` (for apps that import summon.devices), so that
        # nothing else of the host's site-packages becomes importable.
        runtime = work / "runtime"
        runtime.mkdir()
        (runtime / "summon").symlink_to(Path(summon.__file__).resolve().parent)
        config = {
            "search_path": [str(m.app_dir), str(site), str(runtime)],
            "module": m.entry.module,
            "attr": m.entry.function,
        }
        (work / "in.json").write_text(json.dumps(config))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", **m.env}
        argv = [str(interp.executable), "-S", "-E", "-B", str(_PROBE)]
        try:
            proc = subprocess.run(
                [*argv, str(work / "in.json"), str(work / "out.json")],
                cwd=m.app_dir,
                env=env,
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
            return "error", f"could not be inspected ({lines[-1] if lines else 'no output'})"
        return str(result["kind"]), str(result["why"])


def entry_interface(m: Manifest, interp: Interpreter, site: Path) -> str:
    """ "wsgi" or "asgi" if the runtime serves the entry, "" if it calls or runs it.

    BuildError if the manifest's interface contradicts the entry's signature, if the
    signature says nothing and the manifest does not either, or if a served app has no TCP
    port or no network.
    """
    if m.entry.kind != "function":
        return ""
    kind, why = detect(m, interp, site)
    where = f"in {m.source.name}"
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
            "lists no TCP port; add ports = [8000] to [tool.summon]"
        )
    if interface and m.network == "none":
        raise BuildError(
            f"entry {m.entry} is a {interface.upper()} app, served over HTTP, but {where} "
            'network = "none"; set network = "socket" (or "direct")'
        )
    return interface


def add_server_requirements(interp: Interpreter, site: Path) -> list[Package]:
    """Vendor what the runtime's HTTP server needs into `site`, unless the app's own
    requirements brought it already (then the app's version is used)."""
    wanted = [r for r in SERVER_REQUIREMENTS if not (site / r.partition("==")[0]).exists()]
    if not wanted:
        return []
    staging = site.parent / (site.name + "-server")
    packages = vendor(wanted, interp, staging)
    site.mkdir(parents=True, exist_ok=True)
    try:
        for item in sorted(staging.iterdir()):
            if (site / item.name).exists():
                raise BuildError(
                    f"vendoring {', '.join(wanted)} for the HTTP server: {item.name} is in the "
                    "app's requirements already; add h11 to requirements instead"
                )
            item.rename(site / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return packages
