"""Git's object format: ids, loose-object encoding, trees, commits and identities.

An object is a kind (blob, tree, commit, tag) and a body; its id is the SHA-1 of
"KIND SIZE\\0" + body (Git's default object format; SHA-256 repositories are refused
elsewhere). Ids are 20 raw bytes inside summon.kv and 40 hexadecimal digits at its surface.

    loose object = zlib("KIND SIZE\\0" body)
    tree         = *( MODE SP NAME NUL OID20 )       sorted by NAME, a tree's NAME + "/"
    commit       = "tree" SP HEX LF *("parent" SP HEX LF) "author" SP IDENT LF
                   "committer" SP IDENT LF *(other header) LF message
    IDENT        = NAME SP "<" EMAIL ">" SP SECONDS SP ("+" / "-") HHMM

Parsers check integrity first (lengths, ids) and raise CorruptStore naming what broke.
"""

from __future__ import annotations

import zlib
from hashlib import sha1

from summon.kv.errors import CorruptStore

BLOB = b"blob"
TREE = b"tree"
COMMIT = b"commit"
TAG = b"tag"
KINDS = (COMMIT, TREE, BLOB, TAG)  # in the order of their pack type numbers 1..4

MODE_TREE = b"40000"
MODE_FILE = b"100644"
MODE_EXEC = b"100755"
MODE_LINK = b"120000"
MODE_GITLINK = b"160000"
VALUE_MODES = (MODE_FILE, MODE_EXEC)  # the entries that are keys; links and submodules are not
MODES = (MODE_TREE, MODE_FILE, MODE_EXEC, MODE_LINK, MODE_GITLINK)

ZERO_ID = b"\0" * 20

# The most bytes one object may inflate to. Git objects come from the app (its volume) or a
# bundle, so a size header or zlib stream is untrusted: a few KB of zlib make gigabytes. No
# reader makes more than an object's declared size, and no declared size passes this.
MAX_OBJECT = 1 << 30
SMALL_LOOSE = 1024  # a loose file this small inflates at once (to at most ~1 MiB)

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # name -> (mode, id): a parsed tree. Shared through caches, so never changed in place.
    Entries = dict[bytes, tuple[bytes, bytes]]
    # name -> the entry's bytes in the tree object, in Git's order: a new version of a wide
    # tree is joined from these (C speed) instead of re-encoding every entry.
    RawEntries = dict[bytes, bytes]


def object_id(kind: bytes, body: bytes) -> bytes:
    """The id of the object of `kind` with `body`: SHA-1 of its header and body."""
    h = sha1(kind + b" %d\0" % len(body))
    h.update(body)
    return h.digest()


EMPTY_TREE = object_id(TREE, b"")


def hex_id(oid: bytes) -> str:
    return oid.hex()


def parse_hex(text: str | bytes, what: str = "object id") -> bytes:
    """The 20-byte id written as 40 hexadecimal digits in `text`; ValueError otherwise."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if len(text) != 40:
        raise ValueError(f"{what} {text!r} is not 40 hexadecimal digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not 40 hexadecimal digits") from None


# --- loose objects ----------------------------------------------------------------------------


def deflate(data: bytes, level: int) -> bytes:
    """`data` as a zlib stream: compressed at `level` (1-9), or stored (level 0).

    Stored is built here, not by zlib: zlib spends ~25 us setting up its state for every
    stream whatever its size, ~30 times the cost of storing a small object, which is what
    a store's batches hold (gc compresses them later)."""
    if level:
        return zlib.compress(data, level)
    out = [b"\x78\x01"]  # zlib header: deflate, 32 KiB window, no dictionary, fastest
    for start in range(0, max(len(data), 1), 0xFFFF):
        chunk = data[start : start + 0xFFFF]
        last = start + 0xFFFF >= len(data)
        n = len(chunk)
        out.append(bytes((1 if last else 0, n & 0xFF, n >> 8, ~n & 0xFF, (~n >> 8) & 0xFF)))
        out.append(chunk)
    out.append(zlib.adler32(data).to_bytes(4, "big"))
    return b"".join(out)


def encode_loose(kind: bytes, body: bytes, level: int = 1) -> bytes:
    """The bytes of a loose object file (Git's core.looseCompression is 1 by default)."""
    return deflate(kind + b" %d\0" % len(body) + body, level)


