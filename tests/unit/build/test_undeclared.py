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
