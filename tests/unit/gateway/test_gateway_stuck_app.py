"""An app that serves its port and then takes no more connections (hung, or one that stopped
reading its end of the hand-off channel): the gateway must not hold its clients forever."""

from __future__ import annotations

import asyncio
import socket

from fakes import FakeInstance
from test_gateway_handoff import until
from test_gateway_service import run, serve

from summon.gateway import sharing
from summon.gateway.config import ServiceConfig
from summon.gateway.handoff import Channel
from summon.gateway.launched import Launched
from summon.gateway.service import Service, State
from summon.runtime.handoff import listening_message
from summon.targets.base import PortForward


class StuckLauncher:
    """An "app" that says it serves its port, then never reads its end of the channel."""

    def __init__(self) -> None:
        self.app_ends: list[socket.socket] = []
        self.channels: list[Channel] = []

    def __call__(
        self, config: ServiceConfig, forwards: tuple[PortForward, ...], name: str
    ) -> Launched:
        channel, app_end = Channel.pair(2)
        # The kernel's least send buffer: a few connections fill it (the gateway's 4 MiB
        # takes thousands, as many files as the test would need to fill it).
        channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        app_end.send(listening_message(config.ports[0]))  # the boot is done
        self.app_ends.append(app_end)
        self.channels.append(channel)
        return Launched(FakeInstance(), channel, "sha256:a")


def test_clients_of_an_app_that_takes_no_connection_are_closed_not_held_forever() -> None:
    """Rule (gateway/handoff.py, Channel.send): a connection waits at most boot_timeout for
    the app to take it. The channel holds what its send buffer takes of unread connections;
    every later one the gateway held, and its file, until the app read again:
    a hung app with its clients retrying filled the budget of held connections, and every
    other service's new connections waited in their backlogs."""

    async def main() -> None:
        launcher = StuckLauncher()
        svc = Service(ServiceConfig("web", "x", boot_timeout=0.5), "127.0.0.1", launcher)
        listener, port = await serve(svc)
        held_before = sharing.budget.held

        async def client() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            try:
                return await reader.read()  # EOF: the gateway closed it
            finally:
                writer.close()

        try:
            # More than the channel's queue takes: those wait in the kernel for the app.
            clients = [asyncio.ensure_future(client()) for _ in range(40)]
            # Before, the ones past the channel's buffer waited without end.
            await until(lambda: sum(t.done() for t in clients) >= 20 and svc.open == 0, 10)
            done = [t for t in clients if t.done()]
            pending = [t for t in clients if not t.done()]
            assert svc.state == State.UP
            assert all(task.result() == b"" for task in done)  # closed, not answered
            assert sharing.budget.held == held_before
            assert launcher.channels[0].stuck >= len(done)
            for task in pending:  # queued in the channel: the app's own, until it reads
                task.cancel()
        finally:
            listener.close()
            await svc.stop()
            for end in launcher.app_ends:
                end.close()

    run(main())
