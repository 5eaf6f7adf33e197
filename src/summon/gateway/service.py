"""One gateway service: its state machine, the single boot, held connections and the splice.

States: down -> booting -> up -> stopping -> down, and failed (with a reason) when a boot
fails, times out, or the app exits on its own. Every connection that arrives while the
service is not up waits on the same boot (one asyncio future), so concurrent cold starts
coalesce into one instance. Held connections keep their bytes in their StreamReader, whose
limit bounds what is buffered: past it asyncio stops reading from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from summon.gateway.config import ServiceConfig
from summon.targets.base import Instance, NotReady, PortForward

log = logging.getLogger(__name__)

# StreamReader limit for held connections: asyncio pauses reading at twice this, so a held
# client has at most ~64 KiB buffered in the gateway while its service boots.
HOLD_LIMIT = 32 * 1024
CHUNK = 64 * 1024
STOP_GRACE = 2.0
_RETRY = 0.005

# (service config, host-side forwards to the guest ports, instance name) -> a started instance.
# Runs in a worker thread: Target.start blocks.
Launcher = Callable[[ServiceConfig, tuple[PortForward, ...], str], Instance]


class State(enum.StrEnum):
    DOWN = "down"
    BOOTING = "booting"
    UP = "up"
    STOPPING = "stopping"
    FAILED = "failed"


class BootFailed(Exception):
    """The service could not be brought up; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _stop_quietly(instance: Instance) -> None:
    try:
        instance.stop(STOP_GRACE)
    except Exception as e:  # a stop that fails must not take the gateway down
        log.warning("stopping instance: %s", e)


def _stop_late(future: asyncio.Future[Instance]) -> None:
    # A done callback runs on the event loop: the (blocking) stop goes to a thread of its own.
    if not future.cancelled() and future.exception() is None:
        threading.Thread(target=_stop_quietly, args=(future.result(),), daemon=True).start()


