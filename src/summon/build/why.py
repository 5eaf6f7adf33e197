"""`summon inspect IMAGE --why MODULE`: the chain of imports that brought a module in, or why not.

Read from the bill of materials alone (its modules' `via` edges and its `absent` list), so it
answers for any image, pulled ones included, without the app's sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_HOW = {
    "codec": "names the codec",
    "strptime": "names strptime (time.strptime imports it from C)",
    "c": "is loaded, and C code imports",
    "string": "names in a string",
    "call": "imports by name",
    "package": "imports a module of its package by a name made at run time",
}


def explain(bom: Mapping[str, Any], module: str) -> list[str]:
    """Lines saying why `module` is in the image (the chain from a root), or why it is not
    (and what would import it)."""
    modules = {m["name"]: m for m in bom.get("modules", []) if isinstance(m, dict)}
    if module in modules:
        return _present(bom, modules, module)
    absent = {a["name"]: a for a in bom.get("absent", []) if isinstance(a, dict)}
    if module in absent:
        return _absent(absent[module], modules, bom)
    parents = [p for p in _parents(module) if p in absent]
    if parents:
        lines = [f"{module} is not in the image; neither is its package {parents[0]}:"]
        return lines + _absent(absent[parents[0]], modules, bom)[1:]
    return [
        f"{module} is not in the image, and no code in the image imports it "
        f"(add it to include = [...] in {_table(bom)} if the app needs it)"
    ]


def _present(bom: Mapping[str, Any], modules: Mapping[str, Any], name: str) -> list[str]:
    chain: list[dict[str, Any]] = []
    seen = {name}
    current = modules[name]
    while isinstance(current.get("via"), dict):
        via = current["via"]
        chain.append({**via, "target": current["name"]})
        importer = via.get("module", "")
        if importer in seen or importer not in modules:
            break
        seen.add(importer)
        current = modules[importer]
    root = current
    info = modules[name]
    where = info.get("path") or "no file of its own"
    lines = [f"{name} is in the image ({info.get('group')}, {where}): {info.get('reason')}"]
    if chain:
        root_name = chain[-1]["module"]
        if root_name in modules:
            lines.append(f"  {root_name}  [{root.get('reason')}]")
        else:
            lines.append(f"  {_importer_label(root_name, modules, bom)}  [the entry script]")
        for step in reversed(chain):
            lines.append("  " + _step(step, modules, bom))
    elif info.get("named_by"):
        # A module's own code naming it (zoneinfo's __init__ imports zoneinfo._common) is
        # no importer: what is left, if anything, is.
        edges = [e for e in info.get("named_by") or [] if e.get("module") != name]
        if edges:
            lines.append(
                "  loaded while the app started (seen by the trace); code that imports it:"
            )
            for edge in edges:
                lines.append("  " + _step({**edge, "target": name}, modules, bom))
        else:
            lines.append(
                "  loaded while the app started (seen by the trace), by no Python code the "
                "build can point to: an extension module's native code imports it (orjson "
                "imports zoneinfo so), or code run from a string"
            )
    else:
        lines.append(f"  it is a root: {info.get('reason')}")
    return lines


def _table(bom: Mapping[str, Any]) -> str:
    """Where the image's manifest keys were written, as its app.json says ("summon.toml")."""
    from summon.runtime.config import manifest_table

    return manifest_table(bom.get("app"))


def _absent(
    entry: Mapping[str, Any], modules: Mapping[str, Any], bom: Mapping[str, Any]
) -> list[str]:
    name = entry["name"]
    lines = [f"{name} is not in the image: {entry.get('why')}: {entry.get('detail')}"]
    importers = entry.get("importers") or []
    if importers:
        lines.append("  what would import it:")
        for imp in importers:
            lines.append("  " + _step({**imp, "target": name}, modules, bom))
    fix = {
        "optional": f"to keep it, add include = [{name!r}] to {_table(bom)}",
        "fallback": "it stands in for a module that is in the image; nothing to do",
        "excluded": "the manifest's exclude list leaves it out; remove it there to keep it",
        "deny-list": f"summon leaves it out of every image; include = [{name!r}] keeps it",
        "not found": "nothing provides it: add the distribution that does to requirements",
    }.get(str(entry.get("why")), "")
    if fix:
        lines.append(f"  {fix}")
    return lines


def _step(edge: Mapping[str, Any], modules: Mapping[str, Any], bom: Mapping[str, Any]) -> str:
    importer = str(edge.get("module", ""))
    label = _importer_label(importer, modules, bom)
    line = int(edge.get("line") or 0)
    where = f"{label}:{line}" if line else label
    how = _HOW.get(str(edge.get("how")), "")
    notes = []
    if edge.get("guard"):
        notes.append(f"guarded: {edge['guard']}")
    if edge.get("runs") == "call":
        notes.append("in a function")
    note = f"  ({', '.join(notes)})" if notes else ""
    verb = f" {how}" if how else ""
    return f"{where} ->{verb} {edge.get('target')}{note}"


def _importer_label(importer: str, modules: Mapping[str, Any], bom: Mapping[str, Any]) -> str:
    if importer == "<script>":
        entry = (bom.get("app") or {}).get("entry") or {}
        return str(entry.get("path") or "the entry script")
    info = modules.get(importer)
    if info and info.get("path"):
        return str(info["path"])
    return importer


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
