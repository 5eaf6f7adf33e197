"""The OCI content descriptor: what an index or manifest says about one blob or manifest.

Read from JSON a registry sent as well as from the store, so every field is checked for its
type here: a descriptor of the wrong shape is a CorruptBlob (one line), never a TypeError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from summon.errors import CorruptBlob

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    platform: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, d: Any, where: str) -> Descriptor:
        try:
            digest, size, mt = d["digest"], d["size"], d["mediaType"]
        except (KeyError, TypeError):
            raise CorruptBlob(f"{where}: a descriptor lacks digest, size or mediaType") from None
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise CorruptBlob(f"{where}: {digest!r} is not a sha256 digest")
        if not isinstance(size, int) or size < 0:
            raise CorruptBlob(f"{where}: descriptor {digest} has a bad size {size!r}")
        annotations, platform = d.get("annotations") or {}, d.get("platform") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise CorruptBlob(f"{where}: descriptor {digest} has annotations that are not strings")
        if not isinstance(platform, dict):
            raise CorruptBlob(f"{where}: descriptor {digest} has a platform that is not an object")
        return cls(
            media_type=str(mt),
            digest=digest,
            size=size,
            annotations=dict(annotations),
            artifact_type=str(d.get("artifactType") or ""),
            platform=dict(platform),
        )

    @property
    def short_id(self) -> str:
        return self.digest.split(":", 1)[1][:12]
