"""Which images hold a damaged blob: the line that says a blob is corrupt or missing names them.

A truncated or altered file under the store made every command that read it say `blob
sha256:... is corrupt`, and a user with several images could not tell which one to remove.
The walk reads the store's manifests as they are, unverified (this only picks names for a
message), and a blob that cannot be read is a dead end, not an error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from summon.store.layout import INDEX, MANIFEST, Descriptor, Store

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def holders(store: Store, digest: str) -> list[str]:
    """The tags of the images that reach digest, in index order."""
    return [name for name, top in store.refs() if _reaches(store, top, digest)]


def explain(store: Store, message: str) -> str:
    """message, with the images holding the first blob it names and what to do about them;
    message alone when it names no blob of a tagged image."""
    for digest in _DIGEST.findall(message):
        names = holders(store, digest)
        if names:
            which = "image " if len(names) == 1 else "images "
            return (
                f"{message}; it belongs to {which}{', '.join(names)}: remove it "
                f"(summon rmi {' '.join(names)}) and build or pull it again"
            )
    return message


def _reaches(store: Store, top: Descriptor, digest: str) -> bool:
    todo, seen = [top], set()
    while todo:
        desc = todo.pop()
        if desc.digest == digest:
            return True
        if desc.digest in seen or desc.media_type not in (INDEX, MANIFEST):
            continue
        seen.add(desc.digest)
        try:
            doc: Any = json.loads(store.blob_path(desc.digest).read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(doc, dict):
            continue
        children = [*(doc.get("manifests") or []), *(doc.get("layers") or [])]
        if doc.get("config") is not None:
            children.append(doc["config"])
        for child in children:
            try:
                todo.append(Descriptor.from_json(child, desc.digest))
            except Exception:  # a damaged manifest's entry: not a way to anything
                continue
    return False
