"""The DHCP client against a scripted server, on virtual time: the exchange, retransmission,
renewal at T1, rebinding at T2, expiry, NAK; and its parser (two steps; fuzzed in tests/fuzz)."""

from __future__ import annotations

import itertools

import pytest

from summon.net.dhcp import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    BOUND,
    DISCOVER,
    NAK,
    OFFER,
    OPT_DNS,
    OPT_LEASE_TIME,
    OPT_REQUESTED_IP,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_T1,
    OPT_T2,
    REBINDING,
    RENEWING,
    REQUEST,
    REQUESTING,
    SELECTING,
    TRANSITIONS,
    DhcpClient,
    DhcpIntegrityError,
    DhcpMessage,
    DhcpSanityError,
    Outgoing,
)
from summon.net.ipv4 import ANY, LIMITED_BROADCAST

MAC = b"\x02\x00\x00\x00\x00\x07"
SERVER = bytes((192, 0, 2, 1))
OFFERED = bytes((192, 0, 2, 50))


_COUNTER = itertools.count(1)


def counter_random(n: int) -> bytes:
    return next(_COUNTER).to_bytes(n, "big")  # distinct xids; the jitter they give is ~-1 s


def reply(request: DhcpMessage, kind: int, *, lease: int = 600, **extra: bytes) -> bytes:
    options = {
        53: bytes((kind,)),
        OPT_SERVER_ID: SERVER,
        OPT_LEASE_TIME: lease.to_bytes(4, "big"),
        OPT_SUBNET_MASK: bytes((255, 255, 255, 0)),
        OPT_ROUTER: SERVER,
        OPT_DNS: SERVER + bytes((192, 0, 2, 2)),
    }
    options.update({int(k.removeprefix("o")): v for k, v in extra.items()})
    return DhcpMessage(
        BOOTREPLY, request.xid, request.chaddr, options, yiaddr=OFFERED, siaddr=SERVER
    ).serialize()


def sent(client: DhcpClient) -> list[tuple[DhcpMessage, Outgoing]]:
    return [(DhcpMessage.parse(o.payload), o) for o in client.messages_to_send()]


def bound_client(now: float = 0.0, **lease: bytes) -> DhcpClient:
    client = DhcpClient(MAC, random_bytes=counter_random)
    client.start(now)
    ((discover, _),) = sent(client)
    client.receive(reply(discover, OFFER), now)
    ((request, _),) = sent(client)
    client.receive(reply(request, ACK, **lease), now)
    assert client.state == BOUND
    assert len(client.leases()) == 1
    return client


def test_discover_offer_request_ack_binds_a_lease() -> None:
    client = DhcpClient(MAC, random_bytes=counter_random)
    client.start(10.0)
    ((discover, out),) = sent(client)
    assert (out.src_ip, out.dst_ip) == (ANY, LIMITED_BROADCAST)
    assert discover.op == BOOTREQUEST and discover.message_type == DISCOVER
    assert discover.chaddr == MAC and discover.flags & 0x8000  # replies must be broadcast
    assert client.state == SELECTING

    client.receive(reply(discover, OFFER), 10.5)
    ((request, out),) = sent(client)
    assert request.message_type == REQUEST and request.xid == discover.xid
    assert request.options[OPT_REQUESTED_IP] == OFFERED
    assert request.options[OPT_SERVER_ID] == SERVER
    assert out.dst_ip == LIMITED_BROADCAST and client.state == REQUESTING

    client.receive(reply(request, ACK), 10.6)
    (lease,) = client.leases()
    assert client.state == BOUND and client.leases() == []
    assert (lease.address, lease.prefix_len, lease.gateway) == (OFFERED, 24, SERVER)
    assert lease.nameservers == (SERVER, bytes((192, 0, 2, 2)))
    assert (lease.t1, lease.t2, lease.expires) == (310.6, 10.6 + 525, 610.6)
    assert client.next_deadline() == lease.t1
    assert client.counters["dhcp__ack__bind"] == 1


def test_discover_is_retransmitted_with_exponential_backoff() -> None:
    client = DhcpClient(MAC, random_bytes=lambda n: b"\x80" * n)  # jitter ~0
    client.start(0.0)
    sent(client)
    times = []
    now = 0.0
    for _ in range(6):
        deadline = client.next_deadline()
        assert deadline is not None
        now = deadline
        client.timers(now)
        ((message, _),) = sent(client)
        assert message.message_type == DISCOVER
        times.append(round(now))
    assert times == [4, 12, 28, 60, 124, 188]  # 4, 8, 16, 32, 64, 64 (RFC 2131 4.1)
    assert client.counters["dhcp__discover__retransmit"] == 6


def test_unanswered_requests_start_over_with_a_new_discover() -> None:
    client = DhcpClient(MAC, random_bytes=counter_random, initial_interval=1.0)
    client.start(0.0)
    ((discover, _),) = sent(client)
    client.receive(reply(discover, OFFER), 0.0)
    sent(client)  # the first REQUEST
    kinds = []
    for _ in range(5):
        deadline = client.next_deadline()
        assert deadline is not None
        client.timers(deadline)
        kinds += [m.message_type for m, _ in sent(client)]
    assert kinds[:4] == [REQUEST, REQUEST, REQUEST, DISCOVER]
    assert client.counters["dhcp__request__give_up"] == 1


