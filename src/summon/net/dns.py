"""DNS wire format for the stub resolver (RFC 1035): A-record queries and their replies.

Sans-IO: `build_query` makes a query, `parse_response` checks a reply: first its fixed
header (a reply, to our ID: anything else, spoofed or stale, is dropped before a byte of its
body is read, so a flood of unmatched replies costs no parsing), then in two steps (integrity:
name and record framing, compression pointers; then sanity: it answers our question) and
returns the addresses, following CNAMEs within the answer.
Sending queries, timeouts, the TCP fallback and the cache are resolver.py's.

Why not dnspython: it is the wire format dnspython reads and writes (the tests check both
ways), but an image carries dnspython only if its app chose it, and a resolver that changed
with what the app vendors would be two resolvers to test. A-record lookups need ~150 lines.
"""

from __future__ import annotations

import struct

from summon.net._record import Record
from summon.net.errors import IntegrityError, ParseError, SanityError

# Wire (RFC 1035 4.1):
#
#   header   = id(2) flags(2) qdcount(2) ancount(2) nscount(2) arcount(2)
#   flags    = QR(1) opcode(4) AA(1) TC(1) RD(1) RA(1) Z(3) rcode(4)
#   question = name type(2) class(2)
#   record   = name type(2) class(2) ttl(4) rdlength(2) rdata(rdlength)
#   name     = *(length(1) label) 0, or ending in a pointer 0b11xxxxxx xxxxxxxx to an
#              earlier name in the message
HEADER = struct.Struct("!HHHHHH")
HEADER_LEN = 12
TYPE_A, TYPE_CNAME = 1, 5
CLASS_IN = 1
FLAG_QR, FLAG_TC, FLAG_RD = 0x8000, 0x0200, 0x0100
RCODE_NXDOMAIN = 3
RCODE_NAMES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
MAX_NAME = 255
# Pointers one name may follow: a name has at most 127 labels, and a compressor never needs
# more jumps than labels. Backward-only pointers end every chain, but a chain of 8,000 (the
# 14-bit offsets allow that much) read by each of 4,000 records cost 8 s of CPU per reply.
MAX_POINTERS = MAX_NAME // 2
MAX_CNAMES = 8
MAX_TTL = 86400  # cache for at most a day, whatever a server says
TIMEOUTS = (1.0, 2.0, 4.0)  # per round over the servers; glibc's default is 5 s, twice
DNS_PORT = 53


class DnsError(ParseError):
    """A reply that is not a valid answer to our query; `reason` names it for counters."""

    layer = "dns"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DnsIntegrityError(DnsError, IntegrityError):
    pass


class DnsSanityError(DnsError, SanityError):
    pass


class ResolutionError(OSError):
    """A name that could not be resolved (as socket.gaierror is, an OSError)."""


class Answer(Record):
    """What a reply says: the addresses (possibly none), the smallest TTL, and flags."""

    __slots__ = ("addresses", "rcode", "truncated", "ttl")

    def __init__(self, addresses: list[bytes], ttl: int, rcode: int, truncated: bool) -> None:
        self.addresses = addresses
        self.ttl = ttl
        self.rcode = rcode
        self.truncated = truncated


def encode_name(name: str) -> bytes:
    """ "example.com" -> b"\\x07example\\x03com\\x00"; ValueError for what is no host name."""
    labels = name.rstrip(".").split(".")
    out = bytearray()
    for label in labels:
        raw = label.encode("ascii") if label.isascii() else b""
        if not 0 < len(raw) <= 63:
            raise ValueError(f"not a host name: {name!r} (label {label!r})")
        out += bytes((len(raw),)) + raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"not a host name: {name!r} is longer than {MAX_NAME} bytes")
    return bytes(out)


def build_query(name: str, ident: int, qtype: int = TYPE_A) -> bytes:
    """A recursive query (RD) for `name`, type `qtype`, class IN."""
    return (
        HEADER.pack(ident, FLAG_RD, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, CLASS_IN)
    )