class Service:
    def __init__(
        self,
        config: ServiceConfig,
        address: str,
        launcher: Launcher,
        reason_of_exit: Callable[[str], str] = lambda name: "",
    ) -> None:
        self.config = config
        self.address = address
        self.launcher = launcher
        self.reason_of_exit = reason_of_exit  # instance name -> last console line, for errors
        self.state = State.DOWN
        self.reason = ""  # why the last boot failed, or the app died
        self.instance: Instance | None = None
        self.instance_name = ""
        self.internal: dict[int, int] = {}  # guest port -> 127.0.0.1 port of the instance
        self.boots = 0
        self.failures = 0
        self.cold = 0
        self.warm = 0
        self.open = 0
        self.last_boot: float | None = None  # boot start -> first byte from the app (seconds)
        self.last_start: float | None = None  # boot start -> Target.start returned
        self.last_active = time.monotonic()
        self._boot: asyncio.Future[None] | None = None
        self._boot_t0 = 0.0
        self._first_byte_pending = False
        self._stopping: asyncio.Future[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._seq = 0

    @property
    def name(self) -> str:
        return self.config.name

    # --- boot --------------------------------------------------------------------------------

    def trigger(self) -> None:
        """Start a boot if the service is down (a DNS query for it); fire and forget."""
        self.last_active = time.monotonic()  # so the reaper waits for the connection to come
        if self.state in (State.UP, State.BOOTING):
            return
        task = asyncio.ensure_future(self.ensure_up())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def ensure_up(self) -> dict[int, int]:
        """Wait until the service is up (booting it if need be); its internal ports."""
        while True:
            if self.state == State.UP and self.instance is not None:
                return self.internal
            if self._stopping is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._stopping)
                continue
            if self._boot is None:
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
                instance = await asyncio.wait_for(asyncio.shield(started), self.config.boot_timeout)
            except TimeoutError:
                # The thread goes on: whatever it starts late is stopped at once.
                started.add_done_callback(_stop_late)
                raise BootFailed(
                    f"did not start within boot_timeout ({self.config.boot_timeout:g}s)"
                ) from None
            except Exception as e:
                raise BootFailed(str(e) or type(e).__name__) from None
            # Some targets' forwarders accept before the app listens (QEMU's user network):
            # the target waits until the app holds connections on its ports.
            left = self.config.boot_timeout - (time.monotonic() - t0)
            try:
                await asyncio.to_thread(instance.wait_ready, self.config.ports, max(left, 0.0))
            except NotReady as e:
                await asyncio.to_thread(_stop_quietly, instance)
                raise BootFailed(f"{e} (boot_timeout {self.config.boot_timeout:g}s)") from None
        except BootFailed as e:
            self.state = State.FAILED
            self.reason = str(e)
            self.failures += 1
            log.warning("service %s: boot failed: %s", self.name, e)
            raise
        finally:
            self._boot = None
        self.instance = instance
        self.instance_name = name
        self.internal = ports
        self.last_start = time.monotonic() - t0
        # Until a held (cold) connection sees the app's first byte, the boot took this long;
        # a boot a DNS query started may have no one waiting on it to time the first byte.
        self.last_boot = self.last_start
        self.boots += 1
        self.reason = ""
        self._first_byte_pending = True
        self.state = State.UP
        self._watch = asyncio.ensure_future(self._watch_exit(instance))

    async def _watch_exit(self, instance: Instance) -> None:
        """An app that exits on its own marks the service failed and closes its connections."""
        status = await asyncio.to_thread(instance.wait)
        if self.instance is not instance:
            return  # stopped by the gateway: not a failure
        why = self.reason_of_exit(self.instance_name)
        self.reason = f"app exited with status {status}" + (f": {why}" if why else "")
        self.failures += 1
        self.state = State.FAILED
        self.instance = None
        self.internal = {}
        log.warning("service %s: %s", self.name, self.reason)
        self._close_all()
        await asyncio.to_thread(_stop_quietly, instance)  # its netns, bundle, forwarder

    async def stop(self) -> None:
        """Stop the instance (scale to zero, reload or shutdown); waits for a boot under way."""
        if self._boot is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._boot)
        if self._stopping is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._stopping)
            return
        instance = self.instance
        if instance is None:
            return
        self.state = State.STOPPING
        self.instance = None
        self.internal = {}
        self._close_all()
        self._stopping = asyncio.ensure_future(asyncio.to_thread(_stop_quietly, instance))
        try:
            await self._stopping
        finally:
            self._stopping = None
            self.state = State.DOWN

    def idle_for(self, now: float) -> float:
        return 0.0 if self.open else now - self.last_active

    def _close_all(self) -> None:
        for w in list(self._writers):
            w.close()

    # --- connections -------------------------------------------------------------------------

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, guest_port: int
    ) -> None:
        """One client connection: hold it until the service is up, then splice both ways."""
        self.open += 1
        self.last_active = time.monotonic()
        deadline = self.last_active + self.config.boot_timeout
        cold = self.state != State.UP
        if cold:
            self.cold += 1
        else:
            self.warm += 1
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                ports = await self.ensure_up()
                up_reader, upstream = await self._connect(ports[guest_port], deadline)
            except BootFailed:
                return  # a clean close; the reason is in the status
            first = self._first_byte if cold else None
            await asyncio.gather(_pump(reader, upstream), _pump(up_reader, writer, first))
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            for w in (writer, upstream):
                if w is not None:
                    w.close()
            self.open -= 1
            self.last_active = time.monotonic()

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
        if self._first_byte_pending:
            self._first_byte_pending = False
            self.last_boot = time.monotonic() - self._boot_t0

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "ports": list(self.config.ports),
            "image": self.config.image,
            "target": self.config.target,
            "state": str(self.state),
            "error": self.reason,
            "boots": self.boots,
            "failures": self.failures,
            "cold_requests": self.cold,
            "warm_requests": self.warm,
            "open_connections": self.open,
            "last_boot_seconds": self.last_boot,
            "last_start_seconds": self.last_start,
            "idle_timeout": self.config.idle_timeout,
        }


async def _pump(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, first: Callable[[], None] | None = None
) -> None:
    try:
        while data := await src.read(CHUNK):
            if first is not None:
                first()
                first = None
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        # RuntimeError: the other side's transport closed under us (failure, shutdown)
        dst.close()
