"""A DHCP client (RFC 2131, options RFC 2132), sans-IO: DISCOVER, OFFER, REQUEST, ACK, renewals.

The client does no I/O and reads no clock. Messages from servers go in (`receive`), time goes
in (`timers`), and out come DHCP messages to send (`messages_to_send`: payload, source and
destination address; the stack wraps them in UDP 68 -> 67) and leases (`leases`).

    client = DhcpClient(mac)
    client.start(now)                      # DISCOVER queued
    client.receive(udp_payload, now)       # whatever arrived on UDP port 68 from port 67
    client.timers(now)                     # retransmissions, T1, T2, expiry
    client.next_deadline()
    for lease in client.leases(): ...      # bound (first time, or renewed): configure it
    for out in client.messages_to_send(): ...

Every state change goes through TRANSITIONS below. Not done: ARP probing of the offered
address (RFC 5227), DHCPDECLINE/RELEASE/INFORM, option overload (52) and the INIT-REBOOT state;
on expiry the client starts over from DISCOVER and the stack keeps the old address until a
new lease comes (see docs/direct.md).
"""

from __future__ import annotations

import os
import struct

from summon.net._record import Record
from summon.net.counters import Counters
from summon.net.errors import IntegrityError, ParseError, SanityError
from summon.net.ipv4 import ANY, LIMITED_BROADCAST, format_address, is_unicast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Wire (RFC 2131 section 2):
#
#   op(1) htype(1) hlen(1) hops(1) | xid(4) | secs(2) flags(2) | ciaddr(4) | yiaddr(4)
#   siaddr(4) | giaddr(4) | chaddr(16) | sname(64) | file(128) | magic cookie(4) | options
#
#   option = pad(0) / end(255) / code(1) length(1) value(length)
#
# Options with the same code are concatenated (RFC 3396).
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
HEADER_LEN = 240
MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
MAX_MESSAGE = 1500  # what we tell servers we take (option 57)

# Message types (option 53).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak",
                 7: "release", 8: "inform"}  # fmt: skip

OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_MTU = 26
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETERS = 55
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
INFINITE = 0xFFFFFFFF
PARAMETERS = bytes((OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_MTU, OPT_LEASE_TIME, OPT_SERVER_ID,
                    OPT_T1, OPT_T2))  # fmt: skip

# --- errors --------------------------------------------------------------------------------


class DhcpError(ParseError):
    """A message that is not a valid DHCP reply; `reason` names the condition for counters."""

    layer = "dhcp"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DhcpIntegrityError(DhcpError, IntegrityError):
    pass


class DhcpSanityError(DhcpError, SanityError):
    pass


# --- the message ---------------------------------------------------------------------------


