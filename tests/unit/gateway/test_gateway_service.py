"""A service's state machine with a fake target: coalescing, failures, timeouts, idling."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import REPLY, FakeInstance

from summon.gateway import report
from summon.gateway.config import ServiceConfig, parse
from summon.gateway.server import Gateway
from summon.gateway.service import BootFailed, Service, State
from summon.gateway.sharing import listen
from summon.targets.base import Instance, NotReady, PortForward


class FakeLauncher:
    def __init__(self, delay: float = 0.2, error: str = "") -> None:
        self.delay = delay
        self.error = error
        self.calls = 0
        self.instances: list[FakeInstance] = []

    def __call__(
        self, config: ServiceConfig, forwards: tuple[PortForward, ...], name: str
    ) -> Instance:
        self.calls += 1
        time.sleep(self.delay)
        if self.error:
            raise RuntimeError(self.error)
        inst = FakeInstance(serve_port=forwards[0].host_port)
        self.instances.append(inst)
        return inst


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Listener:
    """The gateway's own way of listening (sharing.py) for one service, on host:port."""

    def __init__(self, service: Service, host: str, port: int) -> None:
        self.service = service
        service.attach({service.config.ports[0]: listen(host, port)})

    def close(self) -> None:
        assert self.service.listeners is not None
        self.service.listeners.close()


async def serve(service: Service, host: str = "127.0.0.1") -> tuple[Listener, int]:
    port = free_port(host)
    return Listener(service, host, port), port


async def fetch(port: int, host: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_fifty_cold_clients_one_boot() -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=0.3)
        svc = Service(ServiceConfig("web", "x"), "127.0.0.1", launcher)
        server, port = await serve(svc)
        try:
            replies = await asyncio.gather(*(fetch(port) for _ in range(50)))
            assert replies == [REPLY] * 50
            assert launcher.calls == 1 and svc.boots == 1
            assert svc.cold == 50 and svc.warm == 0
            assert svc.state == State.UP
            assert svc.last_boot is not None and svc.last_boot >= 0.3
            assert await fetch(port) == REPLY
            assert svc.warm == 1
            await svc.stop()
            assert svc.state == State.DOWN and launcher.instances[0].stopped
        finally:
            server.close()
            await svc.stop()

    run(main())


def test_a_failed_boot_closes_held_connections_and_says_why() -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=0.2, error="image broken:1 not found")
        svc = Service(ServiceConfig("web", "broken:1"), "127.0.0.1", launcher)
        server, port = await serve(svc)
        try:
            t0 = time.monotonic()
            replies = await asyncio.gather(*(fetch(port) for _ in range(5)))
            assert replies == [b""] * 5  # a clean close, not a hang
            assert time.monotonic() - t0 < 2
            assert svc.state == State.FAILED
            assert "broken:1 not found" in svc.reason
            assert launcher.calls == 1 and svc.failures == 1
        finally:
            server.close()

    run(main())


def test_a_boot_on_a_port_the_image_does_not_serve_says_which_port_it_does() -> None:
    """A service without `ports` listens on 80; an image serving 8000 never answers there."""

    class Deaf(FakeInstance):
        def wait_ready(self, ports: tuple[int, ...], timeout: float) -> None:
            raise NotReady(f"the app did not serve port(s) {ports[0]}")

    doc = {"service": [{"name": "web", "image": "api:1"}]}
    config = parse(doc, Path("gateway.toml")).services[0]
    assert config.ports == (80,) and not config.ports_given

    async def main() -> None:
        svc = Service(config, "127.0.0.1", lambda c, f, n: Deaf())
        svc.image_ports = (8000,)  # what the ahead process read of the image
        with pytest.raises(BootFailed) as failed:
            await svc.ensure_up()
        assert str(failed.value).endswith(
            "its image api:1 serves port(s) 8000, the service listens on 80 (the default "
            "without `ports`): set ports = [8000] in the service"
        )
        svc.image_ports = (80, 8000)
        assert (
            report.ports_hint(svc.config, svc.image_ports) == ""
        )  # it serves what the service listens on

    run(main())


def test_boot_timeout_closes_within_the_bound_and_stops_the_late_instance() -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=1.5)
        svc = Service(ServiceConfig("web", "x", boot_timeout=0.5), "127.0.0.1", launcher)
        server, port = await serve(svc)
        try:
            t0 = time.monotonic()
            assert await fetch(port) == b""
            assert 0.4 < time.monotonic() - t0 < 1.4
            assert svc.state == State.FAILED and "boot_timeout" in svc.reason
            await asyncio.sleep(1.5)
            assert launcher.instances and launcher.instances[0].stopped
        finally:
            server.close()

    run(main())


