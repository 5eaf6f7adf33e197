"""Git bundles: a store's whole history in one file, and back into an empty store.

    bundle    = SIGNATURE *CAPABILITY *PREREQUISITE *REF LF PACK
    SIGNATURE = "# v2 git bundle" LF / "# v3 git bundle" LF
    CAPABILITY= "@" KEY ["=" VALUE] LF                    (v3 only; object-format=sha1 read)
    PREREQUISITE = "-" HEX [SP COMMENT] LF               (refused: the store must be whole)
    REF       = HEX SP REFNAME LF

Written bundles are v2 with every branch and tag, and HEAD, and a self-contained pack:
`git bundle verify` accepts them and `git clone FILE` clones them. Importing reads v2 and
v3 (SHA-1) bundles that need no prerequisite, into a store with no refs; the pack is kept
as it is, with an idx made for it. Both hold the whole pack in memory.
"""

from __future__ import annotations

import os

from summon.kv.backend import Backend, FolderBackend
from summon.kv.errors import BundleError, CorruptStore
from summon.kv.gc import pack_reachable
from summon.kv.objects import COMMIT, parse_hex
from summon.kv.pack import Pack, PackIndex
from summon.kv.packwrite import index_pack
from summon.kv.refs import HEADS
from summon.kv.repo import Repository

V2 = b"# v2 git bundle\n"
V3 = b"# v3 git bundle\n"


def write_bundle(repo: Repository, path: str) -> None:
    """Write a v2 bundle of every ref of `repo` (flushed) to the host file `path`, atomically."""
    refs = sorted((n, o) for n, o in repo.refs.values.items() if n.startswith("refs/"))
    if not refs:
        raise BundleError(f"{repo.backend.describe()} has no commit yet: nothing to export")
    lines = [V2]
    lines += [oid.hex().encode() + b" " + name.encode() + b"\n" for name, oid in refs]
    head = repo.refs.head
    head_id = repo.refs.get(head) if head.startswith("refs/") else bytes.fromhex(head)
    if head_id is not None:
        lines.append(head_id.hex().encode() + b" HEAD\n")
    lines.append(b"\n")
    pack, _, _ = pack_reachable(repo).finish()
    temp = f"{path}.{os.getpid()}.tmp"  # never a file of the user's named PATH.tmp
    try:
        with open(temp, "xb") as f:
            f.writelines(lines)
            f.write(pack)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        except OSError:
            pass  # a file system that refuses a folder's fsync (as FolderBackend skips it)
        finally:
            os.close(folder)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def read_bundle(data: bytes, name: str) -> tuple[list[tuple[str, bytes]], bytes]:
    """([(ref name, id)], pack bytes) of a bundle's bytes."""
    if data.startswith(V2):
        pos = len(V2)
    elif data.startswith(V3):
        pos = len(V3)
    else:
        raise BundleError(f"{name} is not a Git bundle (v2 or v3): it starts {data[:20]!r}")
    refs: list[tuple[str, bytes]] = []
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise BundleError(f"{name}: the header does not end (no empty line)")
        line = data[pos:end]
        pos = end + 1
        if not line:
            break
        if line.startswith(b"@"):
            if line != b"@object-format=sha1":
                shown = line.decode(errors="replace")
                raise BundleError(f"{name}: bundle capability {shown!r} is not read")
        elif line.startswith(b"-"):
            raise BundleError(
                f"{name} needs commits it does not hold ({line[1:41].decode(errors='replace')}): "
                "only whole bundles are imported (git bundle create FILE --all)"
            )
        else:
            hexid, _, ref = line.partition(b" ")
            try:
                refs.append((ref.decode("utf-8"), parse_hex(hexid)))
            except (ValueError, UnicodeDecodeError):
                raise BundleError(f"{name}: bad ref line {line[:80]!r}") from None
    return refs, data[pos:]


def import_bundle(source: str, target: str | Backend) -> None:
    """Import the bundle file `source` into the store at `target` (a folder, or a backend),
    which must hold no ref yet (an empty folder makes a new store)."""
    with open(source, "rb") as f:
        data = f.read()
    refs, pack = read_bundle(data, source)
    try:
        idx, objects = index_pack(pack, source)
    except CorruptStore as e:
        raise BundleError(str(e)) from None  # it names source already
    for ref, oid in refs:
        if oid not in objects:
            raise BundleError(f"{source}: {ref} names {oid.hex()}, which its pack lacks")
    branches = [(r, o) for r, o in refs if r.startswith(HEADS) and objects[o][0] == COMMIT]
    if not branches:
        raise BundleError(f"{source} has no branch to import")
    backend = FolderBackend(target) if isinstance(target, str) else target
    backend.lock()
    try:
        repo = Repository(backend)
        if repo.open() or repo.refs.values:
            raise BundleError(f"{backend.describe()} is not an empty store: import into a new one")
        stem = f"objects/pack/pack-{pack[-20:].hex()}"
        backend.write_atomic(stem + ".pack", pack)
        backend.write_atomic(stem + ".idx", idx)
        repo.odb.packs.append(Pack(backend, stem + ".pack", PackIndex(idx, stem + ".idx")))
        for ref, oid in refs:
            if ref.startswith("refs/"):
                repo.refs.set(ref, oid)
        head = dict(refs).get("HEAD")
        named = [r for r, o in branches if o == head] or [r for r, _ in branches]
        preferred = [r for r in named if r in (HEADS + "main", HEADS + "master")]
        repo.refs.set_head((preferred or named)[0])
        repo.refs.write()
    finally:
        backend.close()
