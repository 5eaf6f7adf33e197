"""One gateway service: its state machine, the single boot, held connections, hand-off or splice.

States: down -> booting -> up -> stopping -> down, and failed (with a reason) when a boot
fails, times out, or the app exits on its own; an idle service also steps down the tiers of
tiers.py (up -> frozen -> snapshotted -> down) and comes back up on the next connection.
Every connection that arrives while the service is not up waits on the same boot (one
asyncio future), so concurrent cold starts coalesce into one instance.

A connection reaches the app one of two ways. An instance with a hand-off channel
(handoff.py) is given the accepted socket itself, with the bytes read from it while it was
held: the gateway is out of the way after that. Otherwise the gateway splices the client to
the instance's internal port (its target's forwarder). A held connection's bytes are read
into a buffer of at most HELD_LIMIT; past that the gateway stops reading it (TCP flow
control does the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from summon.errors import UnknownImage
from summon.gateway import backoff, report, tiers
from summon.gateway.blocking import exit_text, exited, stop_late, stop_quietly, waited
from summon.gateway.config import ServiceConfig
from summon.gateway.handoff import Channel, ChannelClosed
from summon.gateway.launched import Launched
from summon.gateway.sharing import Listeners, budget
from summon.gateway.splice import Holding, pump
from summon.targets.base import Instance, NotReady, NotSupported, PortForward

log = logging.getLogger(__name__)

HOLD_LIMIT = 32 * 1024  # StreamReader limit of spliced connections (asyncio pauses at 2x)
HISTORY = 40  # boots and thaws kept for the status page's graph
RENEW = "renew"  # due_tier: the instance's image tag names another image now
_RETRY = 0.005


# (service config, host-side forwards to the guest ports, instance name) -> a started
# instance. Runs in a worker thread: Target.start blocks.
Launcher = Callable[[ServiceConfig, tuple[PortForward, ...], str], "Launched | Instance"]
# (service config, image digest an instance was started from) -> whether the config's image
# now names another one (the tag was moved): a frozen instance of it is not thawed, but
# replaced.
ImageChanged = Callable[[ServiceConfig, str], bool]


class State(enum.StrEnum):
    DOWN = "down"
    BOOTING = "booting"
    UP = "up"
    FROZEN = "frozen"
    SNAPSHOTTED = "snapshotted"
    STOPPING = "stopping"
    FAILED = "failed"


class BootFailed(Exception):
    """The service could not be brought up; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Service:
    # Slots, not a __dict__: measured, 200 idle services cost the gateway at rest 0.25 MB
    # less and 400 1.4 MB less (benchmarks/bench_density.py).
    __slots__ = tuple(
        "_app_accepted _boot _boot_t0 _changing _first_byte_pending _seq _stopping _tasks "
        "_watch _writers address app_answered backoff booted_at boots channel cold config "
        "failed_tiers failures history image_changed image_digest image_error image_ports "
        "instance instance_name internal ladder last_active last_boot last_start last_thaw "
        "launcher listeners open reason reason_of_exit state thaws warm".split()
    )

    def __init__(
        self,
        config: ServiceConfig,
        address: str,
        launcher: Launcher,
        reason_of_exit: Callable[[str], str] = lambda name: "",
        image_changed: ImageChanged = lambda config, digest: False,
    ) -> None:
        self.config = config
        self.address = address
        self.launcher = launcher
        self.reason_of_exit = reason_of_exit  # instance name -> last console line, for errors
        self.image_changed = image_changed
        self.ladder = tiers.Ladder.of(config.tier_timeouts())
        self.state = State.DOWN
        self.reason = ""  # why the last boot failed, or the app died
        self.image_error = ""  # why its image is not ready (gateway.image_checked), or ""
        self.instance: Instance | None = None
        self.channel: Channel | None = None
        self.listeners: Listeners | None = None  # the gateway's, shared with a warm app
        self._app_accepted: float | None = None  # the app's connections, when last asked
        self.app_answered: int | None = None  # the app's requests figure: count_app
        self.backoff = backoff.Backoff()  # failures in a row: the next boot waits
        self.image_digest = self.instance_name = ""
        self.internal: dict[int, int] = {}  # guest port -> 127.0.0.1 port of the instance
        self.boots = self.thaws = self.failures = self.cold = self.warm = 0
        self.open = 0  # connections the gateway holds or splices now (not handed over ones)
        self.last_boot: float | None = None  # boot start -> the app serving (seconds)
        self.last_start: float | None = None  # boot start -> Target.start returned
        self.last_thaw: float | None = None  # seconds a thaw took
        self.booted_at: float | None = None  # wall time the last boot ended
        self.history: list[tuple[float, float, str]] = []  # when, s, how (_remember)
        self.last_active = time.monotonic()
        self.image_ports: tuple[int, ...] = ()  # TCP ports its image lists, once read
        self.failed_tiers: tuple[str, ...] = ()  # tiers this instance could not take
        self._boot: asyncio.Future[None] | None = None
        self._boot_t0 = 0.0
        self._first_byte_pending = False
        self._stopping: asyncio.Future[None] | None = None
        self._changing: asyncio.Future[None] | None = None  # a tier step under way
        self._watch: asyncio.Task[None] | None = None
        # dicts, not sets: an empty dict has no table (a set's is 216 bytes, times services)
        self._writers: dict[asyncio.StreamWriter, None] = {}
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._seq = 0

    @property
    def name(self) -> str:
        return self.config.name

    def attach(self, sockets: dict[int, socket.socket]) -> None:
        """The gateway's listening sockets for this service (guest port -> socket): watched
        from now on, shared with the app while it is up (sharing.py)."""
        self.listeners = Listeners(sockets, self.connection, self.name)
        self.listeners.watch()

    async def release_listeners(self) -> dict[int, socket.socket]:
        """Give up the listening sockets, still open, for the service set up anew on them (a
        reload that changes it): the app lets go of them and the gateway stops accepting, so
        connections wait in their backlog meanwhile."""
        listeners = self.listeners
        assert listeners is not None
        await listeners.take_back(self.channel)
        listeners.unwatch()  # (no await since take_back watched again: nothing was accepted)
        self.listeners = None
        return listeners.sockets

    def _share_soon(self) -> None:
        """Share the listeners with the app once it has shown it reports its figures: the
        gateway reads from them whether the app is idle, as it no longer sees a thing."""
        instance, channel, listeners = self.instance, self.channel, self.listeners
        if instance is None or channel is None or listeners is None or listeners.shared:
            return

        async def share() -> None:
            figures = await asyncio.to_thread(instance.runtime_stats, 0.5)
            report.count_app(self, instance, figures)
            if (
                figures
                and self.instance is instance
                and self.state == State.UP
                and self._changing is None
                and listeners.share(channel)
            ):
                self._app_accepted = figures.get("accepted")

        self._keep(asyncio.ensure_future(share()))

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks[task] = None
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    # --- boot --------------------------------------------------------------------------------

    def trigger(self) -> None:
        """A DNS query for the service: boot it if it is down, thaw it if frozen."""
        self.last_active = time.monotonic()  # so the reaper waits for the connection to come
        if self.state == State.FROZEN:
            self._thaw()
        if self.state in (State.UP, State.BOOTING):
            return
        task = asyncio.ensure_future(self.ensure_up())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def ensure_up(self) -> dict[int, int]:
        """Wait until the service is up (booting or thawing it if need be); its internal
        ports."""
        while True:
            if self.state == State.FROZEN:
                self._thaw()
            if self.state == State.UP and self.instance is not None and self._changing is None:
                return self.internal
            busy = self._stopping or self._changing
            if busy is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(busy)
                continue
            if self._boot is None:
                if wait := self.backoff.left(time.monotonic()):
                    raise BootFailed(f"backing off: next boot in {wait:.1f}s")
                self._boot = asyncio.ensure_future(self._do_boot())
            await asyncio.shield(self._boot)

    async def _do_boot(self) -> None:
        self.state = State.BOOTING
        self._boot_t0 = t0 = time.monotonic()
        self._seq += 1
        name = f"gw-{self.name}-{os.getpid()}-{self._seq}"
        ports = {p: free_port() for p in self.config.ports}
        forwards = tuple(PortForward(h, g) for g, h in ports.items())
        loop = asyncio.get_running_loop()
        started = loop.run_in_executor(None, self.launcher, self.config, forwards, name)
        try:
            try:
                result = await asyncio.wait_for(asyncio.shield(started), self.config.boot_timeout)
            except TimeoutError:
                # The thread goes on: whatever it starts late is stopped at once.
                started.add_done_callback(stop_late)
                raise BootFailed(
                    f"did not start within boot_timeout ({self.config.boot_timeout:g}s)"
                ) from None
            except Exception as e:
                if isinstance(e, UnknownImage):  # checked again once the store changes
                    self.image_error = str(e)
                raise BootFailed(str(e) or type(e).__name__) from None
            launched = result if isinstance(result, Launched) else Launched(result)
            instance, channel = launched.instance, launched.channel
            left = max(self.config.boot_timeout - (time.monotonic() - t0), 0.0)
            try:
                if channel is not None:
                    channel.start(self.config.boot_timeout, self.name)
                    if not await channel.serves(self.config.ports, left):
                        raise NotReady(f"the app did not serve port(s) {self._ports_text()}")
                else:
                    # Some targets' forwarders accept before the app listens (QEMU's user
                    # network): the target waits until the app holds connections on its ports.
                    await asyncio.to_thread(instance.wait_ready, self.config.ports, left)
            except NotReady as e:
                died = channel is not None and channel.closed  # the app's end closed it
                if channel is not None:
                    channel.close()
                status = await asyncio.to_thread(exited, instance, 1.0 if died else 0.0)
                await asyncio.to_thread(stop_quietly, instance)
                hint = f"; {h}" if (h := report.ports_hint(self.config, self.image_ports)) else ""
                why = f"{e} (boot_timeout {self.config.boot_timeout:g}s){hint}"
                if status is not None:  # it died: "did not serve" in 0.1 s said nothing of why
                    why = f"{exit_text(instance, status, self.reason_of_exit(name))} ({e})"
                raise BootFailed(why) from None
        except BootFailed as e:
            self.state = State.FAILED
            self.reason = str(e)
            self.failures += 1
            if not self.image_error:  # a missing image is checked again once the store changes
                self.backoff.failed(time.monotonic())
            log.warning("service %s: boot failed: %s", self.name, e)
            raise
        finally:
            self._boot = None
        self.instance = instance
        self.channel = channel
        self.image_digest = launched.image_digest
        self.instance_name = name
        self.internal = ports if channel is None else {}
        self.last_start = time.monotonic() - t0
        # With a channel the app said it serves: the boot is done. Spliced, until a held
        # (cold) connection sees the app's first byte the boot took this long (a boot a DNS
        # query started may have no one waiting on it to time the first byte).
        self.last_boot = self.last_start
        self._first_byte_pending = channel is None
        self._booted(self.last_boot, "restore" if instance.restored else "boot")
        self.boots += 1
        self.reason = self.image_error = ""
        self.failed_tiers = ()
        self.state = State.UP
        self._watch = asyncio.ensure_future(self._watch_exit(instance))
        self._share_soon()

    def _booted(self, seconds: float, how: str) -> None:  # how: boot, or restore (a snapshot's)
        self.booted_at = time.time()
        self._remember(self.booted_at, seconds, how)

    def _remember(self, when: float, seconds: float, how: str) -> None:
        self.history.append((when, seconds, how))
        del self.history[:-HISTORY]

    def _ports_text(self) -> str:
        return ", ".join(map(str, self.config.ports))

    async def _watch_exit(self, instance: Instance) -> None:
        """An app that exits on its own marks the service failed and closes its connections."""
        status = await waited(instance)
        if self.instance is not instance:
            return  # stopped by the gateway: not a failure
        self.reason = exit_text(instance, status, self.reason_of_exit(self.instance_name))
        self.failures += 1
        self.backoff.failed(time.monotonic())
        self.state = State.FAILED
        self._drop_instance()
        log.warning("service %s: %s", self.name, self.reason)
        self._close_all()
        await asyncio.to_thread(stop_quietly, instance)  # its netns, bundle, forwarder

    def _drop_instance(self) -> None:
        self.instance = None
        self.internal = {}
        self._app_accepted = self.app_answered = None
        if self.listeners is not None:
            self.listeners.lost()  # the app's copies go with it
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    async def stop(self) -> None:
        """Stop the instance (scale to zero, reload or shutdown); waits for a boot under way.
        The app lets go of shared listeners first: a connection that comes while it stops
        waits for the next boot instead of being taken by an app on its way out."""
        while self._stopping is None:
            if (busy := self._boot or self._changing) is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(busy)
                continue
            if self.instance is None:
                if self.state == State.SNAPSHOTTED:
                    self.state = State.DOWN
                return
            await self._change(tiers.DOWN, idle_only=False)
            if self._stopping is None and self.instance is not None and self._changing is None:
                self._begin_stop()  # the change failed: stop it all the same
        stopping = self._stopping
        with contextlib.suppress(Exception):
            await asyncio.shield(stopping)

    def _begin_stop(self) -> None:
        """Take the instance away now (state stopping) and stop it in a thread; _stopping
        is done, and the state down, once it has stopped."""
        instance = self.instance
        assert instance is not None
        frozen = self.state == State.FROZEN
        self.state = State.STOPPING
        self._drop_instance()
        self._close_all()

        async def stopping() -> None:
            try:
                await asyncio.to_thread(stop_quietly, instance, frozen)
            finally:
                self._stopping = None
                self.state = State.DOWN

        self._stopping = asyncio.ensure_future(stopping())

    # --- tiers -------------------------------------------------------------------------------

    def idle_for(self, now: float) -> float:
        return 0.0 if self.open else now - self.last_active

    def due_tier(self, now: float) -> str | None:
        """The tier the idle service should step to now, if any (tiers.py)."""
        if self.state not in (State.UP, State.FROZEN, State.SNAPSHOTTED):
            return None
        if self._changing is not None or self._stopping is not None:
            return None
        if self.state == State.UP and not self.open and self.image_moved():
            return RENEW
        return self.ladder.due(str(self.state), self.idle_for(now), self.failed_tiers)

    def busy_inside(self) -> bool:
        """Whether the app serves connections the gateway cannot see (handed over, or
        accepted on a shared listener), or took new ones since last asked: from the app's
        own figures; unknown counts as not busy."""
        instance = self.instance
        if instance is None or self.channel is None or self.state != State.UP:
            return False
        figures = instance.runtime_stats(0.2)
        report.count_app(self, instance, figures)
        accepted, before = figures.get("accepted"), self._app_accepted
        if accepted is not None:
            self._app_accepted = accepted
        moved = accepted is not None and before is not None and accepted != before
        return moved or bool(figures.get("active", 0))

    async def step_down(self, tier: str) -> None:
        """Take the idle service to tier (frozen, snapshotted or down), or with RENEW, an
        instance of an image its tag no longer names down and the new image up."""
        if tier == tiers.DOWN and self.instance is None:
            await self.stop()  # snapshotted: nothing runs
            return
        await self._change(tiers.DOWN if tier == RENEW else tier, idle_only=True)
        if (stopping := self._stopping) is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(stopping)
            if tier == RENEW:
                log.info("service %s: its image changed; booting the new one", self.name)
                self.trigger()

    def image_moved(self) -> bool:
        """Whether the instance's image tag now names another image (a build, a pull)."""
        return bool(self.image_digest) and self.image_changed(self.config, self.image_digest)

    async def _change(self, tier: str, idle_only: bool) -> None:
        """Take the instance to tier, once the app has let go of shared listeners. With
        idle_only, an app that took connections meanwhile (or one the gateway holds for it)
        stays up. The step is one change: connections that come during it wait for it."""
        instance = self.instance
        if instance is None or self._changing is not None:
            return
        done = asyncio.get_running_loop().create_future()
        self._changing = done
        try:
            listeners = self.listeners
            if listeners is not None and listeners.shared:
                # The app lets go of the listeners first; what it took meanwhile it serves.
                await listeners.take_back(self.channel)
                if idle_only and (self.open or await asyncio.to_thread(self.busy_inside)):
                    self.last_active = time.monotonic()
                    self._changing = None
                    self._share_soon()
                    return
            if tier == tiers.DOWN:
                self._begin_stop()  # state stopping before a waiting connection looks
            elif tier == tiers.FROZEN:
                await asyncio.to_thread(instance.freeze)
                self.state = State.FROZEN
            elif tier == tiers.SNAPSHOTTED:
                await self._snapshot(instance)
            self.backoff.ok()  # it lived until the gateway took it down: no failure streak
        except Exception as e:  # NotSupported, FreezeFailed...: this instance stays where it is
            self.failed_tiers += (tier,)
            log.warning("service %s: cannot go %s: %s", self.name, tier, e)
        finally:
            self._changing = None
            done.set_result(None)

    async def _snapshot(self, instance: Instance) -> None:
        frozen = self.state == State.FROZEN
        if frozen:
            await asyncio.to_thread(instance.thaw)
            self.state = State.UP
        try:
            key = await asyncio.to_thread(instance.snapshot)
        except NotSupported:
            if frozen:
                await asyncio.to_thread(instance.freeze)
                self.state = State.FROZEN
            raise
        log.info("service %s: snapshot %s", self.name, key)
        self._drop_instance()
        self._close_all()
        await asyncio.to_thread(stop_quietly, instance)
        self.state = State.SNAPSHOTTED

    def _thaw(self) -> None:
        """Let a frozen instance run again, here on the loop: a thaw takes microseconds (it
        is on the path of the request that woke it). A frozen instance whose image tag has
        moved is stopped instead, and the next connection boots the new image."""
        instance = self.instance
        if instance is None:
            return
        if self.image_moved():
            log.info("service %s: its image changed; replacing the frozen instance", self.name)
            self._begin_stop()
            return
        if tiers.kill_pending(instance.pid):
            # Killed while frozen (SIGKILL from outside, the OOM killer): a frozen task dies
            # only once thawed, and a connection handed to it now would be reset.
            log.warning("service %s: killed while frozen; booting it anew", self.name)
            self._begin_stop()
            return
        t0 = time.monotonic()
        try:
            instance.thaw()
        except Exception as e:
            log.warning("service %s: cannot thaw: %s; restarting it", self.name, e)
            self._begin_stop()
            return
        self.last_thaw = time.monotonic() - t0
        self.thaws += 1
        self._remember(time.time(), self.last_thaw, "thaw")
        self.state = State.UP
        self._share_soon()

    # --- connections -------------------------------------------------------------------------

    def connection(self, conn: socket.socket, guest_port: int, peer: object = None) -> None:
        """A client connection the gateway accepted (from peer, as accept() gave it): handed
        over at once if the service is up and takes connections by fd, else held (see
        _serve)."""
        self.last_active = now = time.monotonic()
        if self._boot is None and self.state in (State.FAILED, State.DOWN):
            if wait := self.backoff.left(now):  # 503 with Retry-After, not a boot
                answer = backoff.unavailable(self.name, wait)
                self._keep(asyncio.ensure_future(backoff.refuse(conn, answer)))
                return
        channel = self.channel
        if self.state == State.UP and channel is not None and self._changing is None:
            with contextlib.suppress(ChannelClosed):
                if channel.try_send(conn, guest_port, peer=peer):
                    self.warm += 1
                    conn.close()
                    return
        self._keep(asyncio.ensure_future(self._serve(conn, guest_port, peer)))

    async def _serve(self, conn: socket.socket, guest_port: int, peer: object = None) -> None:
        """Hold the connection (reading what it sends) until the service is up, then hand it
        over or splice it."""
        self.open += 1
        budget.held += 1
        cold = self.state != State.UP
        if cold:
            self.cold += 1
        else:
            self.warm += 1
        conn.setblocking(False)
        held = Holding(conn)
        try:
            try:
                ports = await self.ensure_up()
            except BootFailed:
                return  # a clean close; the reason is in the status
            finally:
                held.stop()
            channel = self.channel
            if channel is not None:
                with contextlib.suppress(ChannelClosed):
                    await channel.send(conn, guest_port, bytes(held.data), peer)
                return
            await self._splice(conn, ports[guest_port], bytes(held.data), cold)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()
            self.open -= 1
            budget.held -= 1
            self.last_active = time.monotonic()

    async def _splice(self, conn: socket.socket, port: int, held: bytes, cold: bool) -> None:
        deadline = time.monotonic() + self.config.boot_timeout
        reader, writer = await asyncio.open_connection(sock=conn, limit=HOLD_LIMIT)
        self._writers[writer] = None
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream = await self._connect(port, deadline)
            except BootFailed:
                return
            if held:
                upstream.write(held)
            first = self._first_byte if cold else None
            await asyncio.gather(pump(reader, upstream), pump(up_reader, writer, first))
        finally:
            self._writers.pop(writer, None)
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _connect(
        self, port: int, deadline: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the instance; its port may refuse a moment while the app starts."""
        while True:
            try:
                return await asyncio.open_connection("127.0.0.1", port, limit=HOLD_LIMIT)
            except ConnectionRefusedError:
                if time.monotonic() > deadline or self.state != State.UP:
                    raise BootFailed(f"port {port} not answering") from None
                await asyncio.sleep(_RETRY)

    def _first_byte(self) -> None:
        self.backoff.ok()  # the app answered
        if self._first_byte_pending:
            self._first_byte_pending = False
            self.last_boot = time.monotonic() - self._boot_t0
            if self.history and (last := self.history[-1])[2] in ("boot", "restore"):
                self.history[-1] = (last[0], self.last_boot, last[2])

    def _close_all(self) -> None:
        for w in list(self._writers):
            w.close()

    def snapshot(self) -> dict[str, Any]:
        """What the status page shows of the service (report.py)."""
        return report.service_doc(self)
