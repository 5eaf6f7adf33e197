"""Push and pull: the graph of an image between the local store and a registry, in order.

Blobs are HEAD-checked and uploaded before the manifests that name them, manifests before the
index, the index last, so a registry never holds a tag whose content is missing. Referrers
(signatures) go up after their subject, through the referrers API or, when the registry has
none, the referrers tag scheme (an index at tag `sha256-<hex>`).

A pull checks every manifest and blob against the digest and size its parent names, while it
streams. Blobs wait uncommitted in Store.writer() temporaries until everything has arrived,
then go in, manifests after them, the tag last: a failed or interrupted pull leaves no tag and
no partial blob behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from summon.errors import CorruptBlob, UserError
from summon.store.image import BOM_TYPE
from summon.store.layout import INDEX, MANIFEST, BlobWriter, Descriptor, Store, normalize_ref
from summon.store.reference import RegistryError, RemoteRef
from summon.store.registry import CHUNK, MAX_DEPTH, ProgressFn, Registry, Transfer, _no_progress


@dataclass
class _Graph:
    """An image's manifests (children before parents) and the blobs they name."""

    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)
    blobs: dict[str, Descriptor] = field(default_factory=dict)


def _children(doc: Any, where: str) -> tuple[list[Descriptor], list[Descriptor]]:
    """(manifests, blobs) a manifest or index names."""
    if not isinstance(doc, dict):
        raise CorruptBlob(f"{where} is not a JSON object")
    lists = {key: doc.get(key) or [] for key in ("manifests", "layers")}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise CorruptBlob(f"{where}: its {key} are not a list")
    manifests = [Descriptor.from_json(d, where) for d in lists["manifests"]]
    blobs = [Descriptor.from_json(d, where) for d in lists["layers"]]
    if doc.get("config") is not None:
        blobs.append(Descriptor.from_json(doc["config"], where))
    return manifests, blobs


def _local_graph(store: Store, top: Descriptor, graph: _Graph, depth: int = 0) -> None:
    body = store.read(top)
    manifests, blobs = _children(_json_blob(body, top.digest), top.digest)
    if manifests and depth >= MAX_DEPTH:
        raise CorruptBlob(f"manifest {top.digest} nests too deep")
    for child in manifests:
        _local_graph(store, child, graph, depth + 1)
    for b in blobs:
        graph.blobs.setdefault(b.digest, b)
    if all(top.digest != d.digest for d, _ in graph.manifests):
        graph.manifests.append((top, body))