def test_renewal_at_t1_is_unicast_and_rebinding_at_t2_broadcast() -> None:
    client = bound_client()
    lease = client.lease
    assert lease is not None
    client.timers(lease.t1 - 0.001)
    assert sent(client) == []
    client.timers(lease.t1)
    ((renew, out),) = sent(client)
    assert client.state == RENEWING
    assert (out.src_ip, out.dst_ip) == (OFFERED, SERVER)
    assert renew.ciaddr == OFFERED and OPT_REQUESTED_IP not in renew.options
    assert OPT_SERVER_ID not in renew.options and not renew.flags & 0x8000

    # No answer: retransmitted no faster than every 60 s, then rebinding at T2.
    deadline = client.next_deadline()
    assert deadline is not None and deadline >= lease.t1 + 60
    client.timers(lease.t2)
    ((rebind, out),) = sent(client)
    assert client.state == REBINDING and out.dst_ip == LIMITED_BROADCAST
    assert out.src_ip == OFFERED

    client.receive(reply(rebind, ACK, lease=1200), lease.t2 + 1)
    (renewed,) = client.leases()
    assert client.state == BOUND and renewed.expires == lease.t2 + 1 + 1200


def test_a_lease_that_runs_out_starts_over() -> None:
    client = bound_client()
    lease = client.lease
    assert lease is not None
    client.timers(lease.t1)
    client.timers(lease.t2)
    sent(client)
    client.timers(lease.expires)
    ((message, out),) = sent(client)
    assert message.message_type == DISCOVER and out.src_ip == ANY
    assert client.state == SELECTING and client.lease is None
    assert client.counters["dhcp__lease__expire"] == 1


def test_t1_and_t2_options_are_honoured_and_kept_in_order() -> None:
    client = bound_client(o58=(100).to_bytes(4, "big"), o59=(200).to_bytes(4, "big"))
    assert client.lease is not None
    assert (client.lease.t1, client.lease.t2) == (100, 200)
    odd = bound_client(o58=(500).to_bytes(4, "big"), o59=(400).to_bytes(4, "big"))
    assert odd.lease is not None
    assert odd.lease.t1 == 300 and odd.lease.t2 == 400  # T1 > T2: T1 falls back to half
    _ = (OPT_T1, OPT_T2)


def test_nak_restarts_and_foreign_replies_are_dropped() -> None:
    client = DhcpClient(MAC, random_bytes=counter_random)
    client.start(0.0)
    ((discover, _),) = sent(client)
    other = DhcpMessage(BOOTREPLY, discover.xid + 1, MAC, {53: bytes((OFFER,)), 54: SERVER})
    client.receive(other.serialize(), 0.1)
    assert client.counters["dhcp__not_ours__drop"] == 1
    client.receive(reply(discover, ACK), 0.1)  # an ACK while selecting
    assert client.counters["dhcp__ack_in_selecting__drop"] == 1
    client.receive(reply(discover, OFFER), 0.2)
    ((request, _),) = sent(client)
    client.receive(reply(request, NAK), 0.3)
    ((again, _),) = sent(client)
    assert again.message_type == DISCOVER and again.xid != discover.xid
    assert client.state == SELECTING
    assert client.counters["dhcp__nak__restart"] == 1


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({OPT_SUBNET_MASK: bytes((255, 0, 255, 0))}, "bad_subnet_mask"),
        ({OPT_ROUTER: b"\x01\x02\x03"}, "bad_router"),
        ({OPT_LEASE_TIME: b"\x01"}, "bad_lease_time"),
        ({26: b"\x00\x10"}, "bad_mtu"),
    ],
)
def test_an_ack_with_broken_options_binds_nothing(options: dict[int, bytes], reason: str) -> None:
    client = DhcpClient(MAC, random_bytes=counter_random)
    client.start(0.0)
    ((discover, _),) = sent(client)
    client.receive(reply(discover, OFFER), 0.0)
    ((request, _),) = sent(client)
    client.receive(reply(request, ACK, **{f"o{k}": v for k, v in options.items()}), 0.0)
    assert client.state == REQUESTING
    assert client.counters[f"dhcp__{reason}__drop"] == 1


def test_parser_checks_integrity_then_sanity() -> None:
    good = DhcpMessage(BOOTREPLY, 7, MAC, {53: bytes((OFFER,)), 54: SERVER}).serialize()
    assert DhcpMessage.parse(good).xid == 7
    with pytest.raises(DhcpIntegrityError, match="< fixed part"):
        DhcpMessage.parse(good[:200])
    with pytest.raises(DhcpIntegrityError) as e:
        DhcpMessage.parse(good[:236] + b"\0\0\0\0" + good[240:])
    assert e.value.reason == "bad_cookie"
    with pytest.raises(DhcpIntegrityError) as e:
        DhcpMessage.parse(good[:240] + b"\x35\x09\x02")
    assert e.value.reason == "bad_option"
    with pytest.raises(DhcpSanityError) as e:
        DhcpMessage.parse(good[:240] + b"\xff")
    assert e.value.reason == "bad_message_type"
    assert str(e.value).startswith("dhcp: message type option missing")


def test_long_options_are_split_and_joined_again() -> None:
    message = DhcpMessage(BOOTREQUEST, 1, MAC, {53: bytes((DISCOVER,)), 77: bytes(600)})
    assert DhcpMessage.parse(message.serialize()).options[77] == bytes(600)


def test_transition_table_covers_every_state() -> None:
    states = {s for s, _ in TRANSITIONS} | {t for t, _ in TRANSITIONS.values()}
    assert states == {"INIT", SELECTING, REQUESTING, BOUND, RENEWING, REBINDING}
