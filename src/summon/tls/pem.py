"""PEM (RFC 7468) blocks: "-----BEGIN LABEL-----", base64 lines, "-----END LABEL-----"."""

from __future__ import annotations

import binascii

from summon.tls.errors import TLSConfigError


def pem_blocks(text: bytes, what: str) -> list[tuple[str, bytes]]:
    """Every (label, DER) block in `text`, in order; text between blocks is ignored.

    `what` names the source in errors ("secret 'tls.crt'"); the bytes themselves never appear
    in a message, since they may be a private key.
    """
    blocks: list[tuple[str, bytes]] = []
    label: str | None = None
    body: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if label is None:
            if line.startswith(b"-----BEGIN ") and line.endswith(b"-----"):
                label = line[11:-5].decode("ascii", "replace")
                body = []
        elif line.startswith(b"-----END "):
            end = line[9:-5].decode("ascii", "replace")
            if end != label or not line.endswith(b"-----"):
                raise TLSConfigError(f"{what}: line {number}: END {end!r} closes BEGIN {label!r}")
            try:
                blocks.append((label, binascii.a2b_base64(b"".join(body))))
            except binascii.Error:
                raise TLSConfigError(f"{what}: block {label!r} is not valid base64") from None
            label = None
        elif b":" not in line:  # skip RFC 1421 headers (Proc-Type:...) inside a block
            body.append(line)
    if label is not None:
        raise TLSConfigError(f"{what}: BEGIN {label!r} has no END line")
    return blocks