def _json_blob(body: bytes, digest: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: arrays nested some 100,000 deep, which a hostile registry sends
        raise CorruptBlob(f"blob {digest} is not valid JSON") from None


# push


@dataclass(frozen=True)
class PushResult:
    ref: RemoteRef
    digest: str
    blobs_sent: int
    blobs_skipped: int
    bytes_sent: int
    referrers: int


def push(
    store: Store,
    local: str,
    remote: RemoteRef,
    *,
    insecure: bool = False,
    ca_file: Path | None = None,
    progress: ProgressFn = _no_progress,
    chunk: int = CHUNK,
    referrer_types: tuple[str, ...] = (),
) -> PushResult:
    """Send image LOCAL and its referrers of REFERRER_TYPES (signatures) to REMOTE's tag."""
    if remote.digest:
        raise UserError(f"push to a tag, not a digest: {remote}")
    _, top = store.resolve(local)
    graph = _Graph()
    _local_graph(store, top, graph)
    referrers: list[tuple[Descriptor, _Graph]] = []
    for desc in store.referrers(top.digest):
        if desc.artifact_type in referrer_types:
            g = _Graph()
            _local_graph(store, desc, g)
            referrers.append((desc, g))
    sent = skipped = nbytes = 0
    with Registry(remote, insecure=insecure, ca_file=ca_file) as reg:
        reg.ping()
        for g in (graph, *(g for _, g in referrers)):
            for blob in g.blobs.values():
                if reg.has_blob(blob):
                    skipped += 1
                    progress(Transfer(blob.digest, blob.media_type, blob.size, blob.size, "exists"))
                    continue
                reg.upload_blob(store, blob, progress, chunk)
                sent += 1
                nbytes += blob.size
        # Children by digest first, so the index never names something the registry lacks.
        for desc, body in graph.manifests[:-1]:
            reg.put_manifest(desc.digest, body, desc.media_type)
        top_desc, top_body = graph.manifests[-1]
        reg.put_manifest(remote.tag, top_body, top_desc.media_type)
        for desc, g in referrers:
            for child, body in g.manifests[:-1]:
                reg.put_manifest(child.digest, body, child.media_type)
            response = reg.put_manifest(desc.digest, g.manifests[-1][1], desc.media_type)
            # A registry with the referrers API says so with OCI-Subject; else keep the index
            # at the fallback tag up to date ourselves.
            if "oci-subject" not in response.headers:
                _add_to_referrers_tag(reg, top.digest, desc)
    return PushResult(remote, top.digest, sent, skipped, nbytes, len(referrers))


def _add_to_referrers_tag(reg: Registry, subject: str, desc: Descriptor) -> None:
    index = reg.referrers_tag_index(subject)
    manifests = [d for d in index["manifests"] if isinstance(d, dict)]
    if any(d.get("digest") == desc.digest for d in manifests):
        return
    entry = Descriptor(
        desc.media_type, desc.digest, desc.size, dict(desc.annotations), desc.artifact_type
    ).to_json()
    manifests.append(entry)
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    reg.put_manifest(subject.replace(":", "-"), body, INDEX)


# pull


@dataclass(frozen=True)
class PullResult:
    ref: RemoteRef
    local: str
    digest: str
    blobs_fetched: int
    blobs_present: int
    bytes_fetched: int
    referrers: int


class _Staging:
    """What a pull has fetched but not yet put in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.manifests: list[tuple[Descriptor, bytes]] = []
        self.writers: list[tuple[Descriptor, BlobWriter]] = []
        self.planned: set[str] = set()

    def commit(self) -> None:
        for desc, writer in self.writers:
            writer.commit(desc.media_type, expect=desc.digest)
        self.writers.clear()
        for desc, body in self.manifests:
            self.store.put_bytes(body, desc.media_type)

    def abort(self) -> None:
        for _, writer in self.writers:
            writer.abort()
        self.writers.clear()


def _remote_graph(
    reg: Registry,
    desc: Descriptor,
    body: bytes,
    staging: _Staging,
    progress: ProgressFn,
    counts: list[int],
    depth: int = 0,
) -> None:
    where = f"manifest {desc.digest} from registry {reg.name}"
    manifests, blobs = _children(_json_blob(body, desc.digest), where)
    if manifests and depth >= MAX_DEPTH:
        raise RegistryError(f"registry {reg.name}: manifest {desc.digest} nests too deep")
    for child in manifests:
        if child.media_type not in (INDEX, MANIFEST):
            raise RegistryError(
                f"{reg.ref} holds a {child.media_type} manifest; summon pulls OCI images only"
            )
        child_body, _, _ = reg.get_manifest(child.digest, expect=child)
        _remote_graph(reg, child, child_body, staging, progress, counts, depth + 1)
    for blob in blobs:
        if blob.digest in staging.planned:
            continue
        staging.planned.add(blob.digest)
        if staging.store.hold(blob.digest):  # (held: no rmi elsewhere removes it now)
            counts[1] += 1
            progress(Transfer(blob.digest, blob.media_type, blob.size, blob.size, "exists"))
            continue
        free = _free_bytes(staging.store)
        if free is not None and blob.size > free:
            # The size is the registry's word until the signature is checked (at run): a
            # hostile one lists a blob of petabytes and streams until the disk is full.
            raise RegistryError(
                f"registry {reg.name}: blob {blob.digest} of {reg.ref} is {blob.size} bytes by "
                f"its descriptor, more than the {free} bytes free in the store; refused before "
                "fetching it"
            )
        writer = staging.store.writer()
        staging.writers.append((blob, writer))
        reg.fetch_blob(blob, writer, progress)
        counts[0] += 1
        counts[2] += blob.size
    staging.manifests.append((desc, body))


def _check_summon_index(reg: Registry, remote: RemoteRef, top: Descriptor, body: bytes) -> None:
    """Refuse, before any blob is fetched, an index that holds no summon bill of materials:
    another tool's image index (a multi-platform one, podman's or buildx's), which the store
    would keep but no target could run ("no readable /etc/summon/app.json" at the first run).
    A copier may drop artifactType from the index's descriptors (skopeo 1.9): the manifests
    that do not say are asked (small documents, fetched again by the pull)."""
    where = f"manifest {top.digest} from registry {reg.name}"
    manifests, _ = _children(_json_blob(body, top.digest), where)
    untyped = []
    for child in manifests:
        if child.artifact_type == BOM_TYPE:
            return
        if child.media_type == MANIFEST and not child.artifact_type:
            untyped.append(child)
    for child in untyped:
        child_body, _, _ = reg.get_manifest(child.digest, expect=child)
        doc = _json_blob(child_body, child.digest)
        if isinstance(doc, dict) and doc.get("artifactType") == BOM_TYPE:
            return
    raise RegistryError(
        f"{remote} is an image index without a summon bill of materials: another tool's image "
        "(a multi-platform image, or one podman or docker built), not one summon build made; "
        "summon runs only its own images"
    )


def _free_bytes(store: Store) -> int | None:
    """Bytes an unprivileged writer may still put on the store's file system, or None when
    the file system does not say."""
    try:
        st = os.statvfs(store.tmp_root)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def pull(
    store: Store,
    remote: RemoteRef,
    *,
    insecure: bool = False,
    ca_file: Path | None = None,
    progress: ProgressFn = _no_progress,
    referrer_types: tuple[str, ...] = (),
    local: str | None = None,
) -> PullResult:
    """Fetch REMOTE and its referrers of REFERRER_TYPES; tag it locally (default: its name)."""
    local_name = normalize_ref(local) if local else remote.local_name
    staging = _Staging(store)
    counts = [0, 0, 0]  # blobs fetched, blobs already here, bytes fetched
    referrers: list[Descriptor] = []
    try:
        with Registry(remote, insecure=insecure, ca_file=ca_file) as reg:
            reg.ping()
            body, media_type, digest = reg.get_manifest(remote.reference)
            if media_type not in (INDEX, MANIFEST):
                raise RegistryError(
                    f"{remote} is a {media_type or 'untyped'} manifest, not an OCI image; "
                    "summon pulls OCI images"
                )
            if media_type == MANIFEST:
                # A summon image is an index (its container manifest, the bill of materials,
                # the boot artifact); a lone manifest is another tool's image, which the store
                # would keep but no target could run. Refused before a blob is fetched.
                raise RegistryError(
                    f"{remote} is a single OCI manifest, not a summon image (an image index "
                    "that summon build made); summon runs only its own images"
                )
            top = Descriptor(media_type, digest, len(body))
            _check_summon_index(reg, remote, top, body)
            _remote_graph(reg, top, body, staging, progress, counts)
            for art in referrer_types:
                for desc in reg.referrers(digest, art):
                    if desc.media_type != MANIFEST:
                        continue
                    ref_body, _, _ = reg.get_manifest(desc.digest, expect=desc)
                    subject = (_json_blob(ref_body, desc.digest) or {}).get("subject") or {}
                    if subject.get("digest") != digest:
                        continue  # a referrers index that lies about its members
                    _remote_graph(reg, desc, ref_body, staging, progress, counts)
                    referrers.append(desc)
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    for desc in referrers:
        store.add_referrer(desc)
    store.tag(local_name, top)
    return PullResult(remote, local_name, digest, counts[0], counts[1], counts[2], len(referrers))