def _read_name(data: bytes, offset: int) -> tuple[bytes, int]:
    """(the name at offset, lowercased, as b"a.b.c"; the offset after it in the record)."""
    labels: list[bytes] = []
    end = -1  # where the record continues: after the first pointer, or after the 0
    size = 0
    jumps = 0
    limit = offset  # pointers must point strictly backwards: no loops
    while True:
        if offset >= len(data):
            raise DnsIntegrityError("truncated_name", f"name runs past the message at {offset}")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsIntegrityError("truncated_name", f"pointer cut at {offset}")
            target = (length & 0x3F) << 8 | data[offset + 1]
            if target >= limit:
                raise DnsIntegrityError(
                    "bad_pointer", f"compression pointer at {offset} to {target} is not backward"
                )
            jumps += 1
            if jumps > MAX_POINTERS:
                raise DnsIntegrityError(
                    "pointer_chain", f"name at {offset} follows over {MAX_POINTERS} pointers"
                )
            if end < 0:
                end = offset + 2
            offset = limit = target
            continue
        if length & 0xC0:
            raise DnsIntegrityError("bad_label", f"label type 0x{length & 0xC0:02x} at {offset}")
        if length == 0:
            return b".".join(labels).lower(), end if end >= 0 else offset + 1
        if offset + 1 + length > len(data):
            raise DnsIntegrityError("truncated_name", f"label at {offset} runs past the message")
        size += length + 1
        if size > MAX_NAME:
            raise DnsIntegrityError("long_name", f"name longer than {MAX_NAME} bytes")
        labels.append(data[offset + 1 : offset + 1 + length])
        offset += 1 + length


def parse_response(data: bytes, ident: int, name: str, qtype: int = TYPE_A) -> Answer:
    """The answer `data` gives to our query (ident, name, qtype), or DnsError."""
    # Step one, integrity: every name and record fits and every pointer goes backwards.
    if len(data) < HEADER_LEN:
        raise DnsIntegrityError("too_short", f"message of {len(data)} bytes < header 12")
    rid, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(data)
    # Step zero, the header: only a reply to our query is worth parsing. A spoofer who does
    # not know the ID (or a stale reply to an earlier query) costs 12 bytes read, not a body.
    if not flags & FLAG_QR:
        raise DnsSanityError("not_a_response", "QR bit clear: a query, not a reply")
    if rid != ident:
        raise DnsSanityError("wrong_id", f"ID {rid} != ours {ident}")
    offset = HEADER_LEN
    questions = []
    for _ in range(qdcount):
        qname, offset = _read_name(data, offset)
        if offset + 4 > len(data):
            raise DnsIntegrityError("truncated", "question runs past the message")
        questions.append((qname, *struct.unpack_from("!HH", data, offset)))
        offset += 4
    records = []
    truncated = bool(flags & FLAG_TC)
    for _ in range(ancount):
        try:
            owner, offset = _read_name(data, offset)
        except DnsIntegrityError:
            if truncated:
                break  # a truncated reply may end anywhere: keep what is whole
            raise
        if offset + 10 > len(data):
            if truncated:
                break
            raise DnsIntegrityError("truncated", f"record at {offset} runs past the message")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        if offset + rdlength > len(data):
            if truncated:
                break
            raise DnsIntegrityError("truncated", f"rdata of {rdlength} bytes runs past the end")
        rdata_offset = offset
        offset += rdlength
        records.append((owner, rtype, rclass, ttl, rdata_offset, rdlength))
    # Step two, sanity: it answers our question.
    want = name.rstrip(".").lower().encode("ascii")
    if questions != [(want, qtype, CLASS_IN)]:
        raise DnsSanityError("wrong_question", f"question {questions!r} is not ours")
    rcode = flags & 0x000F
    current = want
    addresses: list[bytes] = []
    ttl = MAX_TTL
    for _ in range(MAX_CNAMES + 1):
        moved = False
        for owner, rtype, rclass, rttl, at, length in records:
            if owner != current or rclass != CLASS_IN:
                continue
            if rtype == qtype == TYPE_A:
                if length != 4:
                    raise DnsSanityError("bad_a_record", f"A record of {length} bytes")
                addresses.append(data[at : at + 4])
                ttl = min(ttl, rttl)
            elif rtype == TYPE_CNAME and not moved:
                target, _ = _read_name(data, at)
                ttl = min(ttl, rttl)
                current, moved = target, True
        if addresses or not moved:
            break
    return Answer(addresses, ttl, rcode, truncated)
