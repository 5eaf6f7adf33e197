"""Which forwards a sandbox hands to its app as listening sockets, and what the app is told."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from summon.targets.base import PortForward, PortTaken, RunSpec
from summon.targets.sandbox import listen

TCP80, TCP443, UDP53 = PortForward(8080, 80), PortForward(8443, 443), PortForward(5353, 53, "udp")


# A derived profile without connect(): what a served app's recording run leaves it.
SERVED = ("accept4", "epoll_wait", "recvfrom", "sendto")


def spec(kind: str, network: str = "socket", **kw: Any) -> RunSpec:
    app = {"entry": {"kind": kind}, "ports": ["80/tcp", "53/udp", "443/tcp"]}
    kw.setdefault("syscalls", SERVED)
    return RunSpec(
        name="t", image="t", rootfs=Path("/"), app_config=app,
        network=network, ports=(TCP80, UDP53, TCP443), **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "network", "handed"),
    [
        ("function", "socket", (TCP80, TCP443)),
        # served on the first TCP port; the app's own server on another (a metrics
        # endpoint beside it) binds in the instance, and the forwarder reaches it
        ("asgi", "socket", (TCP80,)),
        ("wsgi", "socket", (TCP80,)),
        ("script", "socket", ()),  # binds its own ports: the forwarder serves them
        ("function", "direct", ()),  # its own stack: only the forwarder reaches it
    ],
)
def test_split(kind: str, network: str, handed: tuple[PortForward, ...]) -> None:
    to_app, forwarded = listen.split(spec(kind, network))
    assert to_app == handed
    assert set(forwarded) == {TCP80, UDP53, TCP443} - set(handed)
    assert UDP53 in forwarded  # a UDP socket is never handed over


@pytest.mark.parametrize(
    "syscalls",
    [
        (*SERVED, "connect"),  # egress (declared), or recorded, or the manifest's syscalls
        None,  # no derived profile: the static list, which allows connect
    ],
)
def test_an_app_that_may_connect_is_handed_no_host_socket(
    syscalls: tuple[str, ...] | None,
) -> None:
    """RunSpec.takes_host_sockets: a connection accepted on a host listener, disconnected by
    connect(AF_UNSPEC) and connected again, reaches anywhere from the host's namespace; such
    an app's ports go through the forwarder, to listeners made in its own namespace."""
    served = spec("wsgi", syscalls=syscalls)
    assert not served.takes_host_sockets
    assert listen.split(served) == ((), (TCP80, UDP53, TCP443))
    assert listen.unpublished(served, ()) == (80,)  # listened on inside, as without -p
    # The build's recording run is the developer's own code, run on the host already.
    assert listen.split(served, record=True) == ((TCP80,), (UDP53, TCP443))


def test_host_sockets_true_in_the_manifest_hands_them_to_an_app_that_may_connect() -> None:
    """The image's own choice (app.json, signed with it): an app that must see its peers'
    real addresses (the Pinata connects back to them) takes the host's reach with them."""
    served = spec("wsgi", syscalls=("read", "connect"))
    served.app_config["host_sockets"] = True
    assert served.takes_host_sockets
    assert listen.split(served) == ((TCP80,), (UDP53, TCP443))
    served.app_config["host_sockets"] = "yes"  # only true itself
    assert not served.takes_host_sockets


def test_environment_names_the_ports_in_fd_order_and_the_channel_after() -> None:
    handed = listen.HandedSockets((TCP80, TCP443), handoff=99)
    assert handed.environment() == {
        "LISTEN_FDS": "2",
        "LISTEN_PID": "1",
        "LISTEN_FDNAMES": "80:443",
        "SUMMON_HANDOFF_FD": "5",
    }
    assert listen.HandedSockets((), handoff=7).environment() == {"SUMMON_HANDOFF_FD": "3"}


def test_open_binds_on_the_host_and_a_taken_port_fails_there() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handed = listen.HandedSockets((PortForward(port, 80),))
    handed.open()
    try:
        assert handed.listeners[0].getsockname() == ("127.0.0.1", port)
        again = listen.HandedSockets((PortForward(port, 80),))
        # Taken since `summon run` checked it: one line, the user's to fix (not a traceback).
        with pytest.raises(PortTaken, match=f"-p 127.0.0.1:{port}: cannot listen there"):
            again.open()
        assert again.listeners == []
    finally:
        handed.close()


def test_bound_names_the_port_a_forward_of_port_0_got() -> None:
    handed = listen.HandedSockets((PortForward(0, 80),))
    handed.open()
    try:
        host, port = handed.bound[PortForward(0, 80)]
        assert host == "127.0.0.1" and port > 0
        assert handed.listeners[0].getsockname()[1] == port
    finally:
        handed.close()
