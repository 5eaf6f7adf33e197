"""ARP (RFC 826) for IPv4 over Ethernet: the packet record, and the resolver that keeps the
cache and holds datagrams while their next hop is being resolved.

Sans-IO: time comes in as `now`, and what must go on the wire comes back as Transmit tuples
(destination MAC, EtherType, payload) for the interface to frame.
"""

from __future__ import annotations

import struct

from summon.net._record import Record
from summon.net.errors import IntegrityError, ParseError, SanityError
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4, format_mac
from summon.net.ipv4 import ANY, format_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.counters import Counters

    Transmit = tuple[bytes, int, bytes]

# Wire (RFC 826), for Ethernet (hardware type 1) and IPv4 (protocol type 0x0800):
#
#    0       2       4   5   6       8             14        18             24        28
#   +-------+-------+---+---+-------+-------------+---------+--------------+---------+
#   | htype | ptype |hln|pln| oper  | sender MAC  |sender IP| target MAC   |target IP|
#   +-------+-------+---+---+-------+-------------+---------+--------------+---------+
PACKET = struct.Struct("!HHBBH6s4s6s4s")
PACKET_LEN = 28
HTYPE_ETHERNET = 1
OP_REQUEST = 1
OP_REPLY = 2
ZERO_MAC = b"\0" * 6


class ArpError(ParseError):
    """A packet that is not valid ARP for IPv4 over Ethernet; `reason` is for counters."""

    layer = "arp"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ArpIntegrityError(ArpError, IntegrityError):
    pass


class ArpSanityError(ArpError, SanityError):
    pass


class ArpPacket(Record):
    __slots__ = ("operation", "sender_ip", "sender_mac", "target_ip", "target_mac")

    def __init__(
        self,
        operation: int,
        sender_mac: bytes,
        sender_ip: bytes,
        target_mac: bytes,
        target_ip: bytes,
    ) -> None:
        self.operation = operation
        self.sender_mac = sender_mac
        self.sender_ip = sender_ip
        self.target_mac = target_mac
        self.target_ip = target_ip

    @classmethod
    def parse(cls, data: bytes) -> ArpPacket:
        """The packet at the start of data (the rest is link padding), or ArpError."""
        # Step one, integrity: the length, and the address sizes that fix the layout.
        if len(data) < PACKET_LEN:
            raise ArpIntegrityError("too_short", f"packet of {len(data)} bytes < {PACKET_LEN}")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = PACKET.unpack_from(data)
        if hlen != 6 or plen != 4:
            raise ArpIntegrityError("bad_address_length", f"address lengths {hlen}/{plen} != 6/4")
        # Step two, sanity.
        if htype != HTYPE_ETHERNET or ptype != ETHERTYPE_IPV4:
            raise ArpSanityError(
                "unsupported_type", f"hardware/protocol type {htype}/0x{ptype:04x} != 1/0x0800"
            )
        if op not in (OP_REQUEST, OP_REPLY):
            raise ArpSanityError("bad_operation", f"operation {op} is not request 1 or reply 2")
        if sha[0] & 1:
            raise ArpSanityError(
                "sender_mac_multicast", f"sender MAC {format_mac(sha)} is a group address"
            )
        if spa[0] >= 224 or spa[0] == 127:
            raise ArpSanityError(
                "bad_sender_ip", f"sender IP {format_address(spa)} cannot own a MAC"
            )
        return cls(op, sha, spa, tha, tpa)

    def serialize(self) -> bytes:
        return PACKET.pack(
            HTYPE_ETHERNET,
            ETHERTYPE_IPV4,
            6,
            4,
            self.operation,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )


class ArpCache:
    """IP -> MAC, each entry living `lifetime` seconds, at most `max_entries` (the oldest
    is evicted). Refreshing an entry makes it the youngest."""

    __slots__ = ("_entries", "counters", "lifetime", "max_entries")

    def __init__(self, counters: Counters, *, max_entries: int = 256, lifetime: float = 60.0):
        self.counters = counters
        self.max_entries = max_entries
        self.lifetime = lifetime
        # Insertion order is age order, so the first key is the one to evict.
        self._entries: dict[bytes, tuple[bytes, float]] = {}

    def get(self, ip: bytes, now: float) -> bytes | None:
        entry = self._entries.get(ip)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[ip]
            self.counters.inc("arp__entry_expired__remove")
            return None
        return entry[0]

    def put(self, ip: bytes, mac: bytes, now: float) -> None:
        if self._entries.pop(ip, None) is None:
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
                self.counters.inc("arp__cache_full__evict")
        self._entries[ip] = (mac, now + self.lifetime)

    def expire(self, now: float) -> None:
        for ip in [ip for ip, (_, until) in self._entries.items() if until <= now]:
            del self._entries[ip]
            self.counters.inc("arp__entry_expired__remove")

    def __contains__(self, ip: bytes) -> bool:
        return ip in self._entries

    def __len__(self) -> int:
        return len(self._entries)


# What a held datagram costs beyond its bytes: the bytes object's header (33, allocated in 8s)
# and its list slot. Counting bytes alone, 40-byte datagrams (TCP RSTs to spoofed on-link
# sources) held 16.4 MiB within the 64 x 128 KiB bound.
HELD_OVERHEAD = 48


class _Pending:
    """Datagrams waiting for one IP's MAC, and the state of the requests sent for it."""

    __slots__ = ("held", "queue", "requests_sent", "retry_at")

    def __init__(self, retry_at: float) -> None:
        self.queue: list[bytes] = []
        self.held = 0
        self.requests_sent = 1
        self.retry_at = retry_at


