"""The DNS wire format the gateway's server needs: parse a query, build its response.

Sans-IO: bytes in, a Query out; a Response (records) in, bytes out. Only what an
authoritative server for one small zone uses: the question of a query, and answers made of
A, NS and SOA records. dnspython did this before at ~4 MB of the gateway's resident memory
(the gateway's own figure at rest is one of summon's goals); the tests check this module
against dnspython as the peer.

RFC 1035 section 4.1, the parts read or written here (numbers big-endian):

    message   = header question *answer *authority *additional
    header    = ID(16) QR(1) OPCODE(4) AA(1) TC(1) RD(1) RA(1) Z(3) RCODE(4)
                QDCOUNT(16) ANCOUNT(16) NSCOUNT(16) ARCOUNT(16)
    question  = QNAME QTYPE(16) QCLASS(16)
    record    = NAME TYPE(16) CLASS(16) TTL(32) RDLENGTH(16) RDATA
    name      = *label (0x00 / pointer)     label = LENGTH(8, 1-63) 1*63OCTET
    pointer   = 0b11 OFFSET(14)             (a name may end in one; queries rarely do)
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
OPCODE_SHIFT, OPCODE_MASK = 11, 0xF
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_NS, TYPE_SOA, TYPE_ANY = 1, 2, 6, 255
CLASS_IN = 1
QUESTION_NAME = b"\xc0\x0c"  # a pointer to the question's name, right after the header
UDP_LIMIT = 512  # a plain (non-EDNS) UDP answer; the gateway's never come near it
_MAX_POINTERS = 16


class DnsFormatError(ValueError):
    """The bytes are not a DNS query this server can read; the message says where."""


@dataclass(frozen=True)
class Query:
    ident: int
    flags: int
    opcode: int
    questions: int  # how many the header says (only one is read)
    name: str  # lower case, dot-separated, no trailing dot ("" for the root)
    qtype: int
    qclass: int
    raw_question: bytes  # as sent, echoed in the response

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    ttl: int
    rdata: bytes


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """(name, offset after it where it was read) at offset, following pointers."""
    labels: list[str] = []
    end = -1
    jumps = 0
    while True:
        if offset >= len(data):
            raise DnsFormatError(f"a name runs past the end at offset {offset}")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsFormatError(f"a name pointer is cut off at offset {offset}")
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DnsFormatError("a name's pointers loop")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DnsFormatError(f"label type {length >> 6:#x} at offset {offset}")
        offset += 1
        if length == 0:
            break
        label = data[offset : offset + length]
        if len(label) != length:
            raise DnsFormatError(f"a label runs past the end at offset {offset}")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels), (end if end >= 0 else offset)


def parse_query(data: bytes) -> Query:
    """The header and first question of a query; DnsFormatError for what is not one."""
    if len(data) < HEADER.size:
        raise DnsFormatError(f"{len(data)} bytes: shorter than a DNS header")
    ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    if qdcount == 0:
        return Query(ident, flags, (flags >> OPCODE_SHIFT) & OPCODE_MASK, 0, "", 0, 0, b"")
    name, at = _read_name(data, HEADER.size)
    if at + 4 > len(data):
        raise DnsFormatError("the question's type and class are cut off")
    qtype, qclass = struct.unpack_from("!HH", data, at)
    raw = data[HEADER.size : at + 4]
    opcode = (flags >> OPCODE_SHIFT) & OPCODE_MASK
    return Query(ident, flags, opcode, qdcount, name, qtype, qclass, raw)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"label {label!r} of {name!r} is not 1-63 bytes")
        out += bytes((len(raw),)) + raw
    return bytes(out) + b"\0"


def a_record(name: str, ttl: int, address: str) -> Record:
    return Record(name, TYPE_A, ttl, socket.inet_aton(address))


def ns_record(name: str, ttl: int, host: str) -> Record:
    return Record(name, TYPE_NS, ttl, encode_name(host))


def soa_record(name: str, ttl: int, mname: str, rname: str, serial: int = 1) -> Record:
    times = struct.pack("!IIIII", serial, 3600, 600, 86400, ttl)
    return Record(name, TYPE_SOA, ttl, encode_name(mname) + encode_name(rname) + times)


def response(
    query: Query,
    rcode: int = NOERROR,
    answer: tuple[Record, ...] = (),
    authority: tuple[Record, ...] = (),
    authoritative: bool = False,
) -> bytes:
    """The response to query: its id, opcode, RD and question echoed; RA clear."""
    flags = QR | (query.opcode << OPCODE_SHIFT) | (query.flags & RD) | rcode
    if authoritative:
        flags |= AA
    questions = 1 if query.raw_question else 0
    out = bytearray(HEADER.pack(query.ident, flags, questions, len(answer), len(authority), 0))
    out += query.raw_question
    for record in (*answer, *authority):
        if questions and record.name == query.name:
            out += QUESTION_NAME  # the name as the client wrote it, not re-encoded
        else:
            out += encode_name(record.name)
        out += struct.pack("!HHIH", record.rtype, CLASS_IN, record.ttl, len(record.rdata))
        out += record.rdata
    return bytes(out)


def with_ident(message: bytes, ident: int) -> bytes:
    """message (a reply from upstream) with its id set to ident."""
    return struct.pack("!H", ident) + message[2:]
