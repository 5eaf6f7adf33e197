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

EDNS(0), RFC 6891 section 6.1: a query may carry one OPT pseudo-record in its additional
section, which is how resolvers (glibc with `options edns0`, systemd-resolved, unbound)
ask; a server that takes part answers with an OPT of its own:

    OPT       = NAME(root, 0x00) TYPE(41) CLASS(UDP payload size) TTL RDLENGTH RDATA
    TTL       = EXTENDED-RCODE(8) VERSION(8) DO(1) Z(15)

More than one OPT is FORMERR; a version above 0 is BADVERS (extended rcode 1, rcode 0).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
OPCODE_SHIFT, OPCODE_MASK = 11, 0xF
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_NS, TYPE_SOA, TYPE_OPT, TYPE_ANY = 1, 2, 6, 41, 255
CLASS_IN = 1
QUESTION_NAME = b"\xc0\x0c"  # a pointer to the question's name, right after the header
UDP_LIMIT = 512  # a plain (non-EDNS) UDP answer; the gateway's never come near it
_MAX_POINTERS = 16
MAX_NAME_OCTETS = 255  # a name's length on the wire, at most (RFC 1035 2.3.4)
EDNS_PAYLOAD = 1232  # the UDP size this server says it takes (DNS flag day 2020's figure)
EDNS_DO = 0x8000  # "DNSSEC OK", copied into the response's OPT (RFC 3225 section 3)
BADVERS = 16  # an extended rcode: 1 in the OPT's upper byte, 0 in the header


class DnsFormatError(ValueError):
    """The bytes are not a DNS query this server can read; the message says where."""


@dataclass(frozen=True)
class Edns:
    """What a query's OPT record says: its version, its UDP payload size, its DO bit."""

    version: int
    payload: int
    flags: int  # the TTL's lower 16 bits: DO and Z


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
    edns: Edns | None = None  # the query's OPT record, when it has one
    opts: int = 0  # how many OPT records it has (more than one is FORMERR)

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
    size = 1  # octets of the name as written without pointers: its final 0 ...
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
        size += 1 + length
        if size > MAX_NAME_OCTETS:  # RFC 1035 2.3.4: a name of 400 octets was answered
            raise DnsFormatError(f"a name of over {MAX_NAME_OCTETS} octets at offset {offset}")
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
    edns, opts = None, 0
    if qdcount == 1 and _ar:
        edns, opts = _read_opt(data, at + 4, _an + _ns, _ar)
    return Query(ident, flags, opcode, qdcount, name, qtype, qclass, raw, edns, opts)


def _read_opt(data: bytes, offset: int, skip: int, additional: int) -> tuple[Edns | None, int]:
    """The first OPT record of the additional section and how many there are. skip: the
    answer and authority records before it (a query has none, but may say otherwise)."""
    edns: Edns | None = None
    opts = 0
    for index in range(skip + additional):
        name, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DnsFormatError(f"record {index + 1} after the question is cut off")
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10 + length
        if offset > len(data):
            raise DnsFormatError(f"record {index + 1}'s data runs past the end")
        if index >= skip and rtype == TYPE_OPT:
            if name:
                raise DnsFormatError(f"an OPT record owned by {name!r}, not the root")
            opts += 1
            if edns is None:
                edns = Edns((ttl >> 16) & 0xFF, rclass, ttl & 0xFFFF)
    return edns, opts


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
    """The response to query: its id, opcode, RD and question echoed; RA clear; an OPT
    record of the server's when the query had one (rcode may then be BADVERS)."""
    flags = QR | (query.opcode << OPCODE_SHIFT) | (query.flags & RD) | (rcode & 0xF)
    if authoritative:
        flags |= AA
    questions = 1 if query.raw_question else 0
    opt = b""
    if query.edns is not None and query.opts == 1:
        ttl = (rcode >> 4) << 24 | (query.edns.flags & EDNS_DO)  # version 0
        opt = b"\0" + struct.pack("!HHIH", TYPE_OPT, EDNS_PAYLOAD, ttl, 0)
    counts = (questions, len(answer), len(authority), 1 if opt else 0)
    out = bytearray(HEADER.pack(query.ident, flags, *counts))
    out += query.raw_question
    for record in (*answer, *authority):
        if questions and record.name == query.name:
            out += QUESTION_NAME  # the name as the client wrote it, not re-encoded
        else:
            out += encode_name(record.name)
        out += struct.pack("!HHIH", record.rtype, CLASS_IN, record.ttl, len(record.rdata))
        out += record.rdata
    return bytes(out + opt)


def with_ident(message: bytes, ident: int) -> bytes:
    """message (a reply from upstream) with its id set to ident."""
    return struct.pack("!H", ident) + message[2:]