def inflate_exact(read: Callable[[int], bytes], size: int) -> tuple[bytes, int]:
    """(data, compressed bytes used) of the zlib stream `read(n)` gives in pieces, which must
    inflate to exactly `size` bytes (at most MAX_OBJECT). Rule: an object inflates to its
    declared size: never more than `size` + 1 bytes are made, whatever the stream holds.
    ValueError says what is wrong; zlib.error a stream that is not zlib."""
    if size > MAX_OBJECT:
        raise ValueError(f"says {size} bytes, over the {MAX_OBJECT} an object may have")
    d = zlib.decompressobj()
    out = []
    got = used = 0
    want = size + 64
    while not d.eof:
        raw = d.unconsumed_tail
        if not raw:
            raw = read(want)
            if not raw:
                break
            used += len(raw)
            want = 65536
        piece = d.decompress(raw, size + 1 - got)  # never 0 (unbounded): got <= size here
        got += len(piece)
        out.append(piece)
        if got > size:
            raise ValueError(f"inflates past the {size} bytes its header says")
    if not d.eof:
        raise ValueError(f"its zlib stream is cut short ({got} of {size} bytes)")
    if got != size:
        raise ValueError(f"inflates to {got} bytes, its header says {size}")
    return b"".join(out), used - len(d.unused_data)


def decode_loose(raw: bytes, oid: bytes) -> tuple[bytes, bytes]:
    """(kind, body) of the loose object file `raw`, checked against its id `oid`.

    Inflated in steps: the header first, then at most the size it declares (a lying header or
    a zlib bomb is refused before it makes more than that). A file of at most SMALL_LOOSE
    bytes is inflated at once (deflate makes at most ~1,032 bytes of each: 1 MiB at most),
    which saves a small object a third of its time."""
    d = zlib.decompressobj()
    try:
        if len(raw) <= SMALL_LOOSE:
            head = zlib.decompress(raw)
        else:
            head = d.decompress(raw, 64)
        nul = head.find(b"\0")
        kind, _, size = head[: max(nul, 0)].partition(b" ")
        if nul < 0 or kind not in KINDS or not size.isdigit() or len(size) > 12:
            raise CorruptStore(f"loose object {oid.hex()}: bad header {head[:32]!r}")
        declared = int(size)
        if declared > MAX_OBJECT:
            raise CorruptStore(
                f"loose object {oid.hex()}: says {declared} bytes, over the {MAX_OBJECT} "
                "an object may have"
            )
        body = head[nul + 1 :]
        whole = len(raw) <= SMALL_LOOSE  # zlib.decompress checked the stream's end
        if not whole and len(body) <= declared and not d.eof:
            body += d.decompress(d.unconsumed_tail, declared + 1 - len(body))
    except zlib.error as e:
        raise CorruptStore(f"loose object {oid.hex()}: not zlib data ({e})") from None
    if len(body) > declared:
        raise CorruptStore(
            f"loose object {oid.hex()}: inflates past the {declared} bytes its header says"
        )
    if not (whole or d.eof) or len(body) != declared:
        raise CorruptStore(f"loose object {oid.hex()}: cut short ({len(body)} of {declared})")
    if object_id(kind, body) != oid:
        raise CorruptStore(f"loose object {oid.hex()}: its content hashes to another id")
    return kind, body


# --- trees ------------------------------------------------------------------------------------


def parse_tree(body: bytes, oid: bytes = ZERO_ID, raw: RawEntries | None = None) -> Entries:
    """The entries of a tree object's body; each entry's bytes go to `raw` if given."""
    entries: Entries = {}
    pos = 0
    end = len(body)
    while pos < end:
        space = body.find(b" ", pos)
        nul = body.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 21 > end:
            raise CorruptStore(f"tree {oid.hex()}: entry at byte {pos} is cut short")
        mode = body[pos:space]
        if mode not in MODES:
            # Old Git wrote "040000" and group-writable modes; fsck warns, we read them.
            mode = _normal_mode(mode, oid)
        name = body[space + 1 : nul]
        if not name or b"/" in name:
            raise CorruptStore(f"tree {oid.hex()}: bad entry name {name!r}")
        entries[name] = (mode, body[nul + 1 : nul + 21])
        if raw is not None:
            raw[name] = body[pos : nul + 21]
        pos = nul + 21
    return entries


def _normal_mode(mode: bytes, oid: bytes) -> bytes:
    try:
        value = int(mode, 8)
    except ValueError:
        raise CorruptStore(f"tree {oid.hex()}: bad mode {mode!r}") from None
    kind = value & 0o170000
    if kind == 0o040000:
        return MODE_TREE
    if kind == 0o100000:
        return MODE_EXEC if value & 0o111 else MODE_FILE
    if kind == 0o120000:
        return MODE_LINK
    if kind == 0o160000:
        return MODE_GITLINK
    raise CorruptStore(f"tree {oid.hex()}: bad mode {mode!r}")


def _sort_key(item: tuple[bytes, tuple[bytes, bytes]]) -> bytes:
    # Git compares a tree's name as if it ended with '/', so "a.b" sorts before folder "a".
    name, (mode, _) = item
    return name + b"/" if mode == MODE_TREE else name


