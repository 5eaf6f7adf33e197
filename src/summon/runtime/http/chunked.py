"""The chunk sizes a chunked request body declares, read as its bytes arrive, before h11.

h11 reads a chunk-size line and then hands out the chunk's data as it comes, without saying
how much was announced: a body refused only once Settings.max_body bytes had arrived let a
client that declares `ffffffffffff` and sends nothing more hold the request until the read
timer ran out (408, 30 s later). ChunkSizes follows the same bytes h11 gets and adds up the
sizes declared, so the server refuses such a body (413) as soon as the line that takes it over
the limit arrives.

It only reads lengths: it stops at the last chunk (size 0; the trailer section is h11's), and at
anything it cannot read (a size that is not hex, a line over MAX_LINE bytes), which h11 then
refuses with 400 as it always did.

Grammar (RFC 9112 section 7.1):

    chunked-body = *chunk last-chunk trailer-section CRLF
    chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-size   = 1*HEXDIG
    last-chunk   = 1*("0") [ chunk-ext ] CRLF
"""

from __future__ import annotations

MAX_LINE = 4096  # a chunk-size line with its extensions; h11 refuses far shorter ones

_SIZE = 0  # reading a chunk-size line
_DATA = 1  # skipping a chunk's data and the CRLF after it
_DONE = 2  # the last chunk came, or something h11 will refuse: nothing more to add up


class ChunkSizes:
    """Feed it the body's bytes as they arrive; `declared` is the sum of the sizes so far."""

    __slots__ = ("_left", "_line", "_state", "declared")

    def __init__(self) -> None:
        self.declared = 0
        self._state = _SIZE
        self._left = 0  # bytes of the current chunk (and its CRLF) still to come
        self._line = bytearray()  # a chunk-size line so far

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> int:
        """Take the next bytes of the body (anything after its end is ignored); return
        `declared`."""
        pos, end = 0, len(data)
        while pos < end and self._state != _DONE:
            if self._state == _DATA:
                step = min(self._left, end - pos)
                pos += step
                self._left -= step
                if not self._left:
                    self._state = _SIZE
                continue
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline
            if len(self._line) + stop - pos > MAX_LINE:
                self._state = _DONE
                break
            self._line += data[pos:stop]
            if newline < 0:
                break
            pos = newline + 1
            self._chunk(bytes(self._line))
            self._line.clear()
        return self.declared

    def _chunk(self, line: bytes) -> None:
        digits = line.partition(b";")[0].strip(b" \t\r")
        if not digits or digits.strip(b"0123456789abcdefABCDEF"):
            self._state = _DONE  # not a size: h11 answers 400
            return
        size = int(digits, 16)
        if not size:
            self._state = _DONE  # the last chunk: trailers follow, and they are h11's
            return
        self.declared += size
        self._left = size + 2  # the data, then its CRLF
        self._state = _DATA
