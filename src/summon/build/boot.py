"""The boot artifact: what a VM target boots an image from (kernel, initramfs, boot config).

It is a second OCI manifest in the image's index, beside the container image and its bill of
materials, so one reference carries all of them (docs/image-format.md):

    artifactType application/vnd.summon.boot.v1+json, subject: the container image manifest
    layers: the kernel (bzImage)                    application/vnd.summon.kernel
            the initramfs (cpio newc, gzip)         application/vnd.summon.initramfs.v1+gzip
            the boot config (JSON, below)           application/vnd.summon.boot.config.v1+json

The initramfs is the image's root filesystem layer, entry for entry, as the kernel's cpio
format, plus the few device nodes needed before /dev is mounted (DEVICE_NODES). It is
reproducible like the layer: entries sorted, mtime 0, owner 0, inode numbers in order. The
layer's members pass the rule set every unpack path applies (store/layer_rules.py). The
boot config holds the kernel command line split in two: `kernel_args` for the kernel and
`init` for the runtime, which the kernel starts as PID 1 with `rdinit=<init[0]> <init[1:]>`
(see init_argv for why without `--`), so no /init is needed; and `initramfs`, the sha256 and
size of the uncompressed archive, which the qemu target checks its decompressed copy against
before each boot (the boot config, like the rest, is covered by the image index digest).
"""

from __future__ import annotations

import gzip
import hashlib
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from summon.build import kernel as kernel_mod
from summon.errors import CorruptBlob, UserError
from summon.store import layer_rules
from summon.store.image import Image
from summon.store.layout import INDEX, MANIFEST, Descriptor, Store

BOOT_TYPE = "application/vnd.summon.boot.v1+json"
KERNEL_TYPE = "application/vnd.summon.kernel"
INITRAMFS_TYPE = "application/vnd.summon.initramfs.v1+gzip"
BOOT_CONFIG_TYPE = "application/vnd.summon.boot.config.v1+json"
# Always on the command line of a summon VM. panic=-1 and reboot=t turn a panic, and the
# runtime's reboot(2) at the end, into a triple fault, which -no-reboot makes QEMU exit on:
# microvm has no reset or power-off device. no_timer_check: under emulation the kernel's
# check of the IO-APIC timer fails on timing alone and its fallback costs seconds; QEMU's
# timer is known good. summon.vm=1 tells the runtime it is a VM's init.
KERNEL_ARGS = ("console=ttyS0", "panic=-1", "reboot=t", "quiet", "no_timer_check", "summon.vm=1")
# Device nodes the interpreter needs before the runtime mounts devtmpfs on /dev: the kernel
# opens /dev/console as init's stdin, stdout and stderr, and Python reads /dev/urandom for
# its hash seed when getrandom() would block, as it does that early in a VM. Not /dev/null:
# the runtime takes it as the sign that /dev is mounted already.
DEVICE_NODES = (
    ("dev/console", stat.S_IFCHR | 0o600, (5, 1)),
    ("dev/urandom", stat.S_IFCHR | 0o444, (1, 9)),
)

Step = Callable[[str], None]


@dataclass(frozen=True)
class BootArtifact:
    """The boot artifact of an image, as descriptors of blobs in its store."""

    manifest: Descriptor
    kernel: Descriptor
    initramfs: Descriptor
    config: dict[str, Any]


def boot_artifact(image: Image) -> BootArtifact | None:
    """The image's boot artifact, or None if it has none yet."""
    manifests = [Descriptor.from_json(d, image.desc.digest) for d in image.index["manifests"]]
    for desc in manifests:
        if desc.media_type == MANIFEST and desc.artifact_type == BOOT_TYPE:
            return _read_artifact(image.store, desc)
    # Copied by a tool that drops artifactType from the index (skopeo 1.9 does): the
    # manifests themselves still say what they are.
    for desc in manifests:
        if desc.media_type == MANIFEST and not desc.artifact_type:
            doc = image.store.read_json(desc)
            if isinstance(doc, dict) and doc.get("artifactType") == BOOT_TYPE:
                return _read_artifact(image.store, desc)
    return None


def _read_artifact(store: Store, desc: Descriptor) -> BootArtifact:
    manifest = store.read_json(desc)
    layers = [Descriptor.from_json(x, desc.digest) for x in manifest.get("layers") or []]
    by_type = {d.media_type: d for d in layers}
    missing = {KERNEL_TYPE, INITRAMFS_TYPE, BOOT_CONFIG_TYPE} - set(by_type)
    if missing:
        raise CorruptBlob(f"boot artifact {desc.digest} lacks {', '.join(sorted(missing))}")
    config = store.read_json(by_type[BOOT_CONFIG_TYPE])
    if not isinstance(config, dict):
        raise CorruptBlob(f"boot artifact {desc.digest}: its config is not a JSON object")
    return BootArtifact(desc, by_type[KERNEL_TYPE], by_type[INITRAMFS_TYPE], config)


