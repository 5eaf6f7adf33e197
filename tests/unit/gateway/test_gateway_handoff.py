"""Connections handed to the app by fd, and idle tiers, with in-process instances.

The "app" is the runtime's real SocketStack with a hand-off channel, run on the test's loop:
what the gateway sends over the socketpair is what the runtime in an image receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeInstance
from test_gateway_service import fetch, free_port, run, serve

from summon.gateway import sharing, tiers
from summon.gateway.config import ConfigError, ServiceConfig, parse
from summon.gateway.handoff import Channel
from summon.gateway.launched import Launched
from summon.gateway.service import Service, State
from summon.gateway.status import page
from summon.runtime.socket_stack import SocketStack
from summon.targets.base import NotSupported, PortForward

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class TieredInstance(FakeInstance):
    """A FakeInstance that records freezes and thaws, and may name a snapshot."""

    def __init__(self, snapshot_key: str = "", reports: bool = True) -> None:
        super().__init__()
        self.reports = reports  # False: an app whose figures never come
        self.accepted = 0
        self.frozen = False
        self.freezes = 0
        self.thaws = 0
        self.snapshot_key = snapshot_key
        self.busy = 0  # what runtime_stats says the app serves
        self.accepting_at_stop: set[int] | None = None  # shared ports it accepted on then
        self.app: SocketStack | None = None

    def stop(self, grace: float = 10.0) -> int:
        receiver = self.app.receiver if self.app is not None else None
        self.accepting_at_stop = set(receiver.shared) if receiver is not None else set()
        return super().stop(grace)

    def freeze(self) -> None:
        self.frozen = True
        self.freezes += 1

    def thaw(self) -> None:
        self.frozen = False
        self.thaws += 1

    def snapshot(self) -> str:
        if not self.snapshot_key:
            raise NotSupported("no snapshot")
        return self.snapshot_key

    def runtime_stats(self, timeout: float = 0.5) -> dict[str, float]:
        return {"active": self.busy, "accepted": self.accepted} if self.reports else {}


class AppLauncher:
    """Starts an in-process app (the runtime's SocketStack) that takes connections by fd."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float = 0.0,
        digest: str = "sha256:a",
        reports: bool = True,
        version: int = 1,
        restores: bool = False,
    ) -> None:
        self.loop = loop
        self.restores = restores  # starts after the first restore a snapshot, as qemu's do
        self.reports = reports
        self.version = version  # the hand-off version the "image's runtime" speaks
        self.delay = delay
        self.digest = digest
        self.calls = 0
        self.instances: list[TieredInstance] = []
        self.seen: list[tuple[bytes, Any]] = []  # (request bytes, the app's sockname)
        self.peers: list[Any] = []  # the peername the app saw, for each request
        self.served_by: list[int] = []  # which app (1, 2...) served each request
        self.stacks: list[SocketStack] = []

    def __call__(self, config: ServiceConfig, forwards: tuple[PortForward, ...], name: str) -> Any:
        self.calls += 1
        number = self.calls
        channel, app_end = Channel.pair(self.version)
        stack = SocketStack(
            "127.0.0.1", {(80, "tcp"): free_port("127.0.0.1")}, {}, app_end.detach()
        )
        self.stacks.append(stack)
        time.sleep(self.delay)

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readuntil(b"\r\n\r\n")
            self.seen.append((data, writer.get_extra_info("sockname")))
            self.peers.append(writer.get_extra_info("peername"))
            self.served_by.append(number)
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nby fd\n")
            await writer.drain()
            writer.close()

        async def start() -> None:
            await stack.start_server(on_connection, config.ports[0])

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        instance = TieredInstance("snap-1", self.reports)
        instance.restored = self.restores and number > 1
        instance.app = stack
        self.instances.append(instance)
        return Launched(instance, channel, self.digest)


def close_stacks(launcher: AppLauncher) -> None:
    for stack in launcher.stacks:
        if stack.receiver is not None:
            stack.receiver.close()


