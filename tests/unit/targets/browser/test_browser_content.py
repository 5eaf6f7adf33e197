"""An app's own Content-Encoding is undone by the bridge, as a browser undoes a server's.

Seen in headless Chromium: a WSGI app answering with `Content-Encoding: gzip` gave the page's
fetch() the compressed bytes as its text (a Response made by a service worker is not decoded
by the browser). Now the page gets the text, or a 502 naming a coding the tab cannot decode.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path

import pytest
from test_browser_bridge import image_root

from summon.targets.browser.inpage import content
from summon.targets.browser.inpage.boot import BrowserApp
from summon.targets.browser.inpage.http1 import BadResponse, Response

TEXT = "héllo, compressed world\n".encode() * 200

ENCODING_APP = """
import gzip, zlib

TEXT = "héllo, compressed world\\n".encode() * 200
BODIES = {
    "/gzip": ("gzip", gzip.compress(TEXT)),
    "/deflate": ("deflate", zlib.compress(TEXT)),
    "/br": ("br", b"\\x0b\\x00\\x80hello\\x03"),
    "/plain": ("identity", TEXT),
}


def app(environ, start_response):
    coding, body = BODIES[environ["PATH_INFO"]]
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Encoding", coding),
        ("Content-Length", str(len(body))),
        ("Vary", "Accept-Encoding"),
    ])
    return [body]
"""


def response(coding: str, body: bytes, status: int = 200) -> Response:
    headers = [("Content-Encoding", coding), ("Content-Length", str(len(body))), ("ETag", '"1"')]
    return Response(status, "OK", headers, body)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", zlib.compress(TEXT, wbits=-15)),  # raw deflate, as some servers send
        ("GZIP", gzip.compress(TEXT)),
        ("gzip, identity", gzip.compress(TEXT)),
    ],
)
def test_gzip_and_deflate_bodies_reach_the_page_decoded(coding: str, body: bytes) -> None:
    got = content.decode(response(coding, body))
    assert got.body == TEXT
    # The fields that described the encoded body are gone; the others stay.
    assert got.headers == [("ETag", '"1"')]


def test_two_codings_are_undone_last_first() -> None:
    body = gzip.compress(zlib.compress(TEXT))
    assert content.decode(response("deflate, gzip", body)).body == TEXT


@pytest.mark.parametrize(
    ("status", "head"), [(200, True), (204, False), (304, False), (206, False)]
)
def test_nothing_to_decode_is_left_as_it_is(status: int, head: bool) -> None:
    body = b"" if head or status != 206 else gzip.compress(TEXT)[:10]
    got = content.decode(response("gzip", body, status), head=head)
    assert got.body == body and got.header("content-encoding") == "gzip"


@pytest.mark.parametrize(
    ("coding", "body", "why"),
    [
        ("br", b"\x0b\x00\x80hello\x03", "encoded as 'br'"),
        ("gzip", b"not gzip at all", "does not decode"),
        ("gzip", gzip.compress(TEXT)[:-12], "ends before its end of stream"),
    ],
)
def test_a_body_the_tab_cannot_decode_is_refused_naming_why(
    coding: str, body: bytes, why: str
) -> None:
    with pytest.raises(BadResponse, match=why):
        content.decode(response(coding, body))


def test_a_compression_bomb_stops_at_the_body_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content, "MAX_BODY_BYTES", 1 << 20)
    bomb = gzip.compress(b"\0" * (4 << 20))
    with pytest.raises(BadResponse, match="decodes to over 1048576 bytes"):
        content.decode(response("gzip", bomb))


def test_an_app_compressing_its_own_answers_through_the_bridge(tmp_path: Path) -> None:
    entry = {"kind": "wsgi", "module": "encoding_app", "attr": "app"}
    root = image_root(tmp_path, "encoding_app", ENCODING_APP, entry=entry, ports=["8000/tcp"])

    async def main() -> dict[str, Response]:
        app = BrowserApp(str(root))
        await app.start()
        paths = ("/gzip", "/deflate", "/br", "/plain")
        return {p: await app.exchange("GET", p, [], b"", "127.0.0.1:8080") for p in paths}

    got = asyncio.run(main())
    for path in ("/gzip", "/deflate", "/plain"):
        assert (got[path].status, got[path].body) == (200, TEXT)
        assert got[path].header("content-encoding") in (None, "identity")
        assert got[path].header("vary") == "Accept-Encoding"
    br = got["/br"]
    assert br.status == 502 and br.header("x-summon-bridge") == "1"
    assert b"encoded as 'br'" in br.body
