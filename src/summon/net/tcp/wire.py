"""The TCP header's wire layout: field offsets, flag bits, option kinds, and the encoder.

Only layout lives here; what the fields mean, and the checks on untrusted bytes, live in
segment.py.
"""

from __future__ import annotations

import struct

from summon.net.checksum import checksum, ones_complement_sum, pseudo_header_sum

PROTOCOL = 6  # IPv4 protocol number
HEADER_LEN = 20  # bytes without options
MAX_HEADER_LEN = 60  # data offset is 4 bits of 32-bit words

#  0                   1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |          Source Port          |       Destination Port        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                        Sequence Number                        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                    Acknowledgment Number                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Data |       |C|E|U|A|P|R|S|F|                               |
# | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
# |       |       |R|E|G|K|H|T|N|N|                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |           Checksum            |         Urgent Pointer        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                    Options (data offset*4 - 20 bytes)         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                             Data                              |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#   src port, dst port, seq, ack, offset<<4, flags, window, checksum, urgent
HEADER = struct.Struct("!HHIIBBHHH")
CHECKSUM_OFFSET = 16

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
FLAG_LETTERS = (
    (SYN, "S"),
    (FIN, "F"),
    (RST, "R"),
    (PSH, "P"),
    (URG, "U"),
    (ECE, "E"),
    (CWR, "W"),
)

# Options: kind 0 and 1 are one byte; every other is kind, length (counting both), value.
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2  # length 4: 16-bit maximum segment size (RFC 9293)
OPT_WSCALE = 3  # length 3: 8-bit shift count (RFC 7323)
OPT_SACK_PERMITTED = 4  # length 2 (RFC 2018)
OPT_SACK = 5  # length 2 + 8n: left/right edges (RFC 2018); read past, not used
OPT_TIMESTAMP = 8  # length 10: 32-bit TSval, 32-bit TSecr (RFC 7323)
OPTION_LENGTHS = {OPT_MSS: 4, OPT_WSCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMP: 10}
MAX_WSCALE = 14  # RFC 7323 section 2.3: larger shifts are read as 14

_MSS = struct.Struct("!BBH")
_TIMESTAMP = struct.Struct("!BBII")


def encode_options(
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
    timestamp: tuple[int, int] | None = None,
) -> bytes:
    """The options area for these values, NOP-padded to a multiple of 4 bytes."""
    out = b""
    if mss is not None:
        out += _MSS.pack(OPT_MSS, 4, mss)
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    if sack_permitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if timestamp is not None:
        out += bytes((OPT_NOP, OPT_NOP)) + _TIMESTAMP.pack(OPT_TIMESTAMP, 10, *timestamp)
    return out


def encode(
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes = b"",
    payload: bytes | memoryview = b"",
    urgent: int = 0,
    partial: bool = False,
) -> bytes:
    """A whole segment, checksum filled in (over the IPv4 pseudo-header too).

    partial: leave the rest of the sum to the link (checksum offload): the field holds the
    pseudo-header's sum only, as a device completing it from the TCP header on expects.
    """
    header_len = HEADER_LEN + len(options)
    pseudo = pseudo_header_sum(src_ip, dst_ip, PROTOCOL, header_len + len(payload))
    if partial:
        head = HEADER.pack(
            src_port, dst_port, seq, ack, header_len << 2, flags, window, pseudo, urgent
        )
        return head + options + payload
    head = HEADER.pack(src_port, dst_port, seq, ack, header_len << 2, flags, window, 0, urgent)
    # The header is a whole number of 16-bit words, so its sum chains into the payload's and
    # the payload is copied once, into the result, not into an intermediate buffer.
    total = checksum(payload, ones_complement_sum(head + options, pseudo))
    head = HEADER.pack(src_port, dst_port, seq, ack, header_len << 2, flags, window, total, urgent)
    return head + options + payload


def flag_string(flags: int) -> str:
    """Flags as tcpdump/packetdrill write them: "S", "S.", "P.", "F.", "R", "." ..."""
    letters = "".join(letter for bit, letter in FLAG_LETTERS if flags & bit)
    return letters + ("." if flags & ACK else "")
