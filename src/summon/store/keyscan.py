"""Finding private keys in an image's root filesystem before it leaves the machine.

Secrets are given at run time (--secret), never built in; a key that slipped into the app
folder would ship to every registry the image is pushed to. `summon push` scans the layer it
is about to send and refuses (unless --force) when a file holds a private key: a PEM block
(PKCS#1, PKCS#8, EC, DSA, OpenSSH, encrypted or not) or a DER PKCS#8 / PKCS#1 key structure.
`summon inspect` shows the same scan.

What is scanned is what the app's author put in: the app's files and its baked-in data (/app,
/data), and anything else outside /usr. The interpreter, the stdlib and the packages vendored
from PyPI (under /usr) are public already, and their documentation and test suites hold
sample keys that are no one's secret.
"""

from __future__ import annotations

import re
import tarfile
from typing import IO, TYPE_CHECKING, Protocol, cast

from summon.errors import CorruptBlob

if TYPE_CHECKING:
    from summon.store.layout import Descriptor, Store

_PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# DER: SEQUENCE { INTEGER 0 (version), ... }, as PKCS#8 PrivateKeyInfo (version, then the
# AlgorithmIdentifier SEQUENCE) or PKCS#1 RSAPrivateKey (version, then the modulus INTEGER).
_DER_PKCS8 = re.compile(rb"^\x30(?:\x81.|\x82..)\x02\x01[\x00\x01]\x30", re.DOTALL)
_DER_PKCS1 = re.compile(rb"^\x30(?:\x81.|\x82..)\x02\x01\x00\x02(?:\x81|\x82)", re.DOTALL)
_KEY_SUFFIXES = (".key", ".der", ".pk8", ".pem", ".p8")
_PUBLIC = ("usr/",)  # the interpreter, the stdlib, summon's runtime, vendored packages
MAX_SCANNED = 64 << 20  # a file larger than this is data, not a key: its head is scanned


def looks_like_key(name: str, head: bytes) -> str:
    """Why this file looks like a private key ("" if it does not)."""
    if _PEM.search(head):
        return "a PEM private key block"
    if name.lower().endswith(_KEY_SUFFIXES) and (_DER_PKCS8.match(head) or _DER_PKCS1.match(head)):
        return "a DER private key"
    return ""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def scan_layer(stream: Readable) -> list[tuple[str, str]]:
    """(path, why) for every file in a tar.gz layer that holds a private key."""
    found: list[tuple[str, str]] = []
    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|gz") as tar:
            for member in tar:
                if not member.isfile() or member.name.lstrip("./").startswith(_PUBLIC):
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                data = f.read(min(member.size, MAX_SCANNED))
                why = looks_like_key(member.name, data)
                if why:
                    found.append(("/" + member.name.lstrip("./"), why))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorruptBlob(f"the layer cannot be read to look for keys: {e}") from None
    return found


def scan_stored(store: Store, layer: Descriptor) -> list[tuple[str, str]]:
    """scan_layer of a layer blob in store, read once and checked against its digest. A
    damaged blob is said as one (`blob ... is corrupt`): gzip's complaint, "invalid compressed
    data", named no blob and no image."""
    try:
        with store.open_verified(layer) as stream:
            return scan_layer(stream)
    except CorruptBlob:
        store.verify(layer)  # raises, naming the blob, if its content is not its digest
        raise