def boot_config(
    app_config: dict[str, Any],
    init: list[str],
    kernel: dict[str, Any],
    modules: list[str],
    acpi: bool = False,
) -> dict[str, Any]:
    """The boot config JSON: how to start the kernel and the runtime, and what is in the kernel.

    modules: kernel modules (image paths) the runtime loads first; acpi: the kernel finds
    its devices in ACPI tables. Only a generic kernel (the benchmarks' baseline) needs
    either: summon's own kernels have their drivers built in and read the command line.
    """
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "kernel_args": list(KERNEL_ARGS),
        "init": list(init),
        "memory": int(app_config.get("memory", 128 << 20)),
        "kernel": kernel,
    }
    if modules:
        doc["modules"] = list(modules)
    if acpi:
        doc["acpi"] = True
    return doc


def add_boot_artifact(
    image: Image,
    step: Step = lambda s: None,
    progress: kernel_mod.ProgressFn | None = None,
) -> Image:
    """Give the image a boot artifact with its own kernel (built if not cached); return it."""
    app = image.app_config()
    fragments = kernel_mod.select_fragments(app)
    step(f"kernel with {', '.join(fragments)}")
    shown: list[str] = []

    def describe(p: kernel_mod.Progress) -> None:
        line = _describe(p)
        if not shown or shown[-1] != line:  # a step per percent, not per compiled file
            shown.append(line)
            step(line)

    kernel = kernel_mod.build_kernel(fragments, progress or describe)
    meta = kernel.meta()
    info = {
        "config_hash": kernel.config_hash,
        "fragments": meta.get("fragments", list(fragments)),
        "version": meta.get("version", ""),
        "size": kernel.bzimage.stat().st_size,
    }
    return attach_boot_artifact(image, kernel.bzimage, info, step=step)


def attach_boot_artifact(
    image: Image,
    kernel: Path,
    kernel_info: dict[str, Any],
    extra: list[Extra] | None = None,
    modules: list[str] | None = None,
    step: Step = lambda s: None,
    acpi: bool = False,
) -> Image:
    """Write the boot artifact for `kernel` into the image's index; return the new image.

    extra: more initramfs entries (a generic kernel's modules). The index is rewritten with
    the artifact in it (replacing an older one) and the image's name moves to the new
    index; an image opened by digest only gets the new index.
    """
    store = image.store
    argv = list(image.config.get("config", {}).get("Entrypoint") or [])
    if not argv:
        raise CorruptBlob(f"image {image.ref} has no Entrypoint to boot")
    init, links = init_argv(argv)

    step("writing the initramfs")
    writer = store.writer()
    try:
        entries = links + list(extra or [])
        cpio_digest, cpio_size = write_initramfs(store, image.layer, writer, entries)  # type: ignore[arg-type]
        initramfs = writer.commit(INITRAMFS_TYPE)
    except BaseException:
        writer.abort()
        raise
    writer = store.writer()
    try:
        with kernel.open("rb") as f:
            while chunk := f.read(1 << 20):
                writer.write(chunk)
        kernel_desc = writer.commit(KERNEL_TYPE)
    except BaseException:
        writer.abort()
        raise
    config = boot_config(image.app_config(), init, kernel_info, list(modules or []), acpi)
    config["initramfs"] = {"sha256": cpio_digest, "size": cpio_size}
    config_desc = store.put_json(config, BOOT_CONFIG_TYPE)
    boot_desc = store.put_artifact(
        BOOT_TYPE, [kernel_desc, initramfs, config_desc], image.manifest_desc
    )
    others = [
        d
        for d in image.index["manifests"]
        if Descriptor.from_json(d, image.desc.digest).artifact_type != BOOT_TYPE
    ]
    index = {**image.index, "manifests": [*others, boot_desc.to_json()]}
    index_desc = store.put_json(index, INDEX)
    # The tag moves to the image with its boot artifact (the same image, more in its index),
    # if it still names this one: not an untagged image's ID, nor a tag moved on meanwhile.
    if (image.ref, image.desc.digest) in ((r, d.digest) for r, d in store.refs()):
        store.tag(image.ref, index_desc, keep_old=False)
    return Image(store, image.ref, Descriptor(INDEX, index_desc.digest, index_desc.size))


def ensure_boot_artifact(
    image: Image, step: Step = lambda s: None, progress: kernel_mod.ProgressFn | None = None
) -> tuple[Image, BootArtifact]:
    """The image's boot artifact, added first if the image has none."""
    found = boot_artifact(image)
    if found is None:
        image = add_boot_artifact(image, step, progress)
        found = boot_artifact(image)
        if found is None:  # pragma: no cover - add_boot_artifact just wrote it
            raise UserError(f"image {image.ref}: the boot artifact did not stick")
    return image, found


def _describe(p: kernel_mod.Progress) -> str:
    if p.total:
        return f"{p.phase} the kernel {min(99, 100 * p.done // p.total)}%"
    return p.phase


# --- cpio ------------------------------------------------------------------------------------


