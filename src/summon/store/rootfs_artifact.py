"""The image's verified root filesystem: an erofs image and a file list, made from its layer.

What a sandboxed instance runs must be what the image's digest (what signatures cover) names,
byte for byte, however the unpacked caches on the host are touched. So `summon build` makes,
from the same files as the layer, two blobs referred to from the image index by one artifact
manifest (docs/image-format.md):

    artifactType application/vnd.summon.rootfs.v1, subject: the container image manifest,
    annotation dev.summon.rootfs.layer = the layer's digest
    layers: the root filesystem as erofs         application/vnd.summon.rootfs.erofs
            every path with kind, mode, size      application/vnd.summon.rootfs.files.v1+json
            and sha256 (or link target)

The sandbox mounts the erofs blob read-only after hashing it through the descriptor it then
attaches to a loop device (targets/sandbox/rootmount.py); the unix target checks its unpacked
folder against the file list before each run (store/image.py).

An image without the artifact (an older build, one pulled from elsewhere) gets it derived here
from its verified layer and recorded as a local referrer of its index, so the index digest and
its signatures stay valid. A referrer is not covered by any signature, and anyone who can
write the store could add one, so a derived artifact carries an HMAC under a key of this host
(kept in the state folder, not in the store): one without a valid MAC is ignored and derived
again.

The kernel mounts an erofs blob as root on the host, so only one this host made itself (from
a layer that passed store/layer_rules.py) is ever mounted: make() records each it makes under
a MAC of this host (<state>/rootfs-made/), and an index's own artifact without that record,
one pulled from a registry, is set aside for one derived here before a mount (rule
rootfs.made-here: a hand-made erofs image reached the host kernel's filesystem code from
whoever published it). Its file list still checks an unpacked folder (the unix target).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import hmac
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon import paths
from summon.errors import CorruptBlob, SummonError, UserError
from summon.hostkeys import host_key
from summon.store import scratch
from summon.store.layout import MANIFEST, Descriptor, Store

ROOTFS_TYPE = "application/vnd.summon.rootfs.v1"
EROFS_TYPE = "application/vnd.summon.rootfs.erofs"
FILES_TYPE = "application/vnd.summon.rootfs.files.v1+json"
LAYER_ANNOTATION = "dev.summon.rootfs.layer"
MAC_ANNOTATION = "dev.summon.rootfs.host-mac"
# Where the sandbox mounts a verified erofs blob: one mount per blob digest, shared by every
# instance of every image with that root filesystem, until the host reboots or rmi removes it.
MOUNT_ROOT = Path("/run/summon/rootfs")
MKFS = "mkfs.erofs"
MKFS_MISSING = (
    "mkfs.erofs not found: apt-get install erofs-utils (summon makes each image's read-only, "
    "verified root filesystem with it)"
)

# An entry of the file list: [path, kind ("d" | "f" | "l"), mode, size, sha256 or link target]
Entry = list[Any]


@dataclass(frozen=True)
class RootfsArtifact:
    """The verified root filesystem of an image, as descriptors of blobs in its store."""

    manifest: Descriptor
    erofs: Descriptor
    files: Descriptor
    derived: bool  # made on this host from the layer, recorded as a referrer of the index


# --- making it -------------------------------------------------------------------------------


def make(store: Store, layer: Descriptor) -> tuple[Descriptor, Descriptor]:
    """The erofs blob and the file list of a layer, written into the store."""
    mkfs = shutil.which(MKFS)
    if mkfs is None:
        raise UserError(MKFS_MISSING)
    try:
        erofs, files = _make(store, layer, mkfs)
        _record_made(layer, erofs, files)
        return erofs, files
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # tarfile's write fails on close, naming no file: say which disk is full.
        raise UserError(
            f"no space left in the store ({store.root}) to make the image's root filesystem "
            f"({e.strerror}); free some (summon rmi --dangling) and try again"
        ) from None


def _make(store: Store, layer: Descriptor, mkfs: str) -> tuple[Descriptor, Descriptor]:
    with tempfile.TemporaryDirectory(dir=store.tmp_dir, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir(mode=0o755)
        # Imported here: tarfile and uuid cost every `summon run` a few ms, and only a
        # root made afresh needs them.
        import uuid

        from summon.store import layer_rules

        layer_rules.extract(store, layer, root)
        root.chmod(0o755)
        entries = tree_entries(root)
        files = store.put_json(
            {"schemaVersion": 1, "layer": layer.digest, "entries": entries}, FILES_TYPE
        )
        image = Path(tmp) / "rootfs.erofs"
        # Reproducible: fixed time and owner, no xattrs, a UUID from the layer digest; the
        # entries are sorted by mkfs.erofs itself whatever order the folder lists them in.
        # lz4hc: 60% of the plain size (examples/http: 7.9 MB, not 13.2 MB) to store, push
        # and hash on the first mount, for about as much lz4 work on a cold page cache.
        fs_uuid = str(uuid.UUID(bytes=bytes.fromhex(layer.digest[7:39])))
        argv = [mkfs, "--quiet", "-zlz4hc", "-T0", f"-U{fs_uuid}", "--all-root", "-x-1"]
        argv.append("--ignore-mtime")
        done = subprocess.run(
            [*argv, str(image), str(root)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            if "[Error 28]" in why or os.strerror(errno.ENOSPC) in why:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # said as make()'s own
            raise UserError(f"mkfs.erofs could not make the root filesystem image: {why}")
        erofs = store.put_file(image, EROFS_TYPE)
    return erofs, files


def create(store: Store, layer: Descriptor, subject: Descriptor) -> Descriptor:
    """Build time: the artifact manifest (about the image manifest subject) for the index."""
    erofs, files = make(store, layer)
    return attach(store, layer, subject, erofs, files)


def attach(
    store: Store, layer: Descriptor, subject: Descriptor, erofs: Descriptor, files: Descriptor
) -> Descriptor:
    """The artifact manifest for blobs make() wrote, about the image manifest subject."""
    return store.put_artifact(
        ROOTFS_TYPE, [erofs, files], subject, annotations={LAYER_ANNOTATION: layer.digest}
    )


def derive(store: Store, index: Descriptor, layer: Descriptor) -> RootfsArtifact:
    """Make the artifact of an image that lacks it and record it as a referrer of its index."""
    erofs, files = make(store, layer)
    annotations = {
        LAYER_ANNOTATION: layer.digest,
        MAC_ANNOTATION: _mac(index.digest, layer.digest, erofs.digest, files.digest),
    }
    manifest = store.put_artifact(ROOTFS_TYPE, [erofs, files], index, annotations=annotations)
    store.add_referrer(manifest)
    return RootfsArtifact(manifest, erofs, files, derived=True)


# --- finding it ------------------------------------------------------------------------------


def find(
    store: Store,
    index: Descriptor,
    index_doc: dict[str, Any],
    layer: Descriptor,
    *,
    mount: bool = False,
) -> RootfsArtifact | None:
    """The artifact of the image whose index is index_doc: its own, else a derived one.
    mount: its erofs is to be mounted: the image's own only if this host made it."""
    for d in index_doc["manifests"]:
        desc = Descriptor.from_json(d, index.digest)
        if desc.media_type != MANIFEST:
            continue
        kind, doc = desc.artifact_type, None
        if not kind:  # a copier that drops artifactType from the index (skopeo 1.9)
            doc = store.read_json(desc)
            kind = str(doc.get("artifactType") or "") if isinstance(doc, dict) else ""
        if kind != ROOTFS_TYPE:
            continue
        found = _read(store, desc, layer, doc)
        if found is None:
            raise CorruptBlob(
                f"image {index.short_id}: its root filesystem artifact {desc.short_id} was "
                f"not made from its layer {layer.short_id}"
            )
        if not mount or made_here(layer, found):
            return found
        break  # made elsewhere (rule rootfs.made-here): one derived here is used instead
    for desc in store.referrers(index.digest):
        if desc.artifact_type not in ("", ROOTFS_TYPE):
            continue
        doc = store.read_json(desc)
        if doc.get("artifactType") != ROOTFS_TYPE:
            continue
        found = _read(store, desc, layer, doc)
        if found is not None and _mac_ok(doc, index.digest, layer.digest, found):
            return RootfsArtifact(found.manifest, found.erofs, found.files, derived=True)
    return None


