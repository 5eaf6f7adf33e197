"""The message sizes WebSocket frame headers announce, read as the bytes arrive, before wsproto.

wsproto hands out a frame's payload as it arrives and says nothing of the length its header
announced: a message refused only once Settings.max_body bytes of it had come let a client
announce 2^63 bytes and trickle them. FrameSizes follows the same bytes wsproto gets and adds
up the payload lengths of the frames of the message under way, so the server can close with
1009 (RFC 6455 section 7.4.1: too big to process) at the header that takes it over the limit.

It only reads lengths: the frame's meaning (opcodes, fragments, masking, control frames,
UTF-8) is wsproto's, and a header it would refuse (a length with its top bit set) stops the
reading here too, leaving the refusal (1002) to it.

Grammar (RFC 6455 section 5.2):

    frame   = fin:1 rsv:3 opcode:4 mask:1 len:7 [ext-len] [masking-key:32] payload
    ext-len = uint16 if len is 126, uint64 (top bit 0) if len is 127
    opcode  = 0 continuation, 1 text, 2 binary; 8 and up are control frames
"""

from __future__ import annotations


class FrameSizes:
    """Feed it what the client sends; `message` is the size the frames of the current data
    message announce so far (a text or binary frame starts a new one)."""

    __slots__ = ("_head", "_left", "done", "message")

    def __init__(self) -> None:
        self.message = 0
        self.done = False  # a header wsproto refuses came: nothing more is read here
        self._head = bytearray()  # a frame header so far
        self._left = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> int:
        """Take the next bytes from the client; return `message`."""
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._left:
                step = min(self._left, end - pos)
                pos += step
                self._left -= step
                continue
            head = self._head
            need = _header_size(head)
            take = min(need - len(head), end - pos)
            head += data[pos : pos + take]
            pos += take
            if len(head) < _header_size(head):
                continue  # more header bytes to come (the length byte may ask for more)
            self._header(bytes(head))
            head.clear()
        return self.message

    def _header(self, head: bytes) -> None:
        opcode = head[0] & 0x0F
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(head[2:4], "big")
        elif length == 127:
            length = int.from_bytes(head[2:10], "big")
            if length >> 63:
                self.done = True  # RFC 6455 5.2: the top bit must be 0; wsproto says 1002
                return
        if opcode in (1, 2):
            self.message = length
        elif opcode == 0:
            self.message += length
        self._left = length


def _header_size(head: bytearray) -> int:
    """The header's length, as far as the bytes so far tell."""
    if len(head) < 2:
        return 2
    length = head[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return size + (4 if head[1] & 0x80 else 0)
