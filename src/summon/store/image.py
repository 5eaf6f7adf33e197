"""Reading a summon image out of the store: its index, container manifest, config, BOM, rootfs.

The root filesystem as a folder (the unix target's, and where app.json is read from) is
unpacked from the verified layer under the rule set of store/layer_rules.py, into a fresh
folder of the cache, and checked against the image's file list (store/rootfs_artifact.py)
each time it is used again: a cache edited since is unpacked anew, never run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from summon.errors import CorruptBlob, UnknownImage
from summon.store import rootfs_artifact, unpacked
from summon.store.layout import INDEX, LAYER_GZIP, MANIFEST, Descriptor, Store
from summon.store.rootfs_artifact import RootfsArtifact

BOM_TYPE = "application/vnd.summon.bom.v1+json"
APP_JSON = "etc/summon/app.json"


@dataclass
class Image:
    """One image in the store, named by the reference it was resolved from."""

    store: Store
    ref: str
    desc: Descriptor  # the image index
    # A verified read-only mount of the root filesystem a target made ready (its prepare):
    # rootfs() is then that, not the unpacked folder.
    root: Path | None = field(default=None, compare=False)

    @classmethod
    def open(cls, store: Store, ref: str) -> Image:
        name, desc = store.resolve(ref)
        if desc.media_type != INDEX:
            raise CorruptBlob(
                f"{name or desc.digest} is not a summon image (an OCI index expected)"
            )
        return cls(store, name or desc.short_id, desc)  # untagged: by its ID, as docker does

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

    def rootfs_artifact(
        self, step: Callable[[str], None] | None = None, *, mount: bool = False
    ) -> RootfsArtifact:
        """The image's verified root filesystem (erofs and file list), derived if it has none
        (or, to mount its erofs, none this host made: rule rootfs.made-here).

        step, if given, hears that one is derived (once: it is recorded in the store).
        """
        found = rootfs_artifact.find(self.store, self.desc, self.index, self.layer, mount=mount)
        if found is None:
            if step is not None:
                step(DERIVING)
            found = rootfs_artifact.derive(self.store, self.desc, self.layer)
        return found

    def rootfs(self) -> Path:
        """The root filesystem: the verified mount a target made, else the unpacked folder,
        checked against the image's file list first."""
        if self.root is not None:
            return self.root
        folder = self._unpacked
        if not folder.is_dir():
            # Set aside since (another unpack found it changed) or removed: check and unpack
            # again rather than name a folder that is gone.
            del self.__dict__["_unpacked"]
            folder = self._unpacked
        return folder

    @cached_property
    def _unpacked(self) -> Path:
        """The unpacked folder, checked once per Image (RunSpec.for_image reads its app.json
        and names it: one check of every file, not two)."""
        return unpacked.unpack(self.store, self.layer, self.rootfs_artifact().files)

    def app_config(self) -> dict[str, Any]:
        path = self.rootfs() / APP_JSON
        try:
            doc: Any = json.loads(path.read_bytes())
        except (OSError, json.JSONDecodeError, RecursionError):
            raise CorruptBlob(f"image {self.ref} has no readable /{APP_JSON}") from None
        return check_app_config(doc, f"image {self.ref}")


# manifest.NETWORK_MODES; manifest imports this module (through targets), so not from there.
NETWORK_MODES = ("socket", "direct", "none")
RULE_APP_CONFIG = "rule app-config: the shape summon build writes, or a tampered image"
MIN_MEMORY = 8 * 1024 * 1024  # the manifest's floor: Python does not start with less


def check_app_config(doc: Any, image: str) -> dict[str, Any]:
    """doc, if it has the shape a build writes: what the runtime reads of it (its own check,
    summon.runtime.config) and what the host reads (memory, pids, network). CorruptBlob in
    one line otherwise: the host read such a doc as it came, and a hand-made one ended
    `summon run` in an internal error ('env' a list, 'memory' a word)."""
    from summon.runtime.config import ConfigError, from_dict

    where = f"{image}'s /{APP_JSON}"
    try:
        from_dict(doc, where)
    except ConfigError as e:
        raise CorruptBlob(f"{e} ({RULE_APP_CONFIG}); rebuild the image") from None
    assert isinstance(doc, dict)  # from_dict refuses anything else
    for key, floor in (("memory", MIN_MEMORY), ("pids", 1)):
        value = doc.get(key, floor)
        if type(value) is not int or value < floor:
            raise CorruptBlob(
                f"{where}: {key!r} must be a whole number of at least {floor}, not {value!r} "
                f"({RULE_APP_CONFIG}); rebuild the image"
            )
    from summon.secrets import check_name

    for name in doc.get("secrets") or []:  # a list of strings: from_dict checked
        try:
            check_name(name)
        except ValueError:  # InvalidSecretName: a --secret of that name is refused too
            raise CorruptBlob(
                f"{where}: 'secrets' names {name!r}, not one path component "
                f"({RULE_APP_CONFIG}); rebuild the image"
            ) from None
    if doc.get("network", "socket") not in NETWORK_MODES:
        raise CorruptBlob(
            f"{where}: 'network' must be one of {', '.join(NETWORK_MODES)}, not "
            f"{doc.get('network')!r} ({RULE_APP_CONFIG}); rebuild the image"
        )
    return doc


def unpacked_size(bom: dict[str, Any]) -> int:
    """Bytes of an image's files once unpacked: the sum of its bill of materials' size groups.

    What `summon build` prints and `summon images` shows as UNPACKED. (The layer's
    uncompressed tar is larger by a header and padding per entry: not what lands on disk.)
    """
    sizes = bom.get("sizes") or {}
    return sum(int(v) for v in sizes.values() if isinstance(v, int))


DERIVING = (
    "this image has no verified root filesystem made on this host (an older build, or made "
    "elsewhere: only one made here is mounted): deriving "
    "it from the image's layer and recording it beside the image as a local referrer (the "
    "image's digest and signatures do not change)"
)


def remove_images(store: Store, refs: list[str]) -> tuple[int, int]:
    """Untag refs and remove every blob nothing needs any more (also on a full disk: see
    Store.remove); the verified mounts of removed root filesystems are released first, and
    then those no image of any store needs any more (rootfs_artifact.sweep_mounts), and the
    unpacked roots no store needs any more and no process uses (unpacked.sweep)."""
    removed = store.remove(refs, before_delete=rootfs_artifact.release_mounts)
    rootfs_artifact.sweep_mounts()
    unpacked.sweep()
    return removed
