"""What a gateway's launcher gives back: a started instance and its hand-off channel."""

from __future__ import annotations

from dataclasses import dataclass

from summon.gateway.handoff import Channel
from summon.targets.base import Instance


@dataclass
class Launched:
    """A started instance, and the gateway's end of its hand-off channel if it has one."""

    instance: Instance
    channel: Channel | None = None
    image_digest: str = ""  # the image (before any target preparation) it was started from
