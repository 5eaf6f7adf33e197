"""Services' images read and made ready before their first boot, in a process of their own.

When services are added (start, reload) the gateway starts `python -S -P -m
summon.gateway.ahead` and writes it, as JSON, the store and each new service's name, image,
target and target options. That process reads each image's bill of materials, then makes
each image ready for its target (the sandbox mounts its verified root; qemu finds or builds
its boot artifact, minutes the first time: better now than under a held connection), one
image per thread, and says what it did in JSON lines, each about the services in "names":

    {"names": [...], "bom": {...}}     what the status page shows of their image (bom_summary)
    {"names": [...], "step": "..."}    a step of their preparation, for the log
    {"names": [...], "error": ""}      their image is ready; or why it could not be made so

Why a process: reading an image and preparing it loads the store's and the target's own
code (the container, the verified root, tarfile, ctypes...), ~3 MB that the gateway would
keep resident at rest for nothing (its memory at rest is a goal of its own:
benchmarks/bench_perf.py). This process exits when it is done; the gateway loads that code
only when it boots an instance.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.gateway.config import ServiceConfig

log = logging.getLogger("summon.gateway.server")

Found = Callable[[str, dict[str, Any]], None]  # (service name, what the page shows of its bom)
# (service name, why its image could not be made ready, or "": it is ready)
Prepared = Callable[[str, str], None]


def bom_summary(bom: dict[str, Any]) -> dict[str, Any]:
    """What the status page shows of an image's bill of materials."""
    if not bom:
        return {}
    return {
        "app": bom.get("name"),
        "version": bom.get("version"),
        "python": (bom.get("interpreter") or {}).get("version"),
        "modules": len(bom.get("modules") or []),
        "packages": [f"{p.get('name')} {p.get('version')}" for p in bom.get("packages") or []],
        "unpacked_bytes": sum((bom.get("sizes") or {}).values()),
        "ports": image_tcp_ports(bom),
    }


def image_tcp_ports(bom: dict[str, Any]) -> list[int]:
    """The TCP ports the image's manifest lists ("8000/tcp" in app.json's ports)."""
    out = []
    for item in (bom.get("app") or {}).get("ports") or []:
        number, _, protocol = str(item).partition("/")
        if protocol in ("tcp", "") and number.isdigit():
            out.append(int(number))
    return out


def request(store: Path, services: Sequence[ServiceConfig]) -> bytes:
    """What the process reads on its standard input."""
    entries = [
        {"name": s.name, "image": s.image, "target": s.target, "options": dict(s.options)}
        for s in services
    ]
    return json.dumps({"store": str(store), "services": entries}, default=str).encode()


def command() -> tuple[list[str], dict[str, str]]:
    """Its argv and environment: started as the gateway is (main.lean_command), on the
    gateway's own sys.path (os.environ has the user's PYTHONPATH, for the instances)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return [sys.executable, "-S", "-P", "-m", __name__], env


async def run(
    store: Path,
    services: Sequence[ServiceConfig],
    found: Found,
    ready: Callable[[str], None],
    prepared: Prepared | None = None,
) -> None:
    """Read and prepare services' images in the process: found(name, summary) as each bill
    of materials is read, ready(name) once its image is ready or could not be made so (then
    logged, as the preparation's steps are), and prepared(name, error) with the outcome as
    the process said it ("" when ready). Cancelled (the gateway stops), it ends the
    process. ready is called for every service in the end, whatever happens."""
    left = {s.name for s in services}
    try:
        argv, env = command()
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(request(store, services))
            proc.stdin.close()
            async for line in proc.stdout:
                _heard(line, left, found, ready, prepared)
            status = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        for name in sorted(left):
            log.warning("service %s: cannot prepare its image: exited with status %s", name, status)
    finally:
        for name in left:
            ready(name)


def _heard(
    line: bytes,
    left: set[str],
    found: Found,
    ready: Callable[[str], None],
    prepared: Prepared | None = None,
) -> None:
    try:
        message = json.loads(line)
        names = [str(n) for n in message["names"]]
    except (ValueError, KeyError, TypeError):
        return
    if "bom" in message:
        for name in names:
            found(name, message["bom"])
    elif "step" in message:
        log.info("%s: %s", ", ".join(names), message["step"])
    elif "error" in message:
        for name in names:
            error = str(message["error"])
            if error:
                log.warning("service %s: cannot prepare its image: %s", name, error)
            if prepared is not None:
                prepared(name, error)
            left.discard(name)
            ready(name)


# --- the process -----------------------------------------------------------------------------


class _Out:
    """The JSON lines to the gateway, one whole line at a time from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, names: list[str], **what: Any) -> None:
        line = json.dumps({"names": names, **what}, default=str) + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()

    def step(self, names: list[str], message: str) -> None:
        self.send(names, step=message)


def _prepare(store: Any, ref: str, groups: dict[str, list[dict[str, Any]]], out: _Out) -> None:
    """Make image ref ready for each (target, options) of groups, its services in turn."""
    from summon import targets
    from summon.store.image import Image
    from summon.store.policy import SignaturePolicy

    for entries in groups.values():
        names = [e["name"] for e in entries]
        error = ""
        try:
            target = targets.get(entries[0]["target"], **entries[0]["options"])
            image = Image.open(store, ref)
            SignaturePolicy().check(store, image.desc, image.ref)  # said now, not at a boot
            target.prepare(image, functools.partial(out.step, names))
        except Exception as e:
            error = str(e) or type(e).__name__
        out.send(names, error=error)


def main() -> int:
    """Read the request on stdin, then do as the module docstring says."""
    # The messages get a descriptor of their own; whatever else writes to stdout (a
    # target's notice) goes to the gateway's stderr, not into them.
    out = _Out(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)
    doc = json.load(sys.stdin)
    from summon.store import Store
    from summon.store.image import Image

    store = Store(Path(doc["store"]))
    # image ref -> (target and options) -> the services that name both
    images: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for entry in doc["services"]:
        key = json.dumps([entry["target"], entry["options"]], sort_keys=True)
        images.setdefault(entry["image"], {}).setdefault(key, []).append(entry)
    for ref, groups in images.items():
        try:
            bom = bom_summary(Image.open(store, ref).bom)
        except Exception:  # a missing image shows up as the boot error instead
            bom = {}
        out.send([e["name"] for entries in groups.values() for e in entries], bom=bom)
    threads = [
        threading.Thread(target=_prepare, args=(store, ref, groups, out), daemon=True)
        for ref, groups in images.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
