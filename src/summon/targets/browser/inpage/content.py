"""The app's Content-Encoding undone in the tab, as a browser undoes it for a server's answer.

A Response the service worker makes is handed to the page as it is: the browser decodes a
body's gzip only when it comes from the network. An app that compresses its own answers
(a pre-gzipped file with `Content-Encoding: gzip`, a middleware that compresses without
asking) would give the page compressed bytes as its text, script or image. So the bridge
decodes gzip and deflate here and drops the fields that described the encoded body; a
coding the stdlib cannot decode (br, zstd) is a 502 naming it, never garbage on the page.

Runs inside Pyodide (zlib is built into its core) and under CPython in the unit tests.
"""

from __future__ import annotations

import zlib

from .http1 import MAX_BODY_BYTES, NO_BODY, BadResponse, Response

# wbits for zlib.decompressobj: gzip's header (16 + 15); deflate is RFC 9110's zlib stream,
# though some servers send raw deflate, which is tried when the zlib header is missing.
GZIP_WBITS = 16 + zlib.MAX_WBITS
DECODED = ("content-encoding", "content-length")


def decode(response: Response, head: bool = False) -> Response:
    """response with its body decoded from its Content-Encoding (gzip, deflate), in place.

    Left as it is: an answer to HEAD or without a body (nothing to decode), and a 206 (its
    bytes are a range of the encoded body, which cannot be decoded alone; a browser leaves
    it too). BadResponse for a coding other than gzip, deflate or identity, or a body that
    does not decode.
    """
    codings = [
        c.strip().lower()
        for name, value in response.headers
        if name.lower() == "content-encoding"
        for c in value.split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    if not codings or head or response.status in NO_BODY or response.status == 206:
        return response
    body = response.body
    for coding in reversed(codings):  # the last coding listed was applied last
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, GZIP_WBITS, coding)
        elif coding == "deflate":
            raw = body[:1] and (body[0] & 0x0F) != 8  # a zlib stream starts with CM = 8
            body = _inflate(body, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS, coding)
        else:
            raise BadResponse(
                f"the app's answer is encoded as {coding!r} (Content-Encoding), which the tab "
                "cannot decode (it decodes gzip and deflate)"
            )
    response.body = body
    response.headers = [(n, v) for n, v in response.headers if n.lower() not in DECODED]
    return response


def _inflate(data: bytes, wbits: int, coding: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error as e:
        raise BadResponse(f"the app's {coding} body does not decode: {e}") from None
    if len(out) > MAX_BODY_BYTES:
        raise BadResponse(f"the app's {coding} body decodes to over {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise BadResponse(f"the app's {coding} body ends before its end of stream")
    return out