def _read(
    store: Store, desc: Descriptor, layer: Descriptor, doc: dict[str, Any] | None
) -> RootfsArtifact | None:
    doc = store.read_json(desc) if doc is None else doc
    if not isinstance(doc, dict):
        raise CorruptBlob(f"root filesystem artifact {desc.digest} is not a JSON object")
    if (doc.get("annotations") or {}).get(LAYER_ANNOTATION) != layer.digest:
        return None
    layers = [Descriptor.from_json(x, desc.digest) for x in doc.get("layers") or []]
    by_type = {d.media_type: d for d in layers}
    if EROFS_TYPE not in by_type or FILES_TYPE not in by_type:
        raise CorruptBlob(f"root filesystem artifact {desc.digest} lacks its erofs or file list")
    return RootfsArtifact(desc, by_type[EROFS_TYPE], by_type[FILES_TYPE], derived=False)


def _mac(index: str, layer: str, erofs: str, files: str) -> str:
    message = f"summon rootfs v1\n{index}\n{layer}\n{erofs}\n{files}\n".encode()
    return hmac.new(_host_key(), message, hashlib.sha256).hexdigest()


def _mac_ok(doc: dict[str, Any], index: str, layer: str, found: RootfsArtifact) -> bool:
    given = str((doc.get("annotations") or {}).get(MAC_ANNOTATION) or "")
    expected = _mac(index, layer, found.erofs.digest, found.files.digest)
    return hmac.compare_digest(given, expected)


