"""Reading a summon image out of the store: its index, container manifest, config, BOM, rootfs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import CorruptBlob, UnknownImage, UserError
from summon.store.layout import INDEX, LAYER_GZIP, MANIFEST, Descriptor, Store

BOM_TYPE = "application/vnd.summon.bom.v1+json"
APP_JSON = "etc/summon/app.json"


@dataclass
class Image:
    """One image in the store, named by the reference it was resolved from."""

    store: Store
    ref: str
    desc: Descriptor  # the image index

    @classmethod
    def open(cls, store: Store, ref: str) -> Image:
        name, desc = store.resolve(ref)
        if desc.media_type != INDEX:
            raise CorruptBlob(
                f"{name or desc.digest} is not a summon image (an OCI index expected)"
            )
        return cls(store, name or desc.digest, desc)

    @classmethod
    def by_digest(cls, store: Store, digest: str, ref: str = "") -> Image:
        """The image whose index has this digest, tagged or not; ref is for messages.

        What an instance runs is recorded by digest: a tag may name a newer build by the time
        it restarts, and the old image must still be the one it boots.
        """
        try:
            size = store.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise UnknownImage(
                f"image {ref or digest} ({digest}) is no longer in the store (removed since "
                "this instance was made); build or pull it again"
            ) from None
        return cls(store, ref or digest, Descriptor(INDEX, digest, size))

    @property
    def id(self) -> str:
        return self.desc.short_id

    @cached_property
    def index(self) -> dict[str, Any]:
        doc = self.store.read_json(self.desc)
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise CorruptBlob(f"blob {self.desc.digest} is not an OCI image index")
        return doc

    def _manifest_desc(self, artifact_type: str) -> Descriptor | None:
        for d in self.index["manifests"]:
            desc = Descriptor.from_json(d, self.desc.digest)
            if desc.media_type != MANIFEST:
                continue
            kind = desc.artifact_type
            if not kind:
                # Some copiers (skopeo 1.9) drop artifactType from index descriptors; the
                # manifest itself still says what it is.
                kind = str(self.store.read_json(desc).get("artifactType") or "")
            if kind == artifact_type:
                return desc
        return None

    @cached_property
    def manifest_desc(self) -> Descriptor:
        desc = self._manifest_desc("")
        if desc is None:
            raise CorruptBlob(f"image {self.ref} has no container manifest")
        return desc

    @cached_property
    def manifest(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.store.read_json(self.manifest_desc)
        return doc

    @cached_property
    def config(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.store.read_json(
            Descriptor.from_json(self.manifest.get("config"), self.manifest_desc.digest)
        )
        return doc

    @cached_property
    def layer(self) -> Descriptor:
        layers = self.manifest.get("layers") or []
        if len(layers) != 1:
            raise CorruptBlob(
                f"image {self.ref}: expected one root filesystem layer, found {len(layers)}"
            )
        desc = Descriptor.from_json(layers[0], self.manifest_desc.digest)
        if desc.media_type != LAYER_GZIP:
            raise CorruptBlob(f"image {self.ref}: layer type {desc.media_type} is not supported")
        return desc

    @cached_property
    def bom(self) -> dict[str, Any]:
        desc = self._manifest_desc(BOM_TYPE)
        if desc is None:
            return {}
        manifest = self.store.read_json(desc)
        layers = manifest.get("layers") or []
        if not layers:
            return {}
        doc: dict[str, Any] = self.store.read_json(Descriptor.from_json(layers[0], desc.digest))
        return doc

    def blob_size(self) -> int:
        """Bytes of every blob the image is made of (compressed layer included)."""
        total = self.desc.size
        for d in self.index["manifests"]:
            desc = Descriptor.from_json(d, self.desc.digest)
            total += desc.size
            doc = self.store.read_json(desc)
            total += sum(int(x.get("size", 0)) for x in doc.get("layers") or [])
            total += int((doc.get("config") or {}).get("size", 0))
        return total

    def rootfs(self) -> Path:
        """The unpacked root filesystem, made once per layer digest under the cache folder."""
        return unpack(self.store, self.layer)

    def app_config(self) -> dict[str, Any]:
        path = self.rootfs() / APP_JSON
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
        except (OSError, json.JSONDecodeError):
            raise CorruptBlob(f"image {self.ref} has no readable /{APP_JSON}") from None
        return doc


def unpacked_size(bom: dict[str, Any]) -> int:
    """Bytes of an image's files once unpacked: the sum of its bill of materials' size groups.

    What `summon build` prints and `summon images` shows as UNPACKED. (The layer's
    uncompressed tar is larger by a header and padding per entry: not what lands on disk.)
    """
    sizes = bom.get("sizes") or {}
    return sum(int(v) for v in sizes.values() if isinstance(v, int))


def unpack(store: Store, layer: Descriptor) -> Path:
    """Unpack a layer into the cache (verifying it) unless it is there already."""
    base = paths.cache_dir() / "rootfs"
    dest = base / layer.digest.split(":", 1)[1]
    if (dest / APP_JSON).is_file():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".unpack-"))
    try:
        with store.open_verified(layer) as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
            try:
                tar.extractall(tmp, filter="tar")
            except (tarfile.TarError, OSError, EOFError) as e:
                raise CorruptBlob(f"layer {layer.digest} cannot be unpacked: {e}") from None
        if dest.exists():  # a stale partial unpack from an older summon, or a race we lost
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / APP_JSON).is_file():
                raise UserError(f"cannot unpack the image into {dest}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return dest
