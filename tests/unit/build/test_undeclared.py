"""The sockets a recording run's app listens on, read from its /proc/PID/net tables."""

from __future__ import annotations

import os
import socket
import time

from summon.build import undeclared


def test_listening_sockets_of_both_families_wildcards_reached_on_loopback() -> None:
    with socket.socket() as v4, socket.socket() as any4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        any4.bind(("0.0.0.0", 0))
        any4.listen()
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::", 0))
        v6.listen()
        with socket.socket() as bound_only:  # bound, not listening: no server
            bound_only.bind(("127.0.0.1", 0))
            found = undeclared.listening(os.getpid())
            assert ("127.0.0.1", bound_only.getsockname()[1]) not in found
        assert ("127.0.0.1", v4.getsockname()[1]) in found
        assert ("127.0.0.1", any4.getsockname()[1]) in found  # 0.0.0.0: reached on lo
        assert ("::1", v6.getsockname()[1]) in found


def test_the_tables_address_form() -> None:
    # /proc/net/tcp writes each 32-bit word in host order: 127.0.0.1 is 0100007F here.
    assert str(undeclared._address("0100007F")) == "127.0.0.1"
    assert str(undeclared._address("00000000000000000000000001000000")) == "::1"
    assert undeclared._address("zz") is None and undeclared._address("0100") is None


def test_a_process_gone_or_never_listening_gives_nothing_in_time() -> None:
    assert undeclared.listening(2**22 + 1) == []  # above pid_max: no such process
    began = time.monotonic()
    assert undeclared.wait_listening(2**22 + 1, 5.0, alive=lambda: False) == []
    assert time.monotonic() - began < 1  # an app that ended is not waited for


class _Instance:
    """What the recording run's drive sees of an instance: its pid, the listeners handed to
    it (none: a script binds its own), whether it still runs."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.handed = None

    def wait(self, timeout: float) -> int | None:
        return None


def test_the_crawl_leaves_out_a_port_the_app_opens_per_transfer() -> None:
    """pyftpdlib's passive ports (listed so -p can publish them) are listened on only during
    a transfer: the recording run's crawl waited 20 s on each (43 s for four). Once the app
    listens, each of its own ports says whether it listens now."""
    from summon.build.syscalls import own_listeners
    from summon.targets.base import PortForward

    with socket.socket() as control, socket.socket() as spare:
        control.bind(("127.0.0.1", 0))
        control.listen()
        spare.bind(("127.0.0.1", 0))  # bound, never listening: a passive port's number
        served = PortForward(0, control.getsockname()[1], "tcp")
        passive = PortForward(0, spare.getsockname()[1], "tcp")
        dns = PortForward(0, 53, "udp")
        own = own_listeners(_Instance(), [served, passive, dns], timeout=5.0)
        assert set(own) == {served, passive}
        assert own[served]() and not own[passive]()
        spare.listen()  # a transfer opens it
        assert own[passive]()
