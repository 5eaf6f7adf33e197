"""The gateway as a whole: services, their listeners, the DNS and status servers, the reaper.

Each service gets a loopback address of its own and the gateway listens there on the
service's ports. An instance whose app serves through the runtime's Stack on host sockets
is handed each connection by fd (handoff.py); any other serves on internal 127.0.0.1 ports
(its target's own forwarder), and Service splices the two. The reaper steps idle services
down their tiers (tiers.py). reload() applies a new config (SIGHUP). New services' images
are read and prepared in a process of their own (ahead.py): the store's and the targets' code
loads in the gateway's only when it boots an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from summon import paths, targets
from summon.errors import UserError
from summon.gateway import ahead, inuse, lastwords, report, rest, sharing
from summon.gateway.config import GatewayConfig, ServiceConfig
from summon.gateway.dns import DnsServer, Zone
from summon.gateway.handoff import Channel
from summon.gateway.launched import Launched
from summon.gateway.service import Launcher, Service, State
from summon.gateway.status import StatusServer
from summon.instances import scratch
from summon.instances.console import ConsoleLog
from summon.targets.base import HANDOFF, PortForward, RunSpec, SecretFile, Target, Volume

if TYPE_CHECKING:
    from summon.store.image import Image

    Step = Callable[[str], None]

log = logging.getLogger(__name__)
LISTEN_AGAIN_EVERY = 1.0  # seconds between tries on a service's ports that were taken
REAP_EVERY = 0.25  # seconds between idle checks: the slack on an idle_timeout
AT_REST = (State.DOWN, State.FAILED, State.SNAPSHOTTED)

# (services just added, found(service name, what the status page shows of its image),
# prepared(service name, why its image is not ready or "")): returns once every one's image
# is ready for its target, or could not be made so (logged).
Ahead = Callable[[Sequence[ServiceConfig], ahead.Found, ahead.Prepared], Awaitable[None]]


async def _instance_figures(doc: dict[str, Any], instance: Any, up: bool) -> None:
    with contextlib.suppress(Exception):
        doc["memory_bytes"] = (await asyncio.to_thread(instance.stats)).memory_bytes
    if up:
        with contextlib.suppress(Exception):
            doc["runtime"] = await asyncio.to_thread(instance.runtime_stats, 0.5)


def _stat_key(path: Path | None) -> tuple[int, int] | None:
    """What changes when a file is rewritten (the store's index: written anew, renamed)."""
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino) if st is not None else None


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("gateway: cannot prepare images: %s", task.exception())


_LOG_SUFFIX = re.compile(r"\.log(\.1)?$")  # a boot's console log, and its rotated-out part


class CannotListen(OSError):
    """The gateway's DNS or status address is taken, or not this host's: strerror says so."""