def sort_entries(entries: Entries) -> Entries:
    """`entries` in Git's order (a dict keeps the order it is built in)."""
    return dict(sorted(entries.items(), key=_sort_key))


def raw_entry(name: bytes, mode: bytes, oid: bytes) -> bytes:
    return mode + b" " + name + b"\0" + oid


def raw_entries(entries: Entries) -> RawEntries:
    """The bytes of each entry (in the order of `entries`)."""
    return {name: mode + b" " + name + b"\0" + oid for name, (mode, oid) in entries.items()}


# --- identities -------------------------------------------------------------------------------


def check_author(author: str) -> str:
    """Return `author` ("Name <email>", or "Name" meaning "Name <>") in the full form.

    ValueError if Git would not accept it: an empty name, or '<', '>' or a line break in the
    name or email.
    """
    if not isinstance(author, str):
        raise ValueError(f"author {author!r} is not a string such as 'Ada <ada@example.org>'")
    name, lt, rest = author.partition("<")
    email, gt, tail = rest.partition(">")
    name = name.strip()
    ok = bool(name) and not tail.strip() and (bool(gt) or not lt)
    ok = ok and not any(c in name + email for c in "<>\n\r\0")
    if not ok:
        raise ValueError(
            f"author {author!r} is not 'Name <email>': a non-empty name, an optional email "
            "in angle brackets, no line breaks"
        )
    return f"{name} <{email.strip()}>"


def make_ident(author: str, seconds: int) -> bytes:
    """The Git identity line of `author` (already checked) at `seconds`, in UTC."""
    return author.encode("utf-8") + b" %d +0000" % seconds


def parse_ident(ident: bytes) -> tuple[str, int]:
    """("Name <email>", seconds) of a Git identity line; seconds is 0 if unreadable."""
    gt = ident.rfind(b">")
    who = ident[: gt + 1].decode("utf-8", "replace")
    when = ident[gt + 1 :].split()
    seconds = int(when[0]) if when and when[0].isdigit() else 0
    return who, seconds


# --- commits ----------------------------------------------------------------------------------


class CommitObject:
    """A parsed commit: its tree, parents, author and committer lines, and message."""

    __slots__ = ("author", "committer", "message", "parents", "tree")

    def __init__(
        self, tree: bytes, parents: list[bytes], author: bytes, committer: bytes, message: bytes
    ) -> None:
        self.tree = tree
        self.parents = parents
        self.author = author
        self.committer = committer
        self.message = message

    @property
    def time(self) -> int:
        """The committer time: what Git orders its log by."""
        return parse_ident(self.committer)[1]


def serialize_commit(
    tree: bytes, parents: list[bytes], author: bytes, committer: bytes, message: bytes
) -> bytes:
    """The body of a commit object. `message` should end with a newline, as Git's do."""
    return tree_line(tree) + commit_tail(parents, author, committer, message)


def tree_line(tree: bytes) -> bytes:
    """A commit body's first line, naming its tree."""
    return b"tree " + tree.hex().encode() + b"\n"


def commit_tail(parents: list[bytes], author: bytes, committer: bytes, message: bytes) -> bytes:
    """A commit body after its tree line: what a commit is without its tree."""
    lines = [b"parent " + p.hex().encode() for p in parents]
    lines += [b"author " + author, b"committer " + committer]
    return b"\n".join(lines) + b"\n\n" + message


def parse_commit(body: bytes, oid: bytes = ZERO_ID) -> CommitObject:
    """The commit object of `body`; other headers (gpgsig, encoding...) are skipped."""
    head, sep, message = body.partition(b"\n\n")
    if not sep:
        head, message = body.rstrip(b"\n"), b""
    tree = None
    parents: list[bytes] = []
    author = committer = b""
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        try:
            if key == b"tree" and tree is None:
                tree = parse_hex(value)
            elif key == b"parent":
                parents.append(parse_hex(value))
        except ValueError:
            raise CorruptStore(f"commit {oid.hex()}: bad {key.decode()} line {line!r}") from None
        if key == b"author" and not author:
            author = value
        elif key == b"committer" and not committer:
            committer = value
    if tree is None:
        raise CorruptStore(f"commit {oid.hex()}: no tree line")
    return CommitObject(tree, parents, author, committer or author, message)


def parse_tag_target(body: bytes, oid: bytes = ZERO_ID) -> bytes:
    """The id an annotated tag object points at."""
    first = body.partition(b"\n")[0]
    key, _, value = first.partition(b" ")
    try:
        if key != b"object":
            raise ValueError
        return parse_hex(value)
    except ValueError:
        raise CorruptStore(f"tag {oid.hex()}: no object line") from None
