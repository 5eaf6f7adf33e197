"""What the status page (status.py) shows of one service, and the hint on its ports."""

from __future__ import annotations

import time
from typing import Any, Protocol

from summon.gateway.backoff import Backoff
from summon.gateway.config import ServiceConfig
from summon.gateway.tiers import Ladder


class Service(Protocol):
    """What this module reads of a service.Service (not imported: it imports this one)."""

    warm: int
    app_answered: int | None

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def config(self) -> ServiceConfig: ...
    @property
    def state(self) -> object: ...
    @property
    def reason(self) -> str: ...
    @property
    def image_error(self) -> str: ...
    @property
    def image_digest(self) -> str: ...
    @property
    def boots(self) -> int: ...
    @property
    def thaws(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def cold(self) -> int: ...
    @property
    def open(self) -> int: ...
    @property
    def backoff(self) -> Backoff: ...
    @property
    def channel(self) -> object: ...
    @property
    def listeners(self) -> Any: ...
    @property
    def instance(self) -> object: ...
    @property
    def last_boot(self) -> float | None: ...
    @property
    def last_start(self) -> float | None: ...
    @property
    def last_thaw(self) -> float | None: ...
    @property
    def booted_at(self) -> float | None: ...
    @property
    def history(self) -> list[tuple[float, float, str]]: ...
    @property
    def ladder(self) -> Ladder: ...


def ports_hint(config: ServiceConfig, image_ports: tuple[int, ...]) -> str:
    """What to change when the service listens on ports its image does not serve (known
    once the image was read); "" when they agree or nothing is known."""
    serves, listens = image_ports, config.ports
    if not serves or set(listens) <= set(serves):
        return ""
    default = "" if config.ports_given else " (the default without `ports`)"
    wanted = ", ".join(map(str, serves))
    return (
        f"its image {config.image} serves port(s) {wanted}, the service listens on "
        f"{', '.join(map(str, listens))}{default}: set ports = [{wanted}] in the service"
    )


def service_doc(svc: Service) -> dict[str, Any]:
    """The service's figures, as status.json has them (the instance's are added by the
    gateway: server.py)."""
    retry_in = svc.backoff.left(time.monotonic())
    return {
        "name": svc.name,
        "address": svc.address,
        "ports": list(svc.config.ports),
        "image": svc.config.image,
        "image_digest": svc.image_digest,
        "target": svc.config.target,
        "state": str(svc.state),
        "error": svc.reason or svc.image_error,
        "boots": svc.boots,
        "thaws": svc.thaws,
        "failures": svc.failures,
        "backoff_seconds": round(retry_in, 3) if retry_in else None,
        "cold_requests": svc.cold,
        "warm_requests": svc.warm,
        "open_connections": svc.open,
        "handed_over": svc.channel is not None,
        "listeners_shared": svc.listeners is not None and svc.listeners.shared,
        "last_boot_seconds": svc.last_boot,
        "last_start_seconds": svc.last_start,
        "last_thaw_seconds": svc.last_thaw,
        "booted_at": svc.booted_at,
        "boot_history": [
            {"at": at, "seconds": round(seconds, 6), "how": how} for at, seconds, how in svc.history
        ],
        "idle_timeout": svc.config.idle_timeout,
        "tiers": svc.ladder.timeouts(),
    }


def count_app(svc: Service, instance: object, figures: dict[str, float]) -> None:
    """The app's own figures, just read (at a share, an idle check, a status page): a
    request it answered ends a failure streak (backoff.py). Figures of an instance no
    longer the service's are not counted. The connections it took itself on shared
    listeners are its own figures' (summon_app_connections_total), not warm_requests:
    told apart by the app's accepted less handed, a crowd of 50 cold clients counted 99."""
    if instance is not svc.instance or "accepted" not in figures:
        return
    answered = int(figures.get("requests", 0))
    if svc.app_answered is not None and answered > svc.app_answered:
        svc.backoff.ok()
    svc.app_answered = answered