class ImageLauncher:
    """Starts a service's image on its target, console to a log file beside the bundles."""

    def __init__(self, store: Any = None, state_root: Path | None = None) -> None:
        self._store = store  # made when first needed: the store's code is not loaded at rest
        self.store_root: Path = store.root if store is not None else paths.store_dir()
        self.state_root = state_root or paths.state_dir() / "gateway"
        self._preparing: dict[str, threading.Lock] = {}
        self._locks = threading.Lock()
        self._ahead = threading.Condition(self._locks)
        self._ahead_left: dict[str, int] = {}  # image ref -> its services the process prepares
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}  # ref -> (index stat, digest)
        self._policy: Any = None  # config.toml's verify_key (store/policy.py), at a boot
        scratch.sweep()  # what a gateway killed outright left running (instances/scratch.py)

    @property
    def store(self) -> Any:
        from summon.store import Store

        with self._locks:
            if self._store is None:
                self._store = Store(self.store_root)
            return self._store

    def _prepared(self, config: ServiceConfig, target: Target, step: Step) -> Image:
        """The service's image made ready for its target, one preparation at a time: after
        the ahead process is done with it, if it is preparing it."""
        from summon.store.image import Image
        from summon.store.policy import SignaturePolicy

        with self._ahead:
            self._ahead.wait_for(lambda: not self._ahead_left.get(config.image))
            lock = self._preparing.setdefault(config.image, threading.Lock())
        with lock:
            image = Image.open(self.store, config.image)
            self._policy = self._policy or SignaturePolicy()
            self._policy.check(self.store, image.desc, image.ref)  # config.toml's verify_key
            return target.prepare(image, step)

    async def ahead(
        self,
        configs: Sequence[ServiceConfig],
        found: ahead.Found,
        prepared: ahead.Prepared | None = None,
    ) -> None:
        """Read the services' images and make them ready for their targets ahead of their
        first boot, in a process of its own (ahead.py); a boot that comes first waits."""
        images = {c.name: c.image for c in configs}
        with self._ahead:
            for ref in images.values():
                self._ahead_left[ref] = self._ahead_left.get(ref, 0) + 1

        def ready(name: str) -> None:
            with self._ahead:
                ref = images.pop(name, None)
                if ref is not None:
                    self._ahead_left[ref] -= 1
                    if not self._ahead_left[ref]:
                        del self._ahead_left[ref]
                        self._ahead.notify_all()

        await ahead.run(self.store_root, configs, found, ready, prepared)

    def log_path(self, name: str) -> Path:
        return self.state_root / f"{name}.log"

    def last_line(self, name: str) -> str:
        """The app's last console line that is not the runtime's banner: usually the error
        it died of (lastwords.py)."""
        return lastwords.last_line(self.log_path(name))

    def _forget_stopped(self, service: str, name: str) -> None:
        """Delete the folders and console logs of the service's stopped boots but the last
        (its log says how it ended): without this, one of each per boot, for as long as the
        gateway scales to zero. A boot still running (or a live gateway's) holds its lease."""
        boot = re.compile(rf"gw-{re.escape(service)}-\d+-\d+")
        stopped: dict[str, float] = {}
        for entry in os.scandir(self.state_root):
            base = _LOG_SUFFIX.sub("", entry.name)
            if base != name and boot.fullmatch(base) and not scratch.is_leased(base):
                with contextlib.suppress(OSError):
                    stopped[base] = max(stopped.get(base, 0.0), entry.stat().st_mtime)
        for base in sorted(stopped, key=stopped.__getitem__)[:-1]:
            for log in (f"{base}.log", f"{base}.log.1"):
                with contextlib.suppress(OSError):
                    (self.state_root / log).unlink()
            with contextlib.suppress(OSError):
                (self.state_root / base).rmdir()  # empty once stopped; never a live one's

    def target(self, config: ServiceConfig) -> Target:
        return targets.get(config.target, **dict(config.options))

    def image_digest(self, ref: str) -> str:
        """The digest ref names in the store now; cached until the store's index changes,
        so that asking costs one stat (it is asked on the way to thawing an instance)."""
        from summon.store.image import Image

        try:
            st = os.stat(self.store_root / "index.json")
        except OSError:
            return ""
        key = (st.st_mtime_ns, st.st_size)
        cached = self._digests.get(ref)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            digest = Image.open(self.store, ref).desc.digest
        except Exception:  # gone: a boot will say so
            digest = ""
        self._digests[ref] = (key, digest)
        return digest

    def image_changed(self, config: ServiceConfig, digest: str) -> bool:
        now = self.image_digest(config.image)
        return bool(now) and now != digest

    def __call__(
        self, config: ServiceConfig, forwards: tuple[PortForward, ...], name: str
    ) -> Launched:
        target = self.target(config)
        source = self.image_digest(config.image)
        image = self._prepared(config, target, lambda step: None)
        state = self.state_root / name
        state.mkdir(parents=True, exist_ok=True)
        given = tuple(SecretFile(n, Path(f)) for n, f in config.secrets)
        mounts = tuple(Volume(where, path) for where, path in config.volumes)
        spec = RunSpec.for_image(
            image, name=name, state_dir=state, ports=forwards, memory=config.memory,
            secrets=given, volumes=mounts,
        )  # fmt: skip
        channel: Channel | None = None
        app_end: socket.socket | None = None
        if HANDOFF in target.capabilities and spec.takes_host_sockets:
            # Connections go to the app by fd: no forwarder, no internal ports. Not to an
            # app that may connect(): it could connect them again from the host's namespace.
            channel, app_end = Channel.pair(spec.handoff_version)
            spec.ports = ()
            spec.handoff = app_end.fileno()
        # Leased while it runs: a gateway killed outright leaves it to the next to release.
        held = scratch.Lease.take(type(target).name, spec, remove=state, swept=False)
        if held is not None:
            self._forget_stopped(config.name, name)
        # The app's console is a pipe drained into a bounded log, never the file itself: on a
        # full disk the app's every print would fail (console.py drops and counts instead).
        console = ConsoleLog(self.state_root, name=self.log_path(name).name)
        read_end, write_end = os.pipe()
        console.pump(read_end, close=True)  # before the start: an app may write much at boot
        try:
            spec.stdout = write_end  # the target passes it on; our copy closes here
            instance = target.start(spec)
        except BaseException as e:
            if channel is not None:
                channel.close()
            if held is not None:
                held.release()
            if isinstance(e, UserError) and (said := in_config_words(str(e))):
                raise UserError(said) from None
            raise
        finally:
            os.close(write_end)  # the pump ends (and closes the log) when the app's copies go
            if app_end is not None:
                app_end.close()  # the instance has its own
        scratch.hold(instance, held)  # released by stop_quietly once it has stopped
        return Launched(instance, channel, source)