class DhcpMessage(Record):
    """One BOOTP/DHCP message: the fixed fields we use and the options, by code."""

    __slots__ = ("chaddr", "ciaddr", "flags", "giaddr", "op", "options", "secs", "siaddr",
                 "xid", "yiaddr")  # fmt: skip

    def __init__(
        self,
        op: int,
        xid: int,
        chaddr: bytes,
        options: dict[int, bytes],
        *,
        secs: int = 0,
        flags: int = 0,
        ciaddr: bytes = ANY,
        yiaddr: bytes = ANY,
        siaddr: bytes = ANY,
        giaddr: bytes = ANY,
    ) -> None:
        self.op = op
        self.xid = xid
        self.chaddr = chaddr
        self.options = options
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr

    @property
    def message_type(self) -> int:
        value = self.options.get(OPT_MESSAGE_TYPE, b"")
        return value[0] if len(value) == 1 else 0

    @classmethod
    def parse(cls, data: bytes) -> DhcpMessage:
        """The message in `data`, or DhcpError."""
        # Step one, integrity: the fixed part, the cookie, and options that fit.
        if len(data) < HEADER_LEN:
            raise DhcpIntegrityError(
                "too_short", f"message of {len(data)} bytes < fixed part {HEADER_LEN}"
            )
        (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
         _sname, _file, magic) = HEADER.unpack_from(data)  # fmt: skip
        if magic != MAGIC:
            raise DhcpIntegrityError("bad_cookie", f"magic cookie {magic.hex()} != 63825363")
        options: dict[int, bytes] = {}
        i, end = HEADER_LEN, len(data)
        while i < end:
            code = data[i]
            if code == OPT_END:
                break
            if code == OPT_PAD:
                i += 1
                continue
            if i + 1 >= end or i + 2 + data[i + 1] > end:
                raise DhcpIntegrityError(
                    "bad_option", f"option {code} at offset {i} runs past the message ({end})"
                )
            length = data[i + 1]
            options[code] = options.get(code, b"") + data[i + 2 : i + 2 + length]
            i += 2 + length
        # Step two, sanity.
        if htype != HTYPE_ETHERNET or hlen != 6:
            raise DhcpSanityError(
                "not_ethernet", f"hardware type {htype} length {hlen}, not Ethernet (1, 6)"
            )
        kind = options.get(OPT_MESSAGE_TYPE, b"")
        if len(kind) != 1 or not DISCOVER <= kind[0] <= INFORM:
            raise DhcpSanityError(
                "bad_message_type", f"message type option {kind.hex() or 'missing'}"
            )
        if op not in (BOOTREQUEST, BOOTREPLY):
            raise DhcpSanityError("bad_op", f"op {op} is neither request (1) nor reply (2)")
        return cls(op, xid, chaddr[:6], options, secs=secs, flags=flags, ciaddr=ciaddr,
                   yiaddr=yiaddr, siaddr=siaddr, giaddr=giaddr)  # fmt: skip

    def serialize(self) -> bytes:
        out = bytearray(
            HEADER.pack(
                self.op,
                HTYPE_ETHERNET,
                6,
                0,
                self.xid,
                self.secs,
                self.flags,
                self.ciaddr,
                self.yiaddr,
                self.siaddr,
                self.giaddr,
                self.chaddr,
                b"",
                b"",
                MAGIC,
            )
        )
        for code, value in self.options.items():
            for start in range(0, max(len(value), 1), 255):  # RFC 3396: long ones split
                piece = value[start : start + 255]
                out += bytes((code, len(piece))) + piece
        out.append(OPT_END)
        if len(out) < 300:  # BOOTP's minimum; some relays drop shorter messages
            out += bytes(300 - len(out))
        return bytes(out)


class Lease(Record):
    """An address bound by an ACK, with what came with it; times are absolute (`now` based)."""

    __slots__ = ("address", "bound_at", "expires", "gateway", "lease_time", "mtu", "nameservers",
                 "prefix_len", "server", "t1", "t2")  # fmt: skip

    def __init__(
        self,
        address: bytes,
        prefix_len: int,
        gateway: bytes | None,
        nameservers: tuple[bytes, ...],
        server: bytes,
        lease_time: float,
        t1: float,
        t2: float,
        bound_at: float,
        mtu: int | None = None,
    ) -> None:
        self.address = address
        self.prefix_len = prefix_len
        self.gateway = gateway
        self.nameservers = nameservers
        self.server = server
        self.lease_time = lease_time
        self.t1 = t1
        self.t2 = t2
        self.bound_at = bound_at
        self.expires = bound_at + lease_time
        self.mtu = mtu

    @classmethod
    def from_ack(cls, ack: DhcpMessage, server: bytes, now: float) -> Lease:
        """The lease an ACK grants; DhcpSanityError if its options do not make one."""
        options = ack.options
        if not is_unicast(ack.yiaddr):
            raise DhcpSanityError("bad_address", f"offered {format_address(ack.yiaddr)}")
        prefix_len = _prefix_len(options.get(OPT_SUBNET_MASK), ack.yiaddr)
        routers = _addresses(options.get(OPT_ROUTER, b""), "router")
        nameservers = _addresses(options.get(OPT_DNS, b""), "dns")
        lease_time = float(_u32(options.get(OPT_LEASE_TIME), "lease_time", 3600) or 0)
        if lease_time >= INFINITE:
            lease_time = float("inf")
        t1 = _u32(options.get(OPT_T1), "t1", None)
        t2 = _u32(options.get(OPT_T2), "t2", None)
        # RFC 2131 4.4.5: T1 defaults to half the lease, T2 to 7/8; keep T1 <= T2 <= lease.
        t2v = lease_time * 0.875 if t2 is None or t2 > lease_time else float(t2)
        t1v = lease_time * 0.5 if t1 is None or t1 > t2v else float(t1)
        mtu = None
        raw_mtu = options.get(OPT_MTU)
        if raw_mtu is not None:
            if len(raw_mtu) != 2 or int.from_bytes(raw_mtu, "big") < 68:
                raise DhcpSanityError("bad_mtu", f"MTU option {raw_mtu.hex()}")
            mtu = int.from_bytes(raw_mtu, "big")
        gateway = routers[0] if routers else None
        return cls(ack.yiaddr, prefix_len, gateway, nameservers, server, lease_time,
                   now + t1v, now + t2v, now, mtu)  # fmt: skip


