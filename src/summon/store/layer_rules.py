"""The one rule set every path that unpacks an image layer applies to the layer's members.

summon's own layers hold only regular files, folders and symbolic links that stay inside the
image (build/rootfs.py writes nothing else), so any other member means a foreign or tampered
layer. It is refused, in one line naming the member and the rule, wherever a layer is opened
up: into a folder (store/image.py, for the unix target and the erofs image of the verified
run path) or into a VM's initramfs (build/boot.py). The rules:

    special-file    character or block devices, fifos, sockets, any other tar type: made on
                    the host they would be devices of the host
    hard-link       a hard link names any path of the host that unpacks it; summon never
                    writes one, so none is taken, inside the layer or not
    absolute-name   a member named /etc/...: written at the host's root
    parent-name     a member name with a `..` part
    absolute-link   a symlink to /...: on the host it names the host's file
    escaping-link   a symlink whose target climbs above the image's root, lexically, or on
                    the host through links unpacked before it
    set-id          a file or folder with its set-user-ID or set-group-ID bit: summon's
                    builds write none (0755, 0644, /tmp's 1777), so one was put there by hand
                    (the bits were dropped quietly before: the layer was taken as it came)
"""

from __future__ import annotations

import errno
import tarfile
from pathlib import Path

from summon.errors import CorruptBlob
from summon.store.layout import Descriptor, Store

RULES = (
    "special-file",
    "hard-link",
    "absolute-name",
    "parent-name",
    "absolute-link",
    "escaping-link",
    "set-id",
)
_KINDS = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a fifo",
}


# The host's failures while writing (a full or read-only disk), not the layer's.
_HOST_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES))


class LayerRefused(CorruptBlob):
    """A layer member broke one of RULES; the message names the layer, member and rule."""

    def __init__(self, layer: str, member: str, rule: str, why: str) -> None:
        self.layer = layer
        self.member = member
        self.rule = rule
        short = layer.removeprefix("sha256:")[:12]
        super().__init__(
            f"layer {short}: member {member!r} refused (rule {rule}: {why}); summon images "
            "hold only files, folders and links inside the image: a foreign or tampered layer"
        )


def member_name(layer: str, info: tarfile.TarInfo) -> str:
    """The member's image path without `./` or a trailing `/` ("" for the root itself).

    Raises LayerRefused for a member that breaks a rule.
    """
    raw = info.name
    if raw.startswith("/"):
        raise LayerRefused(layer, raw, "absolute-name", "its name is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerRefused(layer, raw, "parent-name", "its name has a '..' part")
    if info.islnk():
        raise LayerRefused(layer, raw, "hard-link", f"a hard link to {info.linkname!r}")
    if not (info.isreg() or info.isdir() or info.issym()):
        kind = _KINDS.get(info.type, f"tar member type {info.type!r}")
        raise LayerRefused(layer, raw, "special-file", f"{kind}, not a file, folder or link")
    if info.issym():
        check_link(layer, raw, parts[:-1], info.linkname)
    elif info.mode & 0o6000:
        raise LayerRefused(
            layer, raw, "set-id", f"its mode {info.mode:04o} sets a user or group ID on exec"
        )
    return "/".join(parts)


def check_link(layer: str, member: str, folder: list[str], target: str) -> None:
    """Refuse a symlink target that is absolute or climbs above the root, read from folder."""
    if target.startswith("/"):
        raise LayerRefused(layer, member, "absolute-link", f"it points to {target!r}")
    depth = len(folder)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise LayerRefused(
                layer, member, "escaping-link", f"its target {target!r} leaves the image's root"
            )


def _refuse_filter_error(layer: str, error: tarfile.FilterError) -> LayerRefused:
    """tarfile's own checks (after ours) resolve links on disk; name their finding our way."""
    member = error.tarinfo.name
    if isinstance(error, tarfile.AbsoluteLinkError):
        return LayerRefused(layer, member, "absolute-link", "it points to an absolute path")
    if isinstance(error, tarfile.SpecialFileError):
        return LayerRefused(layer, member, "special-file", "not a file, folder or link")
    if isinstance(error, tarfile.AbsolutePathError):
        return LayerRefused(layer, member, "absolute-name", "its name is an absolute path")
    # OutsideDestinationError, LinkOutsideDestinationError: through a link unpacked before.
    return LayerRefused(
        layer, member, "escaping-link", "it resolves outside the image's root through a link"
    )


def extract(store: Store, layer: Descriptor, dest: Path) -> None:
    """Unpack the layer into dest (a new private folder), checking each member against the
    rules and the whole stream against the layer's digest.

    Modes keep their permission bits without set-id bits, and files without group/other
    write bits; every file belongs to whoever unpacks it; times are the layer's. Raises
    LayerRefused or CorruptBlob; dest then holds a partial tree the caller must remove.
    """
    digest = layer.digest

    def rules(info: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        name = member_name(digest, info)
        if not name:
            return None  # the root folder itself: dest is it
        try:
            # tarfile's "data" filter then resolves the member and its link target on disk,
            # which catches an escape through a symlink unpacked before.
            safe = tarfile.data_filter(info.replace(name=name, deep=False), path)
        except tarfile.FilterError as e:
            raise _refuse_filter_error(digest, e) from None
        # A folder keeps a sticky, world-writable mode (/tmp's 1777: runc gives the tmpfs it
        # mounts there the mode of the folder under it). tarfile does not chmod symlinks.
        mode = info.mode & (0o1777 if info.isdir() else 0o755)
        return safe.replace(mode=mode, deep=False)

    with store.open_verified(layer) as f:
        try:
            with tarfile.open(fileobj=f, mode="r|gz") as tar:
                tar.extractall(dest, filter=rules)
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, OSError) and e.errno in _HOST_ERRNOS:
                raise  # a full or read-only disk is the host's, not the layer's
            raise CorruptBlob(f"layer {digest} cannot be unpacked: {e}") from None
