"""A service failing again and again backs off; an up instance of a moved image tag is
renewed once idle of connections; the app's own accepts count as warm requests."""

from __future__ import annotations

import asyncio
import time

import pytest
from fakes import FakeInstance
from test_gateway_handoff import AppLauncher, served, until
from test_gateway_service import fetch, run, serve

from summon.gateway import backoff
from summon.gateway.config import ServiceConfig
from summon.gateway.service import RENEW, Service, State
from summon.gateway.status import page
from summon.targets.base import Instance, PortForward

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Crashing:
    """Instances whose app dies (status 3) soon after it starts, before it answers; with
    healthy set, ones that answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False

    def __call__(
        self, config: ServiceConfig, forwards: tuple[PortForward, ...], name: str
    ) -> Instance:
        self.calls += 1
        if self.healthy:
            return FakeInstance(serve_port=forwards[0].host_port)
        return FakeInstance(code=3, runs_for=0.2)


async def answer(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_a_service_that_keeps_dying_backs_off_with_503_and_a_success_ends_it() -> None:
    """It booted once per connection, with no pause: each client cost a whole boot."""

    async def main() -> None:
        launcher = Crashing()
        svc = Service(ServiceConfig("web", "x"), "127.0.0.1", launcher)
        listener, port = await serve(svc)
        try:
            for _ in range(2):  # the first failure is retried at once; the second backs off
                assert await answer(port) == b""
                await until(lambda: svc.state == State.FAILED)
            assert launcher.calls == 2 and svc.backoff.left(time.monotonic()) > 0
            said = await answer(port)
            assert said.startswith(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n")
            assert said.endswith(b"service web keeps failing; next boot in 1 s\n")
            svc.trigger()  # a DNS query boots nothing meanwhile
            await asyncio.sleep(0.1)
            assert launcher.calls == 2
            shown = svc.snapshot()
            assert shown["backoff_seconds"] > 0
            assert "backing off: next boot in" in page([shown])
            # The wait is over; the app now answers, and the streak ends with that answer.
            svc.backoff.until = 0.0
            launcher.healthy = True
            assert (await answer(port)).startswith(b"HTTP/1.0 200")
            assert launcher.calls == 3 and svc.backoff.streak == 0
        finally:
            listener.close()
            await svc.stop()

    run(main())


def test_the_wait_doubles_up_to_a_bound() -> None:
    b = backoff.Backoff()
    waits = [b.failed(100.0) for _ in range(10)]
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    b.ok()
    assert b.left(100.0) == 0.0 and b.failed(100.0) == 0.0


def test_an_up_instance_of_a_moved_image_tag_restarts_on_the_new_one_once_idle() -> None:
    """It kept running the old image until it went idle (a frozen one was replaced)."""

    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        moved = {"digest": "sha256:a"}

        def changed(config: ServiceConfig, digest: str) -> bool:
            return digest != moved["digest"]

        async with served(ServiceConfig("web", "x"), launcher, image_changed=changed) as (
            svc,
            port,
        ):
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            assert svc.due_tier(time.monotonic()) is None
            moved["digest"] = launcher.digest = "sha256:b"  # a build moved the tag
            assert svc.due_tier(time.monotonic()) == RENEW
            old = launcher.instances[0]
            old.busy = 1  # the app still serves a connection: it stays
            await svc.step_down(RENEW)
            assert svc.state == State.UP and not old.stopped and launcher.calls == 1
            old.busy = 0
            await until(lambda: svc.snapshot()["listeners_shared"])
            await svc.step_down(RENEW)
            assert old.stopped
            await until(lambda: svc.state == State.UP and launcher.calls == 2)
            assert svc.image_digest == "sha256:b"  # booted at once, not at the next client
            assert (await fetch(port)).endswith(b"by fd\n")
            assert launcher.served_by[-1] == 2

    run(main())


def test_an_open_spliced_connection_holds_off_the_renewal() -> None:
    svc = Service(ServiceConfig("web", "x"), "127.0.0.1", lambda c, f, n: FakeInstance())
    svc.state, svc.instance, svc.image_digest = State.UP, FakeInstance(), "sha256:a"
    svc.image_changed = lambda config, digest: True
    svc.open = 1
    assert svc.due_tier(time.monotonic()) is None
    svc.open = 0
    assert svc.due_tier(time.monotonic()) == RENEW
    svc.instance.stop()