class ArpResolver:
    """Answers ARP for our address, learns others', and resolves next hops for IPv4.

    Bounds: the cache (`cache.max_entries`, `cache.lifetime`); `max_pending` next hops
    being resolved at once (a datagram for one more is dropped); `queue_bytes` of datagrams
    held per next hop, each charged HELD_OVERHEAD more (the oldest go first); a request is
    resent every `retry_interval` seconds up to `max_requests` requests, then the held
    datagrams are dropped and handed back from timers() so the interface can tell their
    senders. Tunables are public.
    """

    __slots__ = ("_pending", "_sweep_at", "cache", "counters", "ip", "mac", "max_pending",
                 "max_requests", "queue_bytes", "retry_interval")  # fmt: skip

    def __init__(
        self,
        mac: bytes,
        ip: bytes,
        counters: Counters,
        *,
        cache_size: int = 256,
        lifetime: float = 60.0,
        retry_interval: float = 1.0,
        max_requests: int = 3,
        queue_bytes: int = 128 * 1024,
        max_pending: int = 64,
    ) -> None:
        self.mac = mac
        self.ip = ip
        self.counters = counters
        self.cache = ArpCache(counters, max_entries=cache_size, lifetime=lifetime)
        self.retry_interval = retry_interval
        self.max_requests = max_requests
        self.queue_bytes = queue_bytes
        self.max_pending = max_pending
        self._pending: dict[bytes, _Pending] = {}
        self._sweep_at = 0.0

    def request(self, ip: bytes) -> Transmit:
        packet = ArpPacket(OP_REQUEST, self.mac, self.ip, ZERO_MAC, ip)
        return (BROADCAST, ETHERTYPE_ARP, packet.serialize())

    def resolve(self, ip: bytes, datagram: bytes, now: float) -> list[Transmit]:
        """Send datagram (a serialized IPv4 packet) to next hop ip: at once if its MAC is
        known, else held while a request goes out."""
        mac = self.cache.get(ip, now)
        if mac is not None:
            return [(mac, ETHERTYPE_IPV4, datagram)]
        pending = self._pending.get(ip)
        out: list[Transmit] = []
        if pending is None:
            if len(self._pending) >= self.max_pending:
                self.counters.inc("arp__too_many_pending__drop")
                return []
            pending = self._pending[ip] = _Pending(now + self.retry_interval)
            out.append(self.request(ip))
            self.counters.inc("arp__request__send")
        pending.queue.append(datagram)
        pending.held += len(datagram) + HELD_OVERHEAD
        while pending.held > self.queue_bytes:
            pending.held -= len(pending.queue.pop(0)) + HELD_OVERHEAD
            self.counters.inc("arp__pending_full__drop")
        return out

    def receive(self, packet: ArpPacket, now: float) -> list[Transmit]:
        """Take one ARP packet: learn from it, answer it, release what waited for it."""
        sender_ip = packet.sender_ip
        if sender_ip == self.ip:
            if packet.sender_mac != self.mac:
                # Someone else claims our address (RFC 5227): never let it into the cache.
                self.counters.inc("arp__address_conflict__drop")
            return []
        for_us = packet.target_ip == self.ip
        out: list[Transmit] = []
        if sender_ip != ANY:
            # RFC 826's merge: update a known sender; add it only when it talks to us (so
            # a stream of broadcasts cannot fill the cache).
            if for_us or sender_ip in self.cache or sender_ip in self._pending:
                self.cache.put(sender_ip, packet.sender_mac, now)
                pending = self._pending.pop(sender_ip, None)
                if pending is not None:
                    out.extend((packet.sender_mac, ETHERTYPE_IPV4, d) for d in pending.queue)
                    self.counters.inc("arp__resolved__release", len(pending.queue))
        if for_us and packet.operation == OP_REQUEST:
            reply = ArpPacket(OP_REPLY, self.mac, self.ip, packet.sender_mac, sender_ip)
            out.append((packet.sender_mac, ETHERTYPE_ARP, reply.serialize()))
            self.counters.inc("arp__request__reply")
        elif not for_us:
            self.counters.inc("arp__not_for_us__ignore")
        return out

    def timers(self, now: float) -> tuple[list[Transmit], list[bytes]]:
        """Resend due requests; give up on next hops past max_requests.

        Returns what to send, and the datagrams dropped for want of an answer.
        """
        out: list[Transmit] = []
        dropped: list[bytes] = []
        for ip, pending in list(self._pending.items()):
            if pending.retry_at > now:
                continue
            if pending.requests_sent >= self.max_requests:
                del self._pending[ip]
                dropped.extend(pending.queue)
                self.counters.inc("arp__unresolved__drop", len(pending.queue))
                continue
            pending.requests_sent += 1
            pending.retry_at = now + self.retry_interval
            out.append(self.request(ip))
            self.counters.inc("arp__request__retransmit")
        if now >= self._sweep_at:
            # Lookups already ignore stale entries; the sweep only frees their memory, so
            # once a second is plenty however often timers() runs.
            self.cache.expire(now)
            self._sweep_at = now + 1.0
        return out, dropped

    def next_deadline(self) -> float | None:
        return min((p.retry_at for p in self._pending.values()), default=None)

    def pending(self, ip: bytes) -> int:
        """How many datagrams wait for ip's MAC."""
        pending = self._pending.get(ip)
        return 0 if pending is None else len(pending.queue)
