"""The gateway's listeners under a flood: held clients bounded by its file limit."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys

import pytest
from test_gateway_service import free_port, run

from summon.gateway import sharing
from summon.gateway.sharing import Listeners, listen


def test_held_clients_stop_at_the_budget_and_the_rest_wait_in_the_backlog(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the budget (the file limit less a reserve for boots) the gateway leaves new
    clients in the kernel's backlog: a flood of held clients once took every file, and the
    boot they waited for then failed for want of a pipe, closing all of them."""
    monkeypatch.setattr(sharing.budget, "limit", lambda: 3)
    taken: list[socket.socket] = []

    def hold(conn: socket.socket, port: int, peer: object) -> None:
        taken.append(conn)
        sharing.budget.held += 1

    async def main() -> None:
        port = free_port("127.0.0.1")
        listeners = Listeners({80: listen("127.0.0.1", port)}, hold)
        listeners.watch()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            await asyncio.sleep(0.3)
            assert len(taken) == 3  # the other three are connected, in the backlog
            for conn in taken[:2]:
                conn.close()
            sharing.budget.held -= 2
            await asyncio.sleep(0.3)
            assert len(taken) == 5  # taken as room came free, without a new connection
        finally:
            listeners.close()
            for sock in (*clients, *taken):
                sock.close()
            sharing.budget.held -= 5 - 2

    with caplog.at_level(logging.WARNING, logger="summon.gateway.sharing"):
        run(main())
    assert sharing.budget.held == 0
    full = [r for r in caplog.records if "the most the file limit allows" in r.message]
    assert len(full) == 2  # once each time it filled up, not once per wake-up


def test_the_budget_keeps_a_reserve_below_the_file_limit() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert sharing.budget.limit() == max(64, soft - sharing.RESERVE_FDS)


def test_the_gateway_raises_its_soft_file_limit_to_the_hard_one() -> None:
    """1024, the usual soft limit, is for select(): the gateway's loop uses epoll."""
    script = (
        "import resource\n"
        "from summon.gateway.sharing import raise_file_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))\n"
        "raise_file_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.split() == ["2048", "2048"], out.stderr


@pytest.mark.parametrize("shared", [False, True])
def test_a_listener_the_app_shut_down_is_listened_on_anew(
    shared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule: the service's address and port stay the gateway's. An app given the listening
    socket (shared) keeps a copy; its shutdown(SHUT_RD) stops the listener for every holder
    and gives its port back, and listen() again took a random port: the service was refused
    for good (until the gateway restarted), its status "up" or "down" with no error. Now
    the gateway listens there anew when it takes the listener back (shared) or when accept
    fails (watched), and the log names the service."""
    taken: list[socket.socket] = []

    async def main() -> None:
        port = free_port("127.0.0.1")
        first = listen("127.0.0.1", port)
        listeners = Listeners({80: first}, lambda c, p, peer: taken.append(c), service="web")
        listeners.watch()
        app_copy = socket.socket(fileno=os.dup(first.fileno()))
        try:
            if shared:
                listeners.unwatch()
                listeners.shared = True
            app_copy.shutdown(socket.SHUT_RD)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port)).close()
            if shared:
                await listeners.take_back(None)  # the instance is gone (or let go)
            else:
                await asyncio.sleep(0.3)  # the loop sees it, accept fails, and it is renewed
            client = socket.create_connection(("127.0.0.1", port))
            await asyncio.sleep(0.2)
            client.close()
            assert len(taken) == 1
            assert listeners.sockets[80] is not first and first.fileno() == -1
        finally:
            listeners.close()
            app_copy.close()
            for conn in taken:
                conn.close()

    with caplog.at_level(logging.WARNING, logger="summon.gateway.sharing"):
        run(main())
    said = [r.getMessage() for r in caplog.records if "shut the listener" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("service web: its app shut the listener on "), said
    assert said[0].endswith("listening there anew"), said