def test_an_app_that_dies_marks_the_service_failed_and_a_new_request_reboots() -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        svc = Service(ServiceConfig("web", "x"), "127.0.0.1", launcher, lambda n: "boom")
        server, port = await serve(svc)
        try:
            assert await fetch(port) == REPLY
            launcher.instances[0].die()
            for _ in range(100):
                if svc.state == State.FAILED:
                    break
                await asyncio.sleep(0.02)
            assert svc.state == State.FAILED and svc.reason.endswith("boom")
            assert await fetch(port) == REPLY  # the next connection boots it again
            assert svc.boots == 2 and launcher.calls == 2
        finally:
            server.close()
            await svc.stop()

    run(main())


def test_an_app_killed_by_sigkill_says_so_not_its_last_console_line() -> None:
    """SIGKILL (the OOM killer, a kill -9) leaves the app no last words: its last console line
    is whatever it printed before (an access log line), not why it died."""

    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        last = '127.0.0.1 - - "GET / HTTP/1.1" 200 17'
        svc = Service(ServiceConfig("web", "x"), "127.0.0.1", launcher, lambda n: last)
        server, port = await serve(svc)
        try:
            assert await fetch(port) == REPLY
            launcher.instances[0].die(137)
            for _ in range(100):
                if svc.state == State.FAILED:
                    break
                await asyncio.sleep(0.02)
            assert svc.state == State.FAILED
            assert "GET /" not in svc.reason
            assert svc.reason == (
                "app exited with status 137: killed by SIGKILL (out of memory, or a kill "
                "from outside)"
            )
        finally:
            server.close()
            await svc.stop()

    run(main())


def stop_slowly(instance: Any) -> tuple[threading.Event, threading.Event]:
    """Make instance.stop wait: (set once it is called, set to let it go on)."""
    stopping, release = threading.Event(), threading.Event()
    real_stop = instance.stop

    def slow_stop(grace: float = 10.0) -> int:
        stopping.set()
        release.wait(20)
        return int(real_stop(grace))

    instance.stop = slow_stop
    return stopping, release


def web_doc(port: int, idle_timeout: str) -> dict[str, Any]:
    """A gateway config (DNS and status on free ports) with one service "web" on `port`."""
    return {
        "gateway": {
            "dns": f"127.0.0.1:{free_port('127.0.0.1')}",
            "status": f"127.0.0.1:{free_port('127.0.0.1')}",
        },
        "service": [{"name": "web", "image": "x", "ports": [port], "idle_timeout": idle_timeout}],
    }


