"""A TCP segment as a typed record, and the two-step parser that turns untrusted bytes into one.

Step one (integrity) checks what must hold before any field can be read: the length, the data
offset, the checksum over the IPv4 pseudo-header, and that the options area walks cleanly.
Step two (sanity) checks what the fields mean: ports, flag combinations, option lengths.
Each failure raises TCPIntegrityError or TCPSanityError; `reason` names the counter path
("bad_checksum" -> "tcp__bad_checksum__drop") and the message names the values seen.
"""

from __future__ import annotations

from summon.net._record import Record
from summon.net.checksum import checksum, ones_complement_sum, pseudo_header_sum
from summon.net.errors import IntegrityError, SanityError
from summon.net.tcp import wire
from summon.net.tcp.wire import ACK, FIN, RST, SYN


class TCPIntegrityError(IntegrityError):
    """Lengths, data offset, option framing or checksum do not hold."""

    layer = "tcp"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class TCPSanityError(SanityError):
    """A well-formed segment whose fields mean something invalid."""

    layer = "tcp"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class Segment(Record):
    """One TCP segment: header fields, the options this stack understands, and the payload."""

    __slots__ = (
        "ack",
        "dst_port",
        "flags",
        "mss",
        "payload",
        "sack_permitted",
        "seq",
        "src_port",
        "timestamp",
        "urgent",
        "window",
        "wscale",
    )

    def __init__(
        self,
        src_port: int,
        dst_port: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: bytes = b"",
        *,
        mss: int | None = None,
        wscale: int | None = None,
        sack_permitted: bool = False,
        timestamp: tuple[int, int] | None = None,
        urgent: int = 0,
    ) -> None:
        self.src_port = src_port
        self.dst_port = dst_port
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload = payload
        self.mss = mss
        self.wscale = wscale
        self.sack_permitted = sack_permitted
        self.timestamp = timestamp
        self.urgent = urgent

    @property
    def length(self) -> int:
        """SEG.LEN: sequence space taken, payload plus one each for SYN and FIN."""
        return len(self.payload) + (self.flags & SYN and 1) + (self.flags & FIN and 1)

    def options(self) -> bytes:
        if self.mss is None and self.wscale is None and self.timestamp is None:
            if not self.sack_permitted:
                return b""  # every segment after the handshake
        return wire.encode_options(self.mss, self.wscale, self.sack_permitted, self.timestamp)

    def encode(self, src_ip: bytes, dst_ip: bytes, partial: bool = False) -> bytes:
        """The bytes on the wire, checksummed for this address pair (partial: only the
        pseudo-header's sum, for a link that completes it; see wire.encode)."""
        return wire.encode(
            src_ip,
            dst_ip,
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            self.flags,
            self.window,
            self.options(),
            self.payload,
            self.urgent,
            partial,
        )

    def __repr__(self) -> str:
        # packetdrill's notation: flags seq:end(len) ack N win N <options>
        end = (self.seq + len(self.payload)) & 0xFFFFFFFF
        text = f"{wire.flag_string(self.flags)} {self.seq}:{end}({len(self.payload)})"
        if self.flags & ACK:
            text += f" ack {self.ack}"
        text += f" win {self.window}"
        opts = []
        if self.mss is not None:
            opts.append(f"mss {self.mss}")
        if self.sack_permitted:
            opts.append("sackOK")
        if self.timestamp is not None:
            opts.append(f"TS val {self.timestamp[0]} ecr {self.timestamp[1]}")
        if self.wscale is not None:
            opts.append(f"wscale {self.wscale}")
        if opts:
            text += " <" + ",".join(opts) + ">"
        return f"<Segment {self.src_port}>{self.dst_port} {text}>"


def parse_segment(src_ip: bytes, dst_ip: bytes, data: bytes) -> Segment:
    """The Segment in data, which arrived from src_ip to dst_ip; or a typed error."""
    # Step one: integrity. Nothing past the fixed header is read until its bounds are known.
    n = len(data)
    if n < wire.HEADER_LEN:
        raise TCPIntegrityError("short_header", f"segment length {n} < {wire.HEADER_LEN}")
    words = data[12] >> 4
    if words < 5:
        raise TCPIntegrityError("bad_data_offset", f"data offset {words} words < 5")
    header_len = words * 4
    if header_len > n:
        raise TCPIntegrityError(
            "bad_data_offset", f"header length {header_len} > segment length {n}"
        )
    pseudo = pseudo_header_sum(src_ip, dst_ip, wire.PROTOCOL, n)
    if ones_complement_sum(data, pseudo) != 0xFFFF:
        stored = int.from_bytes(data[16:18], "big")
        expected = checksum(data[:16] + b"\0\0" + data[18:], pseudo)
        raise TCPIntegrityError(
            "bad_checksum", f"checksum 0x{stored:04x} != computed 0x{expected:04x}"
        )
    # option  = kind:1 (0 = end of list, 1 = no-op)
    #         | kind:1 length:1 value:(length - 2)   ; length counts kind and length bytes
    found: list[tuple[int, int, int]] = []  # (kind, offset, length)
    i = wire.HEADER_LEN
    while i < header_len:
        kind = data[i]
        if kind == wire.OPT_EOL:
            break
        if kind == wire.OPT_NOP:
            i += 1
            continue
        if i + 1 >= header_len:
            raise TCPIntegrityError(
                "bad_option", f"option kind {kind} at offset {i} has no length byte"
            )
        length = data[i + 1]
        if length < 2 or i + length > header_len:
            raise TCPIntegrityError(
                "bad_option",
                f"option kind {kind} at offset {i} length {length} outside 2..{header_len - i}",
            )
        found.append((kind, i, length))
        i += length

    src_port, dst_port, seq, ack, _, flags, window, _, urgent = wire.HEADER.unpack_from(data)
    # Step two: sanity. Every field can be read now; check that they mean something valid.
    if src_port == 0 or dst_port == 0:
        raise TCPSanityError("port_zero", f"source port {src_port}, destination port {dst_port}")
    if flags & SYN and flags & FIN:
        raise TCPSanityError("syn_fin", f"SYN and FIN both set (flags 0x{flags:02x})")
    if flags & SYN and flags & RST:
        raise TCPSanityError("syn_rst", f"SYN and RST both set (flags 0x{flags:02x})")
    segment = Segment(src_port, dst_port, seq, ack, flags, window, data[header_len:], urgent=urgent)
    for kind, offset, length in found:
        want = wire.OPTION_LENGTHS.get(kind)
        if want is None:
            continue  # unknown options (and SACK blocks) are skipped, as RFC 9293 requires
        if length != want:
            raise TCPSanityError(
                "bad_option_length", f"option kind {kind} length {length} != {want}"
            )
        if kind == wire.OPT_MSS:
            segment.mss = int.from_bytes(data[offset + 2 : offset + 4], "big")
        elif kind == wire.OPT_WSCALE:
            segment.wscale = min(data[offset + 2], wire.MAX_WSCALE)
        elif kind == wire.OPT_SACK_PERMITTED:
            segment.sack_permitted = True
        else:
            segment.timestamp = (
                int.from_bytes(data[offset + 2 : offset + 6], "big"),
                int.from_bytes(data[offset + 6 : offset + 10], "big"),
            )
    return segment