def in_config_words(message: str) -> str:
    """A target's error about a volume or secret in the config's words ("volumes: ..."), as
    the run's flags (-v, --secret) mean nothing to the user of a gateway; "" for any other."""
    for flag, key in (("-v ", "volumes"), ("--secret ", "secrets")):
        if message.startswith(flag):
            value, sep, why = message[len(flag) :].partition(": ")
            return f"{key}: {value!r}{sep}{why}"
    return ""


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        launcher: Launcher | None = None,
        reason_of_exit: Callable[[str], str] | None = None,
        ahead: Ahead | None = None,
        image_changed: Callable[[ServiceConfig, str], bool] | None = None,
        store_index: Path | None = None,
    ) -> None:
        """launcher starts instances (default: ImageLauncher); ahead reads added services'
        images and readies them in the background (default: the launcher's), and again for
        those whose image was not ready once store_index (the store's index.json) changes."""
        self.config = config
        self.store_index = store_index
        # Where the images of the instances up are said, for `summon rmi` (inuse.py).
        self.in_use_dir: Path | None = None
        self._in_use: dict[str, list[str]] = {}
        if launcher is None:
            image_launcher = ImageLauncher()
            launcher = image_launcher
            reason_of_exit = reason_of_exit or image_launcher.last_line
            ahead = ahead or image_launcher.ahead
            image_changed = image_changed or image_launcher.image_changed
            self.in_use_dir = image_launcher.state_root
            self.store_index = store_index or image_launcher.store_root / "index.json"
        self.launcher = launcher
        self.ahead = ahead
        self.reason_of_exit = reason_of_exit or (lambda name: "")
        self.image_changed = image_changed or (lambda config, digest: False)
        self.services: dict[str, Service] = {}
        self._boms: dict[str, dict[str, Any]] = {}
        self.zone = Zone(config.zone, self._lookup, self._on_query)
        self.dns = DnsServer(self.zone, config.upstream)
        self.status = StatusServer(self.snapshot)
        self._reaper: asyncio.Task[None] | None = None
        self._aheads: set[asyncio.Future[None]] = set()
        self._index_seen: tuple[int, int] | None = None  # the store's index when last checked
        self._rechecking = False
        self._rested_after = -1  # activity when the heap was last trimmed (-1: never)
        self._floor_kib = rest.anonymous_kib()  # before any service: trims are worth it above
        self._bound = (config.dns, config.status)  # what start() listens on; reload keeps it
        self._unlistened: set[str] = set()  # services whose ports were taken: tried again
        self._listen_at = 0.0  # (monotonic) when next
        self._reloading = asyncio.Lock()  # one reload at a time (SIGHUPs may come quicker)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._add_all(self.config)
        for what, server, (host, port) in (
            ("DNS", self.dns, self.config.dns),
            ("status", self.status, self.config.status),
        ):
            try:
                await server.start(host, port)
            except OSError as e:  # asyncio's words name neither the server nor the errno's
                why = os.strerror(e.errno) if e.errno else str(e)
                raise CannotListen(
                    e.errno, f"cannot listen on {host}:{port} for its {what} server: {why}"
                ) from None
        self._bound = (self.config.dns, self.config.status)
        self._reaper = asyncio.ensure_future(self._reap())

    async def close(self) -> None:
        """Stop listening, close every connection and stop every instance."""
        if self._reaper is not None:
            self._reaper.cancel()
        if self.in_use_dir is not None:
            inuse.remove(self.in_use_dir)
        for task in self._aheads:
            task.cancel()
        await asyncio.gather(*self._aheads, return_exceptions=True)
        await self.dns.close()
        await self.status.close()
        await asyncio.gather(*(self._remove(name) for name in list(self.services)))

    async def reload(self, config: GatewayConfig) -> None:
        """Apply a new config: services added, removed or changed (a changed one restarts).
        A reload waits for the one under way: two at once each set the same service up anew,
        the second on a port the first had just listened on, and that listener kept it."""
        async with self._reloading:
            await self._reload(config)

    async def _reload(self, config: GatewayConfig) -> None:
        old = {s.name: s for s in self.config.services}
        new = {s.name: s for s in config.services}
        addresses = config.addresses()
        gone = [n for n in old if n not in new or old[n] != new[n]]
        gone += [n for n in new if n in self.services and self.services[n].address != addresses[n]]
        # A changed service on the same address and ports keeps its listening sockets: a
        # client connecting while the old instance stops waits in their backlog for the
        # service set up anew, rather than being refused.
        kept = {
            n: await svc.release_listeners()
            for n in set(gone)
            if n in new
            and (svc := self.services.get(n)) is not None
            and svc.listeners is not None
            and svc.address == addresses[n]
            and tuple(new[n].ports) == tuple(svc.listeners.sockets)
        }
        await asyncio.gather(*(self._remove(n) for n in set(gone)))
        self.config = config
        self.zone = self.dns.zone = Zone(config.zone, self._lookup, self._on_query)
        self.dns.upstream = config.upstream
        await self._add_all(config, kept)
        servers = zip(("dns", "status"), (config.dns, config.status), self._bound, strict=True)
        for key, (host, port), (was_host, was_port) in servers:
            if (host, port) != (was_host, was_port):  # it said "gateway: new dns/status ..."
                log.warning(
                    "gateway.%s %s:%d takes effect on restart: still on %s:%d",
                    key, host, port, was_host, was_port,
                )  # fmt: skip

    async def _add_all(
        self, config: GatewayConfig, kept: dict[str, dict[int, socket.socket]] | None = None
    ) -> None:
        addresses = config.addresses()
        added = [sc for sc in config.services if sc.name not in self.services]
        for sc in added:
            self._add(sc, addresses[sc.name], (kept or {}).get(sc.name))
        # Checked again too: a service whose image was missing (pulled since, maybe).
        failing = [s.config for s in self.services.values() if s.image_error]
        self._check_images(added + [c for c in failing if c not in added])

    def _check_images(self, configs: list[ServiceConfig]) -> asyncio.Future[None] | None:
        """Read and ready these services' images ahead (the status page says at once what
        is wrong with one: a missing image, say), with the store's index as it is now."""
        if not configs or self.ahead is None:
            return None
        self._index_seen = _stat_key(self.store_index)
        asked = {c.name: c for c in configs}

        # What is heard back is for the service as it was asked about: a reload meanwhile
        # may have replaced it by one of the same name with another image.
        def found(name: str, bom: dict[str, Any]) -> None:
            if self._still(name, asked):
                self._found(name, bom)

        def prepared(name: str, error: str) -> None:
            if self._still(name, asked):
                self._prepared(name, error)

        task = asyncio.ensure_future(self.ahead(configs, found, prepared))
        self._aheads.add(task)
        task.add_done_callback(self._aheads.discard)
        task.add_done_callback(_log_failure)
        return task

    def _recheck_images(self) -> None:
        """Once the store's index changed (a pull, a build, a tag), check again the images
        of the services whose image was not ready."""
        if self._rechecking or self.store_index is None:
            return
        failing = [s.config for s in self.services.values() if s.image_error]
        if not failing or _stat_key(self.store_index) == self._index_seen:
            return
        task = self._check_images(failing)
        if task is not None:
            self._rechecking = True
            task.add_done_callback(lambda t: setattr(self, "_rechecking", False))

    def _still(self, name: str, asked: dict[str, ServiceConfig]) -> bool:
        """Whether service `name` is still configured as it was when its image was asked
        about."""
        svc = self.services.get(name)
        return svc is not None and name in asked and svc.config == asked[name]

    def _prepared(self, name: str, error: str) -> None:
        svc = self.services.get(name)
        if svc is None:
            return
        if not error and svc.state == State.FAILED and svc.instance is None:
            if svc.image_error and svc.reason == svc.image_error:  # failed for want of it
                svc.state, svc.reason = State.DOWN, ""
        svc.image_error = error

    def _found(self, name: str, bom: dict[str, Any]) -> None:
        svc = self.services.get(name)
        if svc is None:
            return
        self._boms[name] = bom
        svc.image_ports = tuple(bom.get("ports") or ())
        if (hint := report.ports_hint(svc.config, svc.image_ports)) and not svc.config.ports_given:
            log.warning("service %s: %s", name, hint)

    def _add(
        self, sc: ServiceConfig, address: str, kept: dict[int, socket.socket] | None = None
    ) -> None:
        """Set up service SC on ADDRESS: listening anew, or on the sockets KEPT from before."""
        svc = Service(sc, address, self.launcher, self.reason_of_exit, self.image_changed)
        self.services[sc.name] = svc
        self._unlistened.discard(sc.name)
        self._listen(svc, dict(kept or {}))

    def _listen(self, svc: Service, sockets: dict[int, socket.socket]) -> None:
        """Listen on the service's ports (those not in sockets already); when one is taken,
        the service is failed and tried again by the reaper, until the port is free: it
        stayed failed ("cannot listen on ...: Address already in use") for good, a reload
        of the same file too."""
        port = 0
        try:
            for port in svc.config.ports:
                if port not in sockets:
                    sockets[port] = sharing.listen(svc.address, port)
            # Plain sockets and a reader callback, not asyncio servers: a connection to an
            # instance that is up is handed over as it was accepted, with no transport,
            # stream or task made for it in the gateway (sharing.py).
            svc.attach(sockets)
        except OSError as e:
            for sock in sockets.values():
                sock.close()
            reason = f"cannot listen on {svc.address}:{port}: {e.strerror}"
            if svc.reason != reason:  # said once, not at each try
                log.warning("service %s: %s", svc.name, reason)
            svc.state, svc.reason = State.FAILED, reason
            self._unlistened.add(svc.name)
            return
        if svc.name in self._unlistened:  # listening at last
            self._unlistened.discard(svc.name)
            svc.state, svc.reason = State.DOWN, ""
            log.warning("service %s: listening on %s now", svc.name, svc.address)

    def _listen_again(self) -> None:
        """Try again the services whose ports were taken (by another program, say)."""
        for name in list(self._unlistened):
            svc = self.services.get(name)
            if svc is None or svc.listeners is not None:
                self._unlistened.discard(name)
            else:
                self._listen(svc, {})

    async def _remove(self, name: str) -> None:
        svc = self.services.pop(name, None)
        self._boms.pop(name, None)
        self._unlistened.discard(name)
        if svc is not None:
            if svc.listeners is not None:
                svc.listeners.close()
            await svc.stop()
            svc._close_all()

    # --- DNS ---------------------------------------------------------------------------------

    def _lookup(self, label: str) -> str | None:
        svc = self.services.get(label)
        return svc.address if svc is not None else None

    def _on_query(self, label: str) -> None:
        svc = self.services.get(label)
        if svc is not None and label not in self._unlistened:  # no boot no one could reach
            svc.trigger()

    # --- idle reaper -------------------------------------------------------------------------

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            now = time.monotonic()
            for svc in list(self.services.values()):
                tier = svc.due_tier(now)
                if tier is not None:
                    task = asyncio.ensure_future(self._step_down(svc, tier, now))
                    task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._rest()
            self._say_in_use()
            self._recheck_images()
            if self._unlistened and now >= self._listen_at:
                self._listen_at = now + LISTEN_AGAIN_EVERY
                self._listen_again()

    def _say_in_use(self) -> None:
        """Rewrite the images the instances up run, when they changed (inuse.py)."""
        if self.in_use_dir is None:
            return
        images: dict[str, list[str]] = {}
        for name, svc in sorted(self.services.items()):
            if svc.instance is not None and svc.image_digest:
                images.setdefault(svc.image_digest, []).append(name)
        if images != self._in_use:
            self._in_use = images  # said once, also when it cannot be written
            try:
                inuse.write(self.in_use_dir, images)
            except OSError as e:  # a full disk: rmi may not see them, the gateway goes on
                log.warning("gateway: cannot write %s: %s", self.in_use_dir, e.strerror)

    def _rest(self) -> None:
        """Once at rest after start, boots, thaws or status pages (every service down or
        failed, no thread but this one: the workers have ended), give the heap's free pages
        back, when worth it (rest.worth_trimming)."""
        services = self.services.values()
        activity = sum(svc.boots + svc.thaws for svc in services) + self.status.served
        if activity == self._rested_after or threading.active_count() > 1:
            return
        if all(svc.instance is None and svc.state in AT_REST for svc in services):
            self._rested_after = activity
            if rest.worth_trimming(self._floor_kib):
                rest.trim_heap()

    async def _step_down(self, svc: Service, tier: str, now: float) -> None:
        # Connections handed over are the app's: the gateway cannot see them end, so it asks
        # the app whether it still serves any before taking its CPU or memory away.
        if await asyncio.to_thread(svc.busy_inside):
            svc.last_active = time.monotonic()
            return
        log.info("service %s: idle for %.1fs, %s", svc.name, svc.idle_for(now), tier)
        await svc.step_down(tier)

    # --- status ------------------------------------------------------------------------------

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every service's figures, and its instance's: memory, and the app's own figures
        (asked of every instance that is up, at once; a frozen one is not woken)."""
        docs = []
        for name, svc in self.services.items():
            doc = svc.snapshot()
            doc["bom"] = self._boms.get(name, {})
            doc["memory_bytes"] = None
            doc["runtime"] = {}
            instance = svc.instance
            doc["pid"] = instance.pid if instance is not None else None
            docs.append((doc, instance, svc.state == State.UP))
        # a task only for a service with an instance: 200 services down make no 200 tasks
        await asyncio.gather(*(_instance_figures(*e) for e in docs if e[1] is not None))
        for doc, instance, _up in docs:
            if doc["runtime"] and (this := self.services.get(doc["name"])) is not None:
                report.count_app(this, instance, doc["runtime"])  # what the app took itself
                doc["warm_requests"] = this.warm
        return [doc for doc, _instance, _up in docs]
