"""Seeded lossy-link matrix: 1 MB each way arrives byte-exact through loss, reordering,
duplication and corruption, within a bound of virtual time.

Every case also runs duplication (2%), reordering (5%, up to 4x the delay) and one-byte
corruption (2%) on top of its loss rate; corruption must never get past the checksum.
"""

from __future__ import annotations

import random

import pytest
from tcp_path import IPPath, exchange

from summon.net.tcp import TCP, TCPConfig

MB = 1 << 20
# loss -> bound on virtual seconds for the whole exchange (handshake to both closed). Loss is
# per segment in each direction, so at 30% only about half of all round trips succeed, and the
# retransmission timer (RFC 6298: 1 s floor, doubling) dominates.
MATRIX = [(0.0, 30.0), (0.01, 120.0), (0.05, 600.0), (0.10, 2400.0), (0.30, 40000.0)]


def integrity_drops(tcp: TCP) -> int:
    return sum(v for k, v in tcp.counters.matching("tcp__").items()
               if k in ("tcp__bad_checksum__drop", "tcp__bad_data_offset__drop",
                        "tcp__bad_option__drop", "tcp__short_header__drop"))  # fmt: skip


@pytest.mark.parametrize(
    ("loss", "bound"), MATRIX, ids=[f"loss{round(p * 100)}%" for p, _ in MATRIX]
)
@pytest.mark.parametrize("seed", [1, 2])
def test_megabyte_each_way_arrives_byte_exact(loss: float, bound: float, seed: int) -> None:
    rng = random.Random(seed)
    up, down = rng.randbytes(MB), rng.randbytes(MB)
    path = IPPath(
        seed, loss=loss, duplicate=0.02, reorder=0.05, corrupt=0.02, delay=0.005, jitter=0.002
    )
    client, server = path.handshake()
    a, b = exchange(path, client, server, up, down, max_time=bound)

    assert bytes(b.received) == up
    assert bytes(a.received) == down
    assert a.closed == b.closed == "closed"
    assert path.clock.now < bound
    assert path.corrupted_delivered > 0
    assert integrity_drops(path.a) + integrity_drops(path.b) == path.corrupted_delivered
    if loss:
        assert path.lost > 0
        assert path.a.counters["tcp__retransmit"] > 0 and path.b.counters["tcp__retransmit"] > 0


def test_small_buffers_and_small_mss_still_deliver() -> None:
    # Many more segments, a window that closes often (persist probes), scaling off.
    config = TCPConfig(mss=536, send_buffer=8192, receive_buffer=6000, window_scale=False)
    rng = random.Random(7)
    up, down = rng.randbytes(200_000), rng.randbytes(50_000)
    path = IPPath(7, loss=0.05, duplicate=0.02, reorder=0.05, corrupt=0.02,
                  config_a=config, config_b=config)  # fmt: skip
    client, server = path.handshake()
    a, b = exchange(path, client, server, up, down, max_time=3000.0)
    assert bytes(b.received) == up and bytes(a.received) == down