def _made_record(erofs: Descriptor) -> Path:
    return paths.state_dir() / "rootfs-made" / erofs.digest.removeprefix("sha256:")


def _made_mac(layer: Descriptor, erofs: Descriptor, files: Descriptor) -> str:
    message = f"summon rootfs made here v1\n{layer.digest}\n{erofs.digest}\n{files.digest}\n"
    return hmac.new(_host_key(), message.encode(), hashlib.sha256).hexdigest()


def _record_made(layer: Descriptor, erofs: Descriptor, files: Descriptor) -> None:
    """Note that this host made erofs (and files) from layer; a state folder that cannot be
    written only costs a derivation at the first sandboxed run."""
    path = _made_record(erofs)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(_made_mac(layer, erofs, files))
        os.replace(tmp, path)
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def made_here(layer: Descriptor, found: RootfsArtifact) -> bool:
    """Whether this host made found's erofs and file list from layer (rule rootfs.made-here)."""
    try:
        given = _made_record(found.erofs).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given, _made_mac(layer, found.erofs, found.files))


def _host_key() -> bytes:
    """This host's key for derived artifacts (summon.hostkeys)."""
    return host_key("rootfs")


# --- the file list ---------------------------------------------------------------------------


def _scan(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """path -> (kind, mode, size, link target) for everything under root, links not followed."""
    found: dict[str, tuple[str, int, int, str]] = {}
    todo = [("", str(root))]
    while todo:
        rel, folder = todo.pop()
        with os.scandir(folder) as listing:
            for entry in listing:
                path = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISDIR(st.st_mode):
                    found[path] = ("d", mode, 0, "")
                    todo.append((path, entry.path))
                elif stat.S_ISREG(st.st_mode):
                    found[path] = ("f", mode, st.st_size, "")
                elif stat.S_ISLNK(st.st_mode):
                    found[path] = ("l", 0o777, 0, os.readlink(entry.path))
                else:
                    found[path] = ("?", mode, 0, "")
    return found


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_entries(root: Path) -> list[Entry]:
    """The file list of the tree at root, sorted by path."""
    out: list[Entry] = []
    for path, (kind, mode, size, target) in sorted(_scan(root).items()):
        extra = _sha256(root / path) if kind == "f" else target
        out.append([path, kind, mode, size, extra])
    return out


def tree_difference(root: Path, entries: list[Entry]) -> str | None:
    """The first way the tree at root differs from the file list, or None if it does not."""
    found = _scan(root)
    expected = {str(e[0]): e for e in entries}
    for path in sorted(found.keys() - expected.keys()):
        return f"/{path} is not in the image"
    for path in sorted(expected.keys() - found.keys()):
        return f"/{path} is missing"
    for path, (_, kind, mode, size, extra) in sorted(expected.items()):
        has = found[path]
        if (has[0], has[1]) != (kind, mode):
            return f"/{path} changed kind or mode"
        if kind == "l" and has[3] != extra:
            return f"/{path} points elsewhere ({has[3]!r}, not {extra!r})"
        if kind == "f" and (has[2] != size or _sha256(root / path) != extra):
            return f"/{path} changed content"
    return None


# --- releasing its mounts --------------------------------------------------------------------

_MNT_DETACH = 2
_LOOP_MAJOR = 7


def mount_point(erofs: Descriptor | str) -> Path:
    """Where the sandbox mounts this erofs blob."""
    digest = erofs if isinstance(erofs, str) else erofs.digest
    return MOUNT_ROOT / digest.removeprefix("sha256:")


def release_mounts(digests: set[str]) -> None:
    """Unmount the verified mounts of these blobs (lazily: running instances keep theirs)."""
    for digest in digests:
        _release(mount_point(digest))


def _release(where: Path) -> bool:
    """Detach the verified mount at where and forget it; False if it cannot be (not root)."""
    if not os.path.ismount(where):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(where), _MNT_DETACH) != 0:
        return False  # not ours to unmount (no privilege): it goes with the next reboot
    with contextlib.suppress(OSError):
        where.rmdir()
    where.with_suffix(".verified").unlink(missing_ok=True)
    return True


