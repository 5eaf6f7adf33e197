"""The image's root filesystem as a reproducible tar.gz: sorted entries, fixed times and owners.

The same entries give the same bytes, so the same inputs give the same image digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from summon.errors import BuildError

# Size groups shown by `summon inspect`.
GROUPS = ("interpreter", "libraries", "stdlib", "site", "runtime", "app", "data", "config")


@dataclass(frozen=True)
class Node:
    """One entry of the root filesystem."""

    path: str  # absolute image path, e.g. /usr/bin/python3.11
    kind: str  # "file" | "dir" | "symlink"
    mode: int = 0o644
    group: str = "config"
    source: Path | None = None  # host file holding the content
    data: bytes | None = None  # or the content itself
    target: str = ""  # for symlinks

    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size


class Rootfs:
    """The entries of a root filesystem, keyed by image path; parents are implied."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def _put(self, node: Node) -> None:
        path = _norm(node.path)
        if not path.isascii():
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                # A name the host's file system holds but UTF-8 cannot (Python's surrogate
                # escapes): the layer took it, then the image's file list was an internal error.
                where = node.source or path
                raise BuildError(
                    f"{where}: the file name is not UTF-8; rename it (an image's names are)"
                ) from None
        old = self.nodes.get(path)
        if old is not None and old != node and not (old.kind == node.kind == "dir"):
            raise ValueError(f"two different entries for {path} in the image")
        for parent in list(PurePosixPath(path).parents)[:-1]:
            p = str(parent)
            if p not in self.nodes:
                self.nodes[p] = Node(p, "dir", 0o755)
        self.nodes[path] = Node(
            path, node.kind, node.mode, node.group, node.source, node.data, node.target
        )

    def add_file(self, path: str, source: Path, group: str, mode: int | None = None) -> None:
        if mode is None:
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
        self._put(Node(path, "file", mode, group, source=source))

    def add_bytes(self, path: str, data: bytes, group: str, mode: int = 0o644) -> None:
        self._put(Node(path, "file", mode, group, data=data))

    def replace_bytes(self, path: str, data: bytes) -> None:
        """New content for a file added with add_bytes (its mode and group kept)."""
        old = self.nodes[_norm(path)]
        if old.kind != "file" or old.data is None:
            raise ValueError(f"{path} is not a file made from bytes")
        self.nodes[old.path] = Node(old.path, "file", old.mode, old.group, data=data)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._put(Node(path, "dir", mode))

    def add_symlink(self, path: str, target: str, group: str = "config") -> None:
        self._put(Node(path, "symlink", 0o777, group, target=target))

    def sizes(self) -> dict[str, int]:
        """Uncompressed bytes per group."""
        out = dict.fromkeys(GROUPS, 0)
        for node in self.nodes.values():
            out[node.group] = out.get(node.group, 0) + node.size()
        return out

    def write(self, out: IO[bytes]) -> tuple[str, int]:
        """Write the tar.gz to out; return (diff_id, uncompressed size)."""
        hashing = _HashingSink()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
            hashing.sink = gz
            with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path in sorted(self.nodes):
                    node = self.nodes[path]
                    info = tarfile.TarInfo(path.lstrip("/"))
                    info.mtime = 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = node.mode
                    if node.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif node.kind == "symlink":
                        info.type = tarfile.SYMTYPE
                        info.linkname = node.target
                        tar.addfile(info)
                    else:
                        content = node.data if node.data is not None else None
                        if content is not None:
                            info.size = len(content)
                            tar.addfile(info, io.BytesIO(content))
                        else:
                            assert node.source is not None
                            with node.source.open("rb") as f:
                                info.size = node.source.stat().st_size
                                tar.addfile(info, f)
        return "sha256:" + hashing.hash.hexdigest(), hashing.size


class _HashingSink:
    """A write-only stream that hashes what passes through it to the real sink."""

    def __init__(self) -> None:
        self.sink: IO[bytes] | gzip.GzipFile | None = None
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        assert self.sink is not None
        self.hash.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _norm(path: str) -> str:
    p = PurePosixPath("/") / path
    if ".." in p.parts:
        raise ValueError(f"{path}: image paths may not contain '..'")
    return str(p)
