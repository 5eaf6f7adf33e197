"""The device interfaces an app's entry function asks for by parameter annotation.

An app is written against these classes, never against an implementation:

    from summon.devices import Console, KV_RO, Stack

    async def main(stack: Stack, static: KV_RO, log: Console) -> None: ...

The runtime (summon.runtime.init) reads the annotations, builds the implementation the image
was configured for (host sockets or the pure-Python stack, a baked-in folder...) and passes it
in. Each class here is an interface: its methods raise NotImplementedError, except the few
written in terms of the others.

This module is copied into every image and imported by every app that uses devices, so it
imports nothing at run time.
"""

from summon.devices.core import (
    KV_RO,
    Clock,
    Console,
    InvalidKey,
    Random,
    Server,
    Stack,
    UDPEndpoint,
)
from summon.devices.core import (
    LEVELS as LEVELS,
)
from summon.devices.secure import (
    TLS,
    InvalidSecretName,
    MissingSecret,
    Secrets,
    TLSClientContext,
    TLSServerContext,
)
from summon.devices.store import KV_RW, Commit, Conflict, StoreFull, Transaction, UnknownCommit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.devices.core import ClientConnected as ClientConnected
    from summon.devices.store import MergeFunction as MergeFunction
    from summon.devices.store import Policy as Policy

__all__ = [
    "KV_RO",
    "KV_RW",
    "TLS",
    "Clock",
    "Commit",
    "Conflict",
    "Console",
    "InvalidKey",
    "InvalidSecretName",
    "MissingSecret",
    "Random",
    "Secrets",
    "Server",
    "Stack",
    "StoreFull",
    "TLSClientContext",
    "TLSServerContext",
    "Transaction",
    "UDPEndpoint",
    "UnknownCommit",
]
