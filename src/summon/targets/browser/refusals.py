"""What keeps an image out of a browser tab: each rule a function, each refusal one line.

A static site can hold no secret, and a tab reaches no network of its own; native code
Pyodide's core lacks is left out, and refused only when the app cannot start without it
(native_extensions, refused_for_native: the export's trace decides). check() runs every
rule in RULES on the image and raises Unexportable with the first refusal; a rule returns
None when the image passes it. Manifest keys that do not exist yet (secrets, egress) are
checked when present, so that an image that declares them is refused the day they land;
add a rule to RULES for each new thing a browser cannot give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon.errors import UserError

NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")


class Unexportable(UserError):
    """The image needs something a browser tab cannot give it."""


@dataclass(frozen=True)
class Candidate:
    """An image as the rules see it: its unpacked root, app.json and bill of materials."""

    rootfs: Path
    app: dict[str, Any]
    bom: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.app.get("name") or "the app")

    def code_folders(self) -> list[tuple[str, Path]]:
        """(image path, host path) of every folder on the app's sys.path."""
        return [(p, self.rootfs / p.lstrip("/")) for p in self.app.get("path") or []]


Rule = Callable[[Candidate], str | None]


SERVABLE_ENTRIES = ("function", "wsgi", "asgi")


def entry_is_servable(c: Candidate) -> str | None:
    """A plain script opens its own sockets, which a tab does not have."""
    entry = c.app.get("entry") or {}
    kind = entry.get("kind")
    if kind in SERVABLE_ENTRIES:
        return None
    what = entry.get("path") or f"{entry.get('module')}:{entry.get('function')}"
    return (
        f"its entry {what} is a {kind}, and a browser runs a function asking for a Stack "
        "device (from summon.devices), or a WSGI or ASGI app: for a tab, set the manifest's "
        'entry to the app object the script serves (entry = "module:app")'
    )


@dataclass(frozen=True)
class NativeExtension:
    """A compiled module of a vendored package: Pyodide's npm core has no wheels to load it."""

    owner: str  # "markupsafe 3.0.4": the distribution, or the top-level name
    file: str  # its image path, e.g. /usr/lib/summon/site/markupsafe/_speedups.cpython-311-...so
    module: str  # its module name, e.g. markupsafe._speedups

    def refusal(self) -> str:
        return (
            f"package {self.owner} has a native extension ({self.file}) it cannot start "
            "without, and Pyodide's core runs pure-Python packages only: run it on another "
            "target (summon run IMAGE), or pick a pure-Python package for a tab"
        )


def native_extensions(c: Candidate) -> list[NativeExtension]:
    """Every native extension on the app's sys.path, in a stable order.

    Not a rule: many packages carry one as an optional speed-up with a pure-Python fallback
    (MarkupSafe, under Flask and Jinja2; msgpack; PyYAML's CLoader). The bundle leaves them
    out (a Linux ELF file cannot load in WebAssembly anyway) and the export's trace decides:
    an app that starts without them runs; one whose import of such a module fails is refused
    with refused_for_native().
    """
    found: list[NativeExtension] = []
    for image_path, folder in c.code_folders():
        if not folder.is_dir():
            continue
        owners = _distributions(folder)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name.endswith(NATIVE_SUFFIXES):
                rel = path.relative_to(folder)
                top = rel.parts[0].removesuffix(".py").split(".")[0]
                module = ".".join([*rel.parts[:-1], rel.name.split(".")[0]])
                found.append(NativeExtension(owners.get(top, top), f"{image_path}/{rel}", module))
    return found


def refused_for_native(natives: list[NativeExtension], error: str) -> str | None:
    """The refusal when a failed start in Pyodide is an import of a left-out native module."""
    for native in natives:
        parent, _, last = native.module.rpartition(".")
        said = (
            f"'{native.module}'",  # No module named 'pkg._speedups'
            f"cannot import name '{last}' from '{parent}'",  # from pkg import _speedups
        )
        if any(text in error for text in said):
            return native.refusal()
    return None


def no_secrets(c: Candidate) -> str | None:
    secrets = c.app.get("secrets")
    if secrets:
        names = (
            ", ".join(sorted(str(s) for s in secrets)) if isinstance(secrets, list | dict) else ""
        )
        return (
            f"it needs secrets ({names or secrets}), and a static site holds nothing that is "
            "not public"
        )
    return None


def no_egress(c: Candidate) -> str | None:
    egress = c.app.get("egress")
    if egress:
        return f"it reaches out to the network (egress = {egress!r}), which a browser tab cannot"
    return None


RULES: list[Rule] = [entry_is_servable, no_secrets, no_egress]


def check(candidate: Candidate) -> None:
    """Raise Unexportable with the first rule's refusal; return if every rule passes."""
    for rule in RULES:
        why = rule(candidate)
        if why:
            raise Unexportable(f"cannot run {candidate.name} in a browser: {why}")


def _distributions(folder: Path) -> dict[str, str]:
    """Top-level name -> "name version" of the distributions installed in `folder`."""
    found: dict[str, str] = {}
    for info in sorted(folder.glob("*.dist-info")):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        label = f"{name} {version}".strip()
        tops: set[str] = set()
        top_level = info / "top_level.txt"
        if top_level.is_file():
            tops.update(line.strip() for line in top_level.read_text().splitlines())
        record = info / "RECORD"
        if record.is_file():
            for line in record.read_text().splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first and not first.endswith((".dist-info", ".data")):
                    tops.add(first.removesuffix(".py").split(".")[0])
        for top in tops:
            if top:
                found.setdefault(top, label)
    return found