class CpioWriter:
    """Writes a cpio archive in the "newc" format the kernel's initramfs unpacker reads."""

    def __init__(self, out: IO[bytes] | gzip.GzipFile) -> None:
        self._out = out
        self._ino = 0

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        nlink = 2 if stat.S_ISDIR(mode) else 1
        self._header(name, mode, len(data), nlink, rdev)
        self._out.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, mode: int, size: int, stream: IO[bytes]) -> None:
        self._ino += 1
        self._header(name, mode, size, 1, (0, 0))
        left = size
        while left:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                raise CorruptBlob(f"{name}: the layer ended inside the file")
            self._out.write(chunk)
            left -= len(chunk)
        self._pad(size)

    def close(self) -> None:
        self._ino = 0
        self._header("TRAILER!!!", 0, 0, 1, (0, 0))

    def _header(self, name: str, mode: int, size: int, nlink: int, rdev: tuple[int, int]) -> None:
        encoded = name.encode() + b"\0"
        # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize
        # check: uid, gid and mtime 0 so the archive depends only on the content.
        fields = (self._ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._pad(110 + len(encoded))

    def _pad(self, n: int) -> None:
        self._out.write(b"\0" * (-n % 4))


Extra = tuple[str, int, bytes, tuple[int, int]]  # name, mode, content, (rdev major, minor)


def init_argv(argv: list[str]) -> tuple[list[str], list[Extra]]:
    """The image's argv as the kernel can pass it to init, and the symlinks that takes.

    Without `--` (QEMU's microvm appends its virtio_mmio.device= parameters to the end of the
    command line, where after `--` the kernel would hand them to init instead), the kernel
    gives init only the parameters that hold neither '=' nor '.'. So an argument such as
    /usr/lib/summon/boot.py becomes /usr/lib/summon/boot, a symlink to it in the initramfs
    (Python follows it for sys.path[0], so the script runs as before).
    """
    out = [argv[0]]
    links: list[Extra] = []
    for arg in argv[1:]:
        if "=" not in arg and "." not in arg:
            out.append(arg)
            continue
        folder, _, base = arg.rpartition("/")
        alias = base.split(".", 1)[0]
        if not arg.startswith("/") or "." in folder or "=" in arg or not alias:
            raise UserError(
                f"image argument {arg!r} cannot be passed on a kernel command line: "
                "init arguments may hold no '=' and a '.' only in a file's name"
            )
        links.append((f"{folder}/{alias}".lstrip("/"), stat.S_IFLNK | 0o777, base.encode(), (0, 0)))
        out.append(f"{folder}/{alias}")
    return out, links


class _Hashed:
    """A write-only stream hashing what passes to the one under it (the uncompressed cpio)."""

    def __init__(self, out: gzip.GzipFile) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)


def write_initramfs(
    store: Store, layer: Descriptor, out: IO[bytes], extra: list[Extra] | None = None
) -> tuple[str, int]:
    """The root filesystem layer as a gzip'd cpio archive, plus device nodes and `extra`;
    return the sha256 ("sha256:...") and size of the archive before compression."""
    with (
        store.open_verified(layer) as f,
        tarfile.open(fileobj=f, mode="r|gz") as tar,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz,
    ):
        hashed = _Hashed(gz)
        cpio = CpioWriter(hashed)  # type: ignore[arg-type]
        # Added in path order, each after its folder, as the layer's own entries are.
        nodes: list[Extra] = sorted(
            [(n, mode, b"", rdev) for n, mode, rdev in DEVICE_NODES] + list(extra or [])
        )
        for info in tar:
            name = layer_rules.member_name(layer.digest, info)  # refuses what breaks a rule
            if not name:
                continue
            while nodes and name > nodes[0][0]:
                node, mode, data, rdev = nodes.pop(0)
                cpio.add(node, mode, data, rdev)
            perm = info.mode & 0o7777
            if info.isdir():
                cpio.add(name, stat.S_IFDIR | perm)
            elif info.issym():
                cpio.add(name, stat.S_IFLNK | 0o777, info.linkname.encode())
            else:  # a regular file: member_name let nothing else through
                stream = tar.extractfile(info)
                assert stream is not None
                cpio.add_stream(name, stat.S_IFREG | perm, info.size, stream)
        for node, mode, data, rdev in nodes:
            cpio.add(node, mode, data, rdev)
        cpio.close()
    return "sha256:" + hashed.hash.hexdigest(), hashed.size


def read_cpio(data: bytes) -> list[tuple[str, int, bytes]]:
    """(name, mode, content) of each entry of an uncompressed newc archive (for tests, tools)."""
    entries: list[tuple[str, int, bytes]] = []
    pos = 0
    while True:
        if data[pos : pos + 6] != b"070701":
            raise ValueError(f"no cpio newc header at byte {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        content = data[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries.append((name, mode, content))


def initramfs_path_for(store: Store, desc: Descriptor) -> Path:
    """Where the store keeps a blob (QEMU reads the kernel and initramfs from there)."""
    return store.blob_path(desc.digest)