def _prefix_len(mask: bytes | None, address: bytes) -> int:
    if mask is None:  # RFC 2131 leaves it to the client: the address's historic class
        return 8 if address[0] < 128 else 16 if address[0] < 192 else 24
    value = int.from_bytes(mask, "big") if len(mask) == 4 else -1
    ones = bin(value).count("1") if value > 0 else 0
    if value <= 0 or value != (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF or ones == 32:
        raise DhcpSanityError("bad_subnet_mask", f"subnet mask {(mask or b'').hex()}")
    return ones


def _addresses(value: bytes, what: str) -> tuple[bytes, ...]:
    if len(value) % 4:
        raise DhcpSanityError(f"bad_{what}", f"{what} option of {len(value)} bytes")
    return tuple(value[i : i + 4] for i in range(0, len(value), 4))


def _u32(value: bytes | None, what: str, default: int | None) -> int | None:
    if value is None:
        return default
    if len(value) != 4:
        raise DhcpSanityError(f"bad_{what}", f"{what} option of {len(value)} bytes, not 4")
    return int.from_bytes(value, "big")


class Outgoing(Record):
    """A message to send from UDP port 68 to `dst_ip` port 67, with `src_ip` as source."""

    __slots__ = ("dst_ip", "payload", "src_ip")

    def __init__(self, payload: bytes, src_ip: bytes, dst_ip: bytes) -> None:
        self.payload = payload
        self.src_ip = src_ip
        self.dst_ip = dst_ip


# --- the state machine ---------------------------------------------------------------------

INIT = "INIT"
SELECTING = "SELECTING"
REQUESTING = "REQUESTING"
BOUND = "BOUND"
RENEWING = "RENEWING"
REBINDING = "REBINDING"

# (state, event) -> (next state, what is sent). RFC 2131 figure 5, without INIT-REBOOT.
TRANSITIONS = {
    (INIT, "start"): (SELECTING, "DISCOVER, broadcast"),
    (SELECTING, "offer"): (REQUESTING, "REQUEST for the offer, broadcast"),
    (SELECTING, "timeout"): (SELECTING, "DISCOVER again"),
    (REQUESTING, "ack"): (BOUND, "nothing: configure the lease"),
    (REQUESTING, "nak"): (SELECTING, "DISCOVER"),
    (REQUESTING, "timeout"): (REQUESTING, "REQUEST again"),
    (REQUESTING, "give_up"): (SELECTING, "DISCOVER"),
    (BOUND, "t1"): (RENEWING, "REQUEST, unicast to the server"),
    (RENEWING, "ack"): (BOUND, "nothing: the lease is extended"),
    (RENEWING, "nak"): (SELECTING, "DISCOVER"),
    (RENEWING, "timeout"): (RENEWING, "REQUEST again"),
    (RENEWING, "t2"): (REBINDING, "REQUEST, broadcast"),
    (REBINDING, "ack"): (BOUND, "nothing: the lease is extended"),
    (REBINDING, "nak"): (SELECTING, "DISCOVER"),
    (REBINDING, "timeout"): (REBINDING, "REQUEST again"),
    (REBINDING, "expire"): (SELECTING, "DISCOVER"),
}
REQUEST_TRIES = 4  # REQUESTs for one offer before starting over (RFC 2131 4.4.1)
RENEW_MIN_INTERVAL = 60.0  # RFC 2131 4.4.5: retransmit in RENEWING/REBINDING no faster


class DhcpClient:
    """The client for one interface (its MAC). See the module docstring for the calls."""

    def __init__(
        self,
        mac: bytes,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        counters: Counters | None = None,
        initial_interval: float = 4.0,
        max_interval: float = 64.0,
        hostname: str | None = None,
    ) -> None:
        """initial_interval: the first retransmission delay (RFC 2131: 4 s, doubled each time
        up to max_interval 64 s, each randomized by +-1 s)."""
        self.mac = mac
        self.random_bytes = random_bytes
        self.counters = counters if counters is not None else Counters()
        self.initial_interval = initial_interval
        self.max_interval = max_interval
        self.hostname = hostname
        self.state = INIT
        self.lease: Lease | None = None
        self._xid = 0
        self._offer: DhcpMessage | None = None
        self._offer_server = ANY
        self._started = 0.0
        self._tries = 0
        self._deadline: float | None = None  # the next retransmission
        self._outbox: list[Outgoing] = []
        self._new_leases: list[Lease] = []

    # --- the stack's calls --------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin: DISCOVER. Calling it again while running does nothing."""
        if self.state == INIT:
            self._move("start")
            self._discover(now)

    def receive(self, payload: bytes, now: float) -> None:
        """A UDP payload that came to port 68 from port 67. Never raises for bad input."""
        try:
            message = DhcpMessage.parse(payload)
        except DhcpError as e:
            self.counters.inc(f"dhcp__{e.reason}__drop")
            return
        if message.op != BOOTREPLY or message.xid != self._xid or message.chaddr != self.mac:
            self.counters.inc("dhcp__not_ours__drop")
            return
        kind = message.message_type
        server = message.options.get(OPT_SERVER_ID, b"")
        name = MESSAGE_NAMES.get(kind, str(kind))
        if len(server) != 4:
            self.counters.inc(f"dhcp__{name}_without_server_id__drop")
            return
        if self.state == SELECTING and kind == OFFER:
            if not is_unicast(message.yiaddr):
                self.counters.inc("dhcp__offer_bad_address__drop")
                return
            self.counters.inc("dhcp__offer__accept")
            self._offer, self._offer_server = message, server
            self._move("offer")
            self._tries = 0
            self._request(now)
        elif self.state in (REQUESTING, RENEWING, REBINDING) and kind == ACK:
            if self.state == REQUESTING and server != self._offer_server:
                self.counters.inc("dhcp__ack_other_server__drop")
                return
            try:
                lease = Lease.from_ack(message, server, now)
            except DhcpError as e:
                self.counters.inc(f"dhcp__{e.reason}__drop")
                return
            self.counters.inc("dhcp__ack__bind")
            self._move("ack")
            self.lease = lease
            self._new_leases.append(lease)
            self._deadline = None
        elif self.state in (REQUESTING, RENEWING, REBINDING) and kind == NAK:
            if self.state == REQUESTING and server != self._offer_server:
                self.counters.inc("dhcp__nak_other_server__drop")
                return
            self.counters.inc("dhcp__nak__restart")
            self._move("nak")
            self.lease = None
            self._discover(now)
        else:
            self.counters.inc(f"dhcp__{name}_in_{self.state.lower()}__drop")

    def timers(self, now: float) -> None:
        """Retransmit, and move on at T1, T2 and expiry, as due at `now`."""
        lease = self.lease
        if self.state == BOUND and lease is not None and now >= lease.t1:
            self._move("t1")
            self.counters.inc("dhcp__t1__renew")
            self._renew(now)
        elif self.state == RENEWING and lease is not None and now >= lease.t2:
            self._move("t2")
            self.counters.inc("dhcp__t2__rebind")
            self._renew(now)
        elif self.state == REBINDING and lease is not None and now >= lease.expires:
            self._move("expire")
            self.counters.inc("dhcp__lease__expire")
            self.lease = None
            self._discover(now)
        elif self._deadline is not None and now >= self._deadline:
            if self.state == SELECTING:
                self._move("timeout")
                self.counters.inc("dhcp__discover__retransmit")
                self._send_discover(now)
            elif self.state == REQUESTING:
                if self._tries >= REQUEST_TRIES:
                    self._move("give_up")
                    self.counters.inc("dhcp__request__give_up")
                    self._discover(now)
                else:
                    self._move("timeout")
                    self.counters.inc("dhcp__request__retransmit")
                    self._request(now)
            elif self.state in (RENEWING, REBINDING):
                self._move("timeout")
                self.counters.inc("dhcp__renew__retransmit")
                self._renew(now)

    def next_deadline(self) -> float | None:
        """When timers() next has work, or None."""
        lease = self.lease
        if self.state == BOUND and lease is not None:
            return lease.t1 if lease.t1 != float("inf") else None
        times = [t for t in (self._deadline,) if t is not None]
        if lease is not None:
            times.append(lease.t2 if self.state == RENEWING else lease.expires)
        return min(times, default=None)

    def messages_to_send(self) -> list[Outgoing]:
        out, self._outbox = self._outbox, []
        return out

    def leases(self) -> list[Lease]:
        """Leases bound since the last call (the first one, and each renewal): apply them."""
        out, self._new_leases = self._new_leases, []
        return out

    # --- sending ------------------------------------------------------------------------

    def _move(self, event: str) -> None:
        self.state = TRANSITIONS[(self.state, event)][0]

    def _discover(self, now: float) -> None:
        self._xid = int.from_bytes(self.random_bytes(4), "big")
        self._started = now
        self._tries = 0
        self._offer = None
        self._send_discover(now)

    def _send_discover(self, now: float) -> None:
        self._emit(DISCOVER, now, {}, ANY, LIMITED_BROADCAST, broadcast=True)
        self._backoff(now)

    def _request(self, now: float) -> None:
        offer = self._offer
        assert offer is not None
        options = {OPT_REQUESTED_IP: offer.yiaddr, OPT_SERVER_ID: self._offer_server}
        self._emit(REQUEST, now, options, ANY, LIMITED_BROADCAST, broadcast=True)
        self._backoff(now)

    def _renew(self, now: float) -> None:
        lease = self.lease
        assert lease is not None
        if self.state == RENEWING:
            self._xid = int.from_bytes(self.random_bytes(4), "big")
            self._started = now
            dst, until = lease.server, lease.t2
        else:
            dst, until = LIMITED_BROADCAST, lease.expires
        # RFC 2131 4.4.5: ciaddr is our address, and no requested-IP or server-id option.
        self._emit(REQUEST, now, {}, lease.address, dst, broadcast=False, ciaddr=lease.address)
        self._deadline = min(now + max(RENEW_MIN_INTERVAL, (until - now) / 2), until)

    def _backoff(self, now: float) -> None:
        interval = min(self.initial_interval * 2**self._tries, self.max_interval)
        self._tries += 1
        # +-1 s (scaled down with short test intervals) so clients that booted together spread.
        spread = min(1.0, interval / 4)
        jitter = (int.from_bytes(self.random_bytes(2), "big") / 65535 * 2 - 1) * spread
        self._deadline = now + interval + jitter

    def _emit(
        self,
        kind: int,
        now: float,
        extra: dict[int, bytes],
        src_ip: bytes,
        dst_ip: bytes,
        *,
        broadcast: bool,
        ciaddr: bytes = ANY,
    ) -> None:
        options = {
            OPT_MESSAGE_TYPE: bytes((kind,)),
            OPT_CLIENT_ID: bytes((HTYPE_ETHERNET,)) + self.mac,
            OPT_MAX_SIZE: MAX_MESSAGE.to_bytes(2, "big"),
            **extra,
            OPT_PARAMETERS: PARAMETERS,
        }
        if self.hostname:
            options[OPT_HOSTNAME] = self.hostname.encode("ascii", "replace")
        message = DhcpMessage(
            BOOTREQUEST,
            self._xid,
            self.mac,
            options,
            secs=min(int(now - self._started), 0xFFFF),
            # Without an address we cannot take unicast replies to it: ask for broadcast.
            flags=FLAG_BROADCAST if broadcast else 0,
            ciaddr=ciaddr,
        )
        self._outbox.append(Outgoing(message.serialize(), src_ip, dst_ip))
        self.counters.inc(f"dhcp__{MESSAGE_NAMES[kind]}__send")