@contextlib.asynccontextmanager
async def served(
    config: ServiceConfig, launcher: AppLauncher, **options: Any
) -> AsyncIterator[tuple[Service, int]]:
    """A service of the launcher's apps behind a gateway listener; stopped after the block."""
    svc = Service(config, "127.0.0.1", launcher, **options)
    listener, port = await serve(svc)
    try:
        yield svc, port
    finally:
        listener.close()
        await svc.stop()
        close_stacks(launcher)


def test_connections_are_handed_over_with_the_bytes_held_while_booting() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop(), delay=0.4)
        async with served(ServiceConfig("web", "x"), launcher) as (svc, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # The whole request arrives while the instance boots: the gateway holds it.
            writer.write(b"GET /early HTTP/1.0\r\nHost: held\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b"HTTP/1.0 200 OK\r\n\r\nby fd\n"
            writer.close()
            assert launcher.seen[0][0] == b"GET /early HTTP/1.0\r\nHost: held\r\n\r\n"
            assert svc.cold == 1 and svc.state == State.UP and svc.channel is not None
            assert svc.last_boot is not None and svc.last_boot >= 0.4
            # Warm: the app accepts on the gateway's listener itself (shared once it showed
            # it reports its figures); its socket is the client's own connection to the
            # gateway's address (sockname), and the gateway saw none of it.
            await until(lambda: svc.snapshot()["listeners_shared"])
            assert await fetch(port) == b"HTTP/1.0 200 OK\r\n\r\nby fd\n"
            assert svc.warm == 0 and svc.open == 0
            assert launcher.seen[1][1] == ("127.0.0.1", port)
            assert svc.snapshot()["handed_over"] is True

    run(main())


async def until(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_an_app_without_figures_gets_each_connection_handed_over() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop(), reports=False)
        async with served(ServiceConfig("web", "x"), launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await asyncio.sleep(0.1)
            assert not svc.snapshot()["listeners_shared"]  # idleness would go unseen
            assert (await fetch(port)).endswith(b"by fd\n")
            assert svc.warm == 1 and launcher.seen[1][1] == ("127.0.0.1", port)

    run(main())


def test_shared_listeners_are_taken_back_before_a_freeze_and_shared_after_the_thaw() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        async with served(ServiceConfig("web", "x", freeze_after=0.1), launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            await svc.step_down(tiers.FROZEN)
            assert svc.state == State.FROZEN and not svc.snapshot()["listeners_shared"]
            # The app let go: a connection now reaches the gateway, which thaws the app.
            assert (await fetch(port)).endswith(b"by fd\n")
            assert svc.thaws == 1 and svc.cold == 2
            await until(lambda: svc.snapshot()["listeners_shared"])
            assert (await fetch(port)).endswith(b"by fd\n")
            assert svc.cold == 2 and svc.warm == 0  # served by the app alone again

    run(main())


def test_an_app_busy_on_shared_listeners_is_not_frozen() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        async with served(ServiceConfig("web", "x", freeze_after=0.1), launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            launcher.instances[0].accepted += 5  # taken directly: the gateway saw none
            await svc.step_down(tiers.FROZEN)
            assert svc.state == State.UP and not launcher.instances[0].frozen
            await until(lambda: svc.snapshot()["listeners_shared"])  # shared again
            await svc.step_down(tiers.FROZEN)  # nothing new since: now it freezes
            assert svc.state == State.FROZEN

    run(main())


def test_a_request_split_around_the_boot_reaches_the_app_in_order() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop(), delay=0.3)
        async with served(ServiceConfig("web", "x"), launcher) as (svc, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /split HTTP/1.0\r\n")  # held by the gateway
            await writer.drain()
            while svc.state != State.UP:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            writer.write(b"Host: late\r\n\r\n")  # read by the app from the socket itself
            await writer.drain()
            assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"by fd\n")
            writer.close()
            assert launcher.seen[0][0] == b"GET /split HTTP/1.0\r\nHost: late\r\n\r\n"

    run(main())


def test_an_app_that_never_serves_its_port_fails_the_boot_within_the_bound() -> None:
    async def main() -> None:
        def launcher(config: ServiceConfig, forwards: Any, name: str) -> Launched:
            channel, app_end = Channel.pair()
            app_end.close()  # an app that never says it serves
            return Launched(TieredInstance(), channel)

        svc = Service(ServiceConfig("web", "x", boot_timeout=0.5), "127.0.0.1", launcher)
        listener, port = await serve(svc)
        try:
            t0 = time.monotonic()
            assert await fetch(port) == b""
            assert time.monotonic() - t0 < 3
            assert svc.state == State.FAILED and "did not serve port(s) 80" in svc.reason
        finally:
            listener.close()

    run(main())


class DeadInstance(FakeInstance):
    """An app that ended before it served: code as its status, the target's reason."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(code, runs_for=0)
        self.why = why

    def exit_reason(self) -> str:
        return self.why


def test_an_app_that_dies_before_serving_says_why_not_that_it_did_not_serve() -> None:
    # An app OOM-killed at start (memory = "8M") failed in 0.1 s as "the app did not serve
    # port(s) 80 (boot_timeout 10s)", its log empty: nothing said it had died, nor why.
    async def main() -> None:
        for instance, last_line, why in (
            (DeadInstance(137, "killed: out of memory (limit 8M)"), "", "137: killed: out of"
             " memory (limit 8M) (the app did not serve port(s) 80)"),
            (DeadInstance(137, ""), "unrelated", "137: killed by SIGKILL (out of memory, or a"
             " kill from outside) (the app did not serve port(s) 80)"),
            (DeadInstance(1, ""), "ImportError: no module named x", "1: ImportError: no"
             " module named x (the app did not serve port(s) 80)"),
        ):  # fmt: skip

            def launcher(
                config: ServiceConfig, forwards: Any, name: str, dead: FakeInstance = instance
            ) -> Launched:
                channel, app_end = Channel.pair()
                app_end.close()  # as the app's process ending closes its end
                return Launched(dead, channel)

            config = ServiceConfig("web", "x", boot_timeout=30)
            svc = Service(config, "127.0.0.1", launcher, lambda name, line=last_line: line)
            listener, port = await serve(svc)
            try:
                assert await fetch(port) == b""  # closed, not held for the boot_timeout
                assert svc.state == State.FAILED
                assert svc.reason == f"app exited with status {why}"
            finally:
                listener.close()

    run(main())


def test_an_app_stopped_for_idleness_lets_go_of_the_shared_listeners_first() -> None:
    # The app's process lives on for a moment after the stop (its grace), as this in-process
    # app does: it must no longer accept on the gateway's listener by then, or a client that
    # comes as the service goes down is taken by an app on its way out and never answered.
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        config = ServiceConfig("web", "x", idle_timeout=0.1)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            await svc.step_down(tiers.DOWN)
            assert svc.state == State.DOWN and launcher.instances[0].stopped
            assert launcher.instances[0].accepting_at_stop == set()
            for _ in range(5):  # each reaches the new instance, none the stopped one
                assert (await fetch(port)).endswith(b"by fd\n")
            assert launcher.calls == 2 and launcher.served_by == [1, 2, 2, 2, 2, 2]

    run(main())


def test_an_app_that_took_a_connection_while_letting_go_is_not_stopped() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        config = ServiceConfig("web", "x", idle_timeout=0.1)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            launcher.instances[0].busy = 1  # a request the app serves, unseen by the gateway
            await svc.step_down(tiers.DOWN)
            assert svc.state == State.UP and not launcher.instances[0].stopped
            await until(lambda: svc.snapshot()["listeners_shared"])  # shared again

    run(main())


def test_an_idle_service_freezes_and_a_connection_thaws_it() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        config = ServiceConfig("web", "x", idle_timeout=30, freeze_after=0.2)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            instance = launcher.instances[0]
            await asyncio.sleep(0.3)
            assert svc.due_tier(time.monotonic()) == tiers.FROZEN
            await svc.step_down(tiers.FROZEN)
            assert svc.state == State.FROZEN and instance.frozen
            assert svc.snapshot()["state"] == "frozen"
            assert (await fetch(port)).endswith(b"by fd\n")  # thawed on the way
            assert svc.state == State.UP and not instance.frozen and svc.thaws == 1
            assert launcher.calls == 1 and svc.last_thaw is not None
            assert [h["how"] for h in svc.snapshot()["boot_history"]] == ["boot", "thaw"]

    run(main())


def test_a_frozen_instance_whose_image_changed_is_replaced() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        moved = {"digest": "sha256:a"}
        config = ServiceConfig("web", "x", freeze_after=0.1)

        def changed(config: ServiceConfig, digest: str) -> bool:
            return digest != moved["digest"]

        async with served(config, launcher, image_changed=changed) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await svc.step_down(tiers.FROZEN)
            moved["digest"] = "sha256:b"  # the tag now names another image
            launcher.digest = "sha256:b"
            assert (await fetch(port)).endswith(b"by fd\n")
            assert launcher.calls == 2 and launcher.instances[0].stopped
            assert svc.image_digest == "sha256:b" and svc.state == State.UP

    run(main())


def test_snapshotted_tier_stops_the_instance_and_the_next_connection_starts_it() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop(), restores=True)
        config = ServiceConfig("web", "x", freeze_after=0.1, snapshot_after=0.2)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            await svc.step_down(tiers.FROZEN)
            await asyncio.sleep(0.25)
            assert svc.due_tier(time.monotonic()) == tiers.SNAPSHOTTED
            await svc.step_down(tiers.SNAPSHOTTED)
            assert svc.state == State.SNAPSHOTTED and svc.instance is None
            assert launcher.instances[0].stopped
            assert (await fetch(port)).endswith(b"by fd\n")
            assert launcher.calls == 2 and svc.state == State.UP
            # The status page said "booted in" for the restore, and its graph a boot.
            status = svc.snapshot()
            assert [h["how"] for h in status["boot_history"]] == ["boot", "restore"]
            assert "restored in " in page([{**status, "memory_bytes": None}], time.time())

    run(main())


def test_a_tier_the_instance_cannot_take_is_skipped_not_retried() -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        config = ServiceConfig("web", "x", idle_timeout=30, snapshot_after=0.1)
        async with served(config, launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            launcher.instances[0].snapshot_key = ""  # NotSupported
            await asyncio.sleep(0.15)
            await svc.step_down(tiers.SNAPSHOTTED)
            assert svc.state == State.UP and svc.due_tier(time.monotonic()) is None

    run(main())


@pytest.mark.parametrize(
    ("current", "idle", "due"),
    [
        ("up", 0.5, None),
        ("up", 1.0, "frozen"),
        ("up", 10.0, "snapshotted"),
        ("up", 100.0, "down"),
        ("frozen", 1.5, None),
        ("frozen", 10.0, "snapshotted"),
        ("snapshotted", 50.0, None),
        ("snapshotted", 60.0, "down"),
    ],
)
def test_ladder(current: str, idle: float, due: str | None) -> None:
    ladder = tiers.Ladder.of({"freeze_after": 1.0, "snapshot_after": 10.0, "idle_timeout": 60})
    assert ladder.due(current, idle) == due


def test_tier_config_errors(tmp_path: Path, fake_target: Any) -> None:
    def load(**service: Any) -> None:
        parse({"service": [{"name": "web", "image": "x", **service}]}, tmp_path / "gw.toml")

    with pytest.raises(ConfigError, match="target fake has no frozen tier"):
        load(target="fake", freeze_after="1s")
    with pytest.raises(ConfigError, match="is not less than idle_timeout"):
        load(freeze_after="30s")
    with pytest.raises(ConfigError, match=r"snapshot_after: .*lacks the snapshot capability"):
        load(snapshot_after="5s")
    config = parse(
        {"service": [{"name": "web", "image": "x", "freeze_after": "500ms"}]}, tmp_path / "g"
    )
    assert config.services[0].freeze_after == 0.5
    assert config.services[0].tier_timeouts()["idle_timeout"] == 30.0


def test_busy_app_is_not_frozen(tmp_path: Path) -> None:
    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        async with served(ServiceConfig("web", "x", freeze_after=0.1), launcher) as (svc, port):
            assert (await fetch(port)).endswith(b"by fd\n")
            launcher.instances[0].busy = 1  # a long download the gateway cannot see
            assert svc.busy_inside()
            launcher.instances[0].busy = 0
            assert not svc.busy_inside()

    run(main())


def test_channel_refuses_after_the_app_end_closes() -> None:
    async def main() -> None:
        channel, app_end = Channel.pair()
        channel.start()
        app_end.close()
        await asyncio.sleep(0.05)
        assert channel.closed
        a, b = socket.socketpair()
        with pytest.raises(ConnectionError):
            channel.try_send(a, 80)
        a.close()
        b.close()

    run(main())


def listen_backlog(port: int) -> int:
    """The backlog of the listener on 127.0.0.1:PORT, as the kernel has it (ss's Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])


def test_a_shared_listener_keeps_the_gateways_backlog() -> None:
    """asyncio listens again on a socket it is given, with a backlog of 100 unless told:
    the app shrank the gateway's listener, and a thaw's burst of clients overflowed it
    (hundreds of 3,000 then waited seconds on SYN-ACK retries)."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    full = min(sharing.BACKLOG, somaxconn)

    async def main() -> None:
        launcher = AppLauncher(asyncio.get_running_loop())
        async with served(ServiceConfig("web", "x", freeze_after=0.1), launcher) as (svc, port):
            assert listen_backlog(port) == full
            assert (await fetch(port)).endswith(b"by fd\n")
            await until(lambda: svc.snapshot()["listeners_shared"])
            assert listen_backlog(port) == full  # the app accepts on it now
            await svc.step_down(tiers.FROZEN)
            assert listen_backlog(port) == full

    run(main())


def test_an_app_handed_its_connections_makes_no_listener_of_its_own_and_serves_till_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway hands its connections by fd: a listener of the app's own took none, and its
    socket() (never made by a recording run, which is handed its listeners) was refused with
    a line on every boot through a gateway."""

    async def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the app made a listener of its own")

    async def main() -> None:
        channel, app_end = Channel.pair()
        stack = SocketStack(
            "127.0.0.1", {(80, "tcp"): free_port("127.0.0.1")}, {}, app_end.detach()
        )
        monkeypatch.setattr(asyncio, "start_server", never)
        try:
            server = await stack.start_server(lambda r, w: None, 80)
            assert server.port == 80
            serving = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0.2)
            assert not serving.done()  # an app awaiting serve_forever() stays up
            server.close()
            await asyncio.wait_for(serving, 2)
        finally:
            monkeypatch.undo()
            if stack.receiver is not None:
                stack.receiver.close()
            channel.close()

    run(main())


def test_an_app_that_floods_its_channel_cannot_hold_the_gateways_loop() -> None:
    """Rule (gateway/handoff.py, READ_BATCH): one turn of the loop reads at most READ_BATCH
    of an app's messages. An app sending "serving" messages without end from four threads
    kept the reader busy: a 10 ms sleep of the gateway's loop took up to 0.6 s."""
    from summon.gateway.handoff import READ_BATCH
    from summon.runtime.handoff import listening_message

    async def main() -> tuple[int, int]:
        channel, theirs = Channel.pair()
        theirs.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < 10 * READ_BATCH:
                theirs.send(listening_message(8080))
                sent += 1
        channel.start()
        # Two turns of the loop: the reader runs once, after this coroutine's first one.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        left = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                channel.sock.recv(64)
                left += 1
        channel.close()
        theirs.close()
        return sent, left

    sent, left = asyncio.run(main())
    assert sent > 2 * READ_BATCH, sent
    assert left == sent - READ_BATCH, (sent, left)
