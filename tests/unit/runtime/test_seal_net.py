"""seal_net.own_loopback: which connect() leaves a script unsealed (docs/sealing.md, point 5).
Only a numeric address of the instance's own loopback: anything the network could answer,
or a name resolved after the audit event, closes the seal."""

from __future__ import annotations

import pytest

from summon.runtime.seal_net import own_loopback


@pytest.mark.parametrize(
    "address",
    [("127.0.0.1", 80), ("127.1.2.3", 8080), ("0.0.0.0", 8080), ("::1", 80, 0, 0),
     ("::", 80, 0, 0), ("::ffff:127.0.0.1", 80, 0, 0)],
)  # fmt: skip
def test_the_instances_own_loopback_is_local(address: tuple[object, ...]) -> None:
    assert own_loopback(address)


@pytest.mark.parametrize(
    "address",
    [("localhost", 80), ("10.0.2.2", 80), ("192.0.2.1", 80), ("127.0.0.256", 80),
     ("127.1", 80), ("127.0.0.1.nip.io", 80), ("::ffff:10.0.0.1", 80, 0, 0), ("fe80::1", 80),
     (b"127.0.0.1", 80), ("\uff11\uff12\uff17.0.0.1", 80), (), "127.0.0.1", None],
)  # fmt: skip
def test_anything_else_is_the_network(address: object) -> None:
    assert not own_loopback(address)
