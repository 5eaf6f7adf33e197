"""Git references: branch names, loose refs, packed-refs and HEAD, read and written.

    loose ref    = HEX LF                          (a file below refs/, named by the ref)
    HEAD         = "ref: " REFNAME LF / HEX LF     (symbolic, or a detached commit)
    packed-refs  = ["# pack-refs with:" *(SP TRAIT) LF] *(HEX SP REFNAME LF ["^" HEX LF])

A loose ref wins over a packed one of the same name. Changes are kept in memory (the
journal has them durably) and written by write(): each changed ref as a loose file (Git's
".lock" temporary name, fsync, rename), deleted refs also out of packed-refs.
"""

from __future__ import annotations

from summon.kv.errors import CorruptStore, UnsupportedRepository
from summon.kv.objects import parse_hex

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from summon.kv.backend import Backend

    # (changed ref -> id or None for deleted, HEAD's target if it changed)
    Snapshot = tuple[dict[str, bytes | None], str | None]

HEADS = "refs/heads/"
PACKED = "packed-refs"
PACKED_HEADER = b"# pack-refs with: peeled fully-peeled sorted \n"
_FORBIDDEN = set(" ~^:?*[\\\x7f") | {chr(c) for c in range(32)}


def check_branch(name: str) -> str:
    """Return `name` if Git accepts it as a branch name (git check-ref-format), else raise
    ValueError saying which rule it breaks."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"branch name {name!r} is empty")

    def bad(why: str) -> ValueError:
        return ValueError(f"branch name {name!r} is not valid in Git: {why}")

    if name in ("HEAD", "@") or name.startswith("-"):
        raise bad("HEAD, @ and names starting with '-' are reserved")
    if bad_chars := sorted(set(name) & _FORBIDDEN):
        raise bad(f"it holds {''.join(bad_chars)!r} (no spaces, controls or ~^:?*[\\)")
    if ".." in name or "@{" in name:
        raise bad("it holds '..' or '@{'")
    if name.endswith("."):
        raise bad("it ends with '.'")
    for part in name.split("/"):
        if not part:
            raise bad("it has an empty component (a leading, trailing or double '/')")
        if part.startswith(".") or part.endswith(".lock"):
            raise bad("a component starts with '.' or ends with '.lock'")
    return name


_REFS_CHECKED: set[str] = set()  # ref names check_ref passed: a commit sets its branch's


def check_ref(name: str) -> str:
    """Return `name` if it is a Git ref name below refs/ (git check-ref-format), else raise
    CorruptStore. Each ref becomes a file named after it: a name from the store's own files
    (a journal record) or a bundle, such as refs/heads/../../../etc/x, would have the host
    write or remove a file outside the store when it opens it (summon volume export)."""
    if name in _REFS_CHECKED:
        return name
    try:
        if not isinstance(name, str) or not name.startswith("refs/"):
            raise ValueError("it is not below refs/")
        check_branch(name[5:])
        if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in name.split("/")):
            raise ValueError("a component is longer than 255 bytes")
    except ValueError as e:
        why = str(e).split(": ", 1)[-1]
        raise CorruptStore(f"the ref {name[:100]!r} is not a Git ref name: {why}") from None
    if len(_REFS_CHECKED) > 4096:
        _REFS_CHECKED.clear()
    _REFS_CHECKED.add(name)
    return name


class Refs:
    """Every ref of a repository, and HEAD, with changes not yet written."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.values: dict[str, bytes] = {}  # ref name -> id, loose over packed
        self._packed: dict[str, bytes] = {}
        self._peeled: dict[str, bytes] = {}
        self.head = HEADS + "main"  # a ref name (symbolic HEAD), or 40 hex digits (detached)
        self._dirty: set[str] = set()  # changed refs; "HEAD" for HEAD itself

    def load(self) -> None:
        """Read HEAD, packed-refs and every loose ref."""
        try:
            head = self._backend.read("HEAD").strip()
        except FileNotFoundError:
            raise CorruptStore(f"{self._backend.describe()}: no HEAD file") from None
        if head.startswith(b"ref: "):
            self.head = check_ref(head[5:].decode("utf-8", "replace").strip())
        else:
            try:
                self.head = parse_hex(head, "HEAD").hex()
            except ValueError:
                raise CorruptStore(f"HEAD holds {head[:60]!r}, not a ref or an id") from None
        self._read_packed()
        self.values = dict(self._packed)
        self._walk("refs")

    def _read_packed(self) -> None:
        try:
            data = self._backend.read(PACKED)
        except FileNotFoundError:
            return
        last = ""
        for n, line in enumerate(data.split(b"\n"), 1):
            if not line or line.startswith(b"#"):
                continue
            try:
                if line.startswith(b"^"):
                    self._peeled[last] = parse_hex(line[1:])
                    continue
                hexid, _, name = line.partition(b" ")
                last = check_ref(name.decode("utf-8"))
                self._packed[last] = parse_hex(hexid)
            except ValueError:  # UnicodeDecodeError too: a ref name that is not UTF-8
                raise CorruptStore(f"packed-refs line {n} is {line[:80]!r}") from None
            except CorruptStore as e:
                raise CorruptStore(f"packed-refs line {n}: {e}") from None

    def _walk(self, folder: str) -> None:
        for name, is_dir in self._backend.listdir(folder):
            path = f"{folder}/{name}"
            if is_dir:
                self._walk(path)
            elif not name.endswith(".lock"):
                content = self._backend.read(path).strip()
                if content.startswith(b"ref: "):
                    continue  # symbolic refs (refs/remotes/origin/HEAD) name no commit
                try:
                    self.values[check_ref(path)] = parse_hex(content, path)
                except ValueError:
                    raise CorruptStore(f"{path} holds {content[:60]!r}, not an id") from None

    def get(self, name: str) -> bytes | None:
        return self.values.get(name)

    def set(self, name: str, oid: bytes | None) -> None:
        """Point `name` at `oid`, or delete it (None); written by write()."""
        check_ref(name)
        if oid is None:
            self.values.pop(name, None)
        else:
            self.values[name] = oid
        self._dirty.add(name)

    def set_head(self, target: str) -> None:
        if len(target) != 40 or "/" in target:
            check_ref(target)  # a journal's record is the app's: HEAD is written from it
        self.head = target
        self._dirty.add("HEAD")

    def branches(self) -> list[str]:
        return sorted(n[len(HEADS) :] for n in self.values if n.startswith(HEADS))

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def write(self) -> None:
        """Write every changed ref durably: loose files, and packed-refs if one left it."""
        self.write_snapshot(self.snapshot())

    def snapshot(self) -> Snapshot:
        """The changed refs' values and HEAD, to write now or in the background; they no
        longer count as changed (give_back them if writing fails)."""
        changed = {name: self.values.get(name) for name in self._dirty if name != "HEAD"}
        head = self.head if "HEAD" in self._dirty else None
        self._dirty = set()
        return changed, head

    def give_back(self, snapshot: Snapshot) -> None:
        changed, head = snapshot
        self._dirty |= set(changed)
        if head is not None:
            self._dirty.add("HEAD")

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Write a snapshot's refs durably (runs in a background flush's thread)."""
        changed, head = snapshot
        gone = []
        for name in sorted(changed):
            oid = changed[name]
            if oid is None:
                self._backend.remove(name)
                if name in self._packed:
                    gone.append(name)
            else:
                self._backend.write_atomic(name, oid.hex().encode() + b"\n")
        if gone:
            for name in gone:
                self._packed.pop(name, None)
                self._peeled.pop(name, None)
            self._write_packed()
        if head is not None:
            text = head if len(head) == 40 and "/" not in head else "ref: " + head
            self._backend.write_atomic("HEAD", text.encode() + b"\n")

    @property
    def packed(self) -> dict[str, bytes]:
        return self._packed

    @property
    def peeled(self) -> dict[str, bytes]:
        return self._peeled

    def adopt_packed(self, packed: dict[str, bytes], peeled: dict[str, bytes]) -> None:
        """Take what a gc (with its own Refs) wrote to packed-refs."""
        self._packed = packed
        self._peeled = peeled

    def pack(self, peel: Callable[[bytes], bytes | None]) -> None:
        """Move every ref into packed-refs and remove the loose files (git pack-refs --all).

        `peel` gives the commit an annotated tag points at (None for other objects)."""
        self.write()
        self._packed = dict(self.values)
        self._peeled = {}
        for name, oid in self._packed.items():
            target = peel(oid)
            if target is not None:
                self._peeled[name] = target
        self._write_packed()
        self._remove_loose("refs")

    def _write_packed(self) -> None:
        lines = [PACKED_HEADER]
        for name in sorted(self._packed):
            lines.append(self._packed[name].hex().encode() + b" " + name.encode() + b"\n")
            if name in self._peeled:
                lines.append(b"^" + self._peeled[name].hex().encode() + b"\n")
        self._backend.write_atomic(PACKED, b"".join(lines))

    def _remove_loose(self, folder: str) -> None:
        for name, is_dir in self._backend.listdir(folder):
            path = f"{folder}/{name}"
            if is_dir:
                self._remove_loose(path)
            elif path in self._packed and not name.endswith(".lock"):
                self._backend.remove(path)


def check_config(config: bytes, where: str) -> None:
    """Refuse repositories whose config asks for what summon.kv does not read.

    Git's rule: format version 0 has no extensions; version 1 may list extensions, and a
    reader must know each one. summon.kv knows objectformat=sha1 and the extensions that do
    not change the files it reads (noop, preciousObjects, worktreeConfig, partialClone is
    refused: it means objects are missing).
    """
    section = ""
    version = 0
    extensions: dict[str, str] = {}
    for raw in config.decode("utf-8", "replace").splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if section == "core" and key == "repositoryformatversion":
            version = int(value) if value.isdigit() else -1
        elif section == "extensions" and key:
            extensions[key] = value
    if version not in (0, 1):
        raise UnsupportedRepository(f"{where}: repository format version {version} is not read")
    if version == 0:
        return
    known = {"noop", "preciousobjects", "worktreeconfig"}
    for key, value in extensions.items():
        if key == "objectformat" and value == "sha1":
            continue
        if key not in known:
            raise UnsupportedRepository(
                f"{where}: the repository uses extensions.{key} = {value}, which summon.kv "
                "does not read (SHA-256 object ids, reftable, partial clones are not supported)"
            )
