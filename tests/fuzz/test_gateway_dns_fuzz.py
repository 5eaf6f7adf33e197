"""The gateway's DNS query parser and server, fuzzed: parse it or raise DnsFormatError.

Inputs are arbitrary bytes and mutations of real queries (dnspython's); whatever parses is
answered by the zone without raising, and the answer to a QUERY is a message dnspython
reads (it reads other opcodes, UPDATE for one, by their own layouts).
"""

from __future__ import annotations

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.gateway import dnswire
from summon.gateway.dns import Zone

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [
    dns.message.make_query(name, rdtype).to_wire()
    for name, rdtype in (
        ("http.summon.test.", "A"),
        ("summon.test.", "SOA"),
        ("x.y.summon.test.", "AAAA"),
        ("example.com.", "A"),
    )
]
ZONE = Zone("summon.test.", {"http": "127.1.2.3"}.get)


def mutate(seed: bytes, at: int, value: int, cut: int) -> bytes:
    data = bytearray(seed)
    data[at % len(data)] = value
    return bytes(data[: max(0, len(data) - cut)])


def check(wire: bytes) -> None:
    try:
        query = dnswire.parse_query(wire)
    except dnswire.DnsFormatError:
        return
    reply = ZONE.answer(query)
    if reply is not None and query.questions == 1 and query.opcode == 0:
        dns.message.from_wire(reply, question_only=True)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(wire: bytes) -> None:
    check(wire)


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 299), st.integers(0, 255), st.integers(0, 20))
def test_mutated_queries(seed: bytes, at: int, value: int, cut: int) -> None:
    check(mutate(seed, at, value, cut))