def test_gateway_scales_to_zero_after_idle_and_reloads(tmp_path: Path) -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        port = free_port("127.0.0.1")
        doc = web_doc(port, "0.5s")
        gw = Gateway(parse(doc, tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            svc = gw.services["web"]
            assert await fetch(port, svc.address) == REPLY
            assert svc.state == State.UP
            await asyncio.sleep(1.2)
            assert svc.state == State.DOWN and launcher.instances[0].stopped
            assert await fetch(port, svc.address) == REPLY
            assert svc.boots == 2
            status = {s["name"]: s for s in await gw.snapshot()}
            assert status["web"]["memory_bytes"] == 1234
            # Reload: web removed (its instance stopped), web2 added.
            doc["service"] = [{"name": "web2", "image": "x", "ports": [port]}]
            await gw.reload(parse(doc, tmp_path / "gw.toml"))
            assert list(gw.services) == ["web2"]
            assert launcher.instances[1].stopped
            assert await fetch(port, gw.services["web2"].address) == REPLY
        finally:
            await gw.close()
        assert all(i.stopped for i in launcher.instances)

    run(main())


def test_a_services_port_taken_by_another_program_is_named(tmp_path: Path) -> None:
    # "cannot listen on 127.x.y.z: Address already in use" said which address, not which port.
    async def main() -> None:
        port = free_port("127.0.0.1")
        doc = web_doc(port, "30s")
        config = parse(doc, tmp_path / "gw.toml")
        address = config.addresses()["web"]
        with socket.socket() as taken:
            taken.bind((address, port))
            taken.listen()
            gw = Gateway(config, launcher=FakeLauncher())
            await gw.start()
            try:
                svc = gw.services["web"]
                assert svc.state == State.FAILED
                assert svc.reason == f"cannot listen on {address}:{port}: Address already in use"
            finally:
                await gw.close()

    run(main())


def test_a_service_whose_port_was_taken_listens_once_it_is_free(tmp_path: Path) -> None:
    # It stayed failed for good ("cannot listen on ...: Address already in use"), even after
    # the other program let go of the port, and a SIGHUP of the same file changed nothing.
    async def main() -> None:
        launcher = FakeLauncher()
        port = free_port("127.0.0.1")
        config = parse(web_doc(port, "30s"), tmp_path / "gw.toml")
        address = config.addresses()["web"]
        taken = socket.socket()
        taken.bind((address, port))
        taken.listen()
        gw = Gateway(config, launcher=launcher)
        await gw.start()
        try:
            svc = gw.services["web"]
            assert svc.state == State.FAILED and "Address already in use" in svc.reason
            gw._on_query("web")  # no boot while no one could reach it
            await asyncio.sleep(0.3)
            assert launcher.calls == 0
            taken.close()
            for _ in range(100):
                if svc.state != State.FAILED:
                    break
                await asyncio.sleep(0.05)
            assert svc.state == State.DOWN and svc.reason == ""
            assert await fetch(port, address) == REPLY
        finally:
            taken.close()
            await gw.close()

    run(main())


def test_dns_query_starts_the_boot(tmp_path: Path) -> None:
    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        doc = {
            "gateway": {
                "dns": f"127.0.0.1:{free_port('127.0.0.1')}",
                "status": f"127.0.0.1:{free_port('127.0.0.1')}",
            },
            "service": [{"name": "web", "image": "x", "ports": [free_port("127.0.0.1")]}],
        }
        gw = Gateway(parse(doc, tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            gw._on_query("web")
            for _ in range(100):
                if gw.services["web"].state == State.UP:
                    break
                await asyncio.sleep(0.01)
            assert gw.services["web"].state == State.UP and launcher.calls == 1
        finally:
            await gw.close()

    run(main())


def test_a_client_connecting_while_a_changed_service_reloads_waits_not_refused(
    tmp_path: Path,
) -> None:
    """SIGHUP with a service's settings changed: its old instance stops, the service is set
    up anew. A client connecting meanwhile waits and is served by the new one (it was
    refused: the listener was closed first and opened again after the stop)."""

    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        port = free_port("127.0.0.1")
        doc = web_doc(port, "30s")
        gw = Gateway(parse(doc, tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            address = gw.services["web"].address
            assert await fetch(port, address) == REPLY
            old = launcher.instances[0]
            stopping, release = stop_slowly(old)
            doc["service"][0]["idle_timeout"] = "60s"  # a change: the service restarts
            reload = asyncio.ensure_future(gw.reload(parse(doc, tmp_path / "gw.toml")))
            assert await asyncio.to_thread(stopping.wait, 20)
            client = asyncio.ensure_future(fetch(port, address))  # while the old one stops
            await asyncio.sleep(0.2)
            release.set()
            await reload
            assert await client == REPLY
            assert old.stopped and len(launcher.instances) == 2
            assert gw.services["web"].config.idle_timeout == 60
        finally:
            await gw.close()

    run(main())


def test_reloads_that_overlap_are_applied_one_after_the_other(tmp_path: Path) -> None:
    """SIGHUP twice while the first reload still stops the old instance: the two reloads ran
    at once, the second set the service up on a port the first had just listened on
    ("cannot listen on ...: Address already in use"), and a listener no service owned kept
    the port."""

    async def main() -> None:
        launcher = FakeLauncher(delay=0.05)
        port = free_port("127.0.0.1")
        doc = web_doc(port, "30s")
        gw = Gateway(parse(doc, tmp_path / "gw.toml"), launcher=launcher)
        await gw.start()
        try:
            address = gw.services["web"].address
            assert await fetch(port, address) == REPLY
            old = launcher.instances[0]
            stopping, release = stop_slowly(old)
            doc["service"][0]["idle_timeout"] = "60s"
            first = asyncio.ensure_future(gw.reload(parse(doc, tmp_path / "gw.toml")))
            assert await asyncio.to_thread(stopping.wait, 20)
            doc["service"][0]["idle_timeout"] = "90s"
            second = asyncio.ensure_future(gw.reload(parse(doc, tmp_path / "gw.toml")))
            await asyncio.sleep(0.2)
            release.set()
            await asyncio.gather(first, second)
            svc = gw.services["web"]
            assert svc.state != State.FAILED, svc.reason
            assert svc.config.idle_timeout == 90
            assert await fetch(port, address) == REPLY
        finally:
            await gw.close()
        # Nothing of the gateway's listens on the port any more: every listener had an owner.
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAITs
            again.bind((address, port))
            again.listen()

    run(main())


def test_a_reload_names_the_server_address_it_cannot_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "summon gateway: gateway: new dns/status addresses take effect on restart" named none.
    async def main() -> None:
        doc = web_doc(free_port("127.0.0.1"), "30s")
        gw = Gateway(parse(doc, tmp_path / "gw.toml"), launcher=FakeLauncher())
        await gw.start()
        try:
            was = doc["gateway"]["status"]
            doc["gateway"]["status"] = "127.0.0.1:9"
            with caplog.at_level(logging.WARNING, logger="summon.gateway"):
                await gw.reload(parse(doc, tmp_path / "gw.toml"))
            said = [r.getMessage() for r in caplog.records if "restart" in r.getMessage()]
            assert said == [f"gateway.status 127.0.0.1:9 takes effect on restart: still on {was}"]
        finally:
            await gw.close()

    run(main())