def verified_mounts() -> dict[Path, str]:
    """Each verified mount on this host, with the file its loop device reads (the path the
    kernel gives it now; ending in " (deleted)" once that file is gone)."""
    found: dict[Path, str] = {}
    with contextlib.suppress(OSError):
        for where in MOUNT_ROOT.iterdir():
            with contextlib.suppress(OSError):
                dev = os.stat(where).st_dev
                if os.major(dev) != _LOOP_MAJOR or not os.path.ismount(where):
                    continue
                sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/loop/backing_file")
                found[where] = sysfs.read_text().rstrip("\n")
    return found


def sweep_mounts() -> int:
    """Detach the verified mounts no image needs any more; return how many went.

    A mount stays until the host reboots unless something detaches it, and each one is in
    the mount table that runc copies at every container start (40-120 left after a test
    session or on a busy host made each start measurably slower). One goes when its blob
    file is gone (a store deleted without `summon rmi`) or when the store that holds the
    blob no longer reaches it from an image (its image left the index another way than
    `summon rmi`: a tag moved with nothing keeping the old image, a hand edit) and no live
    process holds it (a build or pull on its way, scratch.py's leases). A store that cannot
    be read keeps its mounts: detaching only costs a hash at the next start, but it is not
    done on a guess."""
    if os.geteuid() != 0:
        return 0  # (only root mounts them, and only root can detach them)
    reached: dict[Path, set[str] | None] = {}
    gone = 0
    for where, backing in verified_mounts().items():
        digest = "sha256:" + where.name
        if not backing.endswith(" (deleted)"):
            blob = Path(backing)
            root = blob.parent.parent.parent
            if blob.parent != root / "blobs" / "sha256":
                continue  # not a store's blob: not ours to judge
            if root not in reached:
                reached[root] = store_keeps(root)
            held = reached[root]
            if held is None or digest in held:
                continue
        gone += _release(where)
    return gone


def store_keeps(root: Path) -> set[str] | None:
    """What the store at root keeps (every digest its images reach, and what live processes
    hold), or None if that cannot be told."""
    if (
        not all((root / part).is_file() for part in ("oci-layout", "index.json"))
        or not (root / ".tmp").is_dir()
    ):
        return None  # (Store() would make what is missing: a sweep writes nothing)
    with contextlib.suppress(OSError, SummonError):
        store = Store(root)
        return store.reachable() | scratch.leased(store.tmp_root, scratch.own_dir(store.tmp_root))
    return None
