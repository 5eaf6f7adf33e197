"""Fresh randomness after a snapshot restore: what the runtime reseeds, and hooks for the rest.

A restored snapshot resumes every sibling from the same memory: the same kernel random state,
the same `random` module state, the same keys any code drew before the snapshot was taken.
The runtime of a VM (summon.runtime.vm) reseeds the kernel's pool from the host first, then
calls resumed() here, which reseeds what the stdlib keeps and then calls every hook image-side
code registered with on_resume(). Code that derives secrets from randomness before the app
listens registers a hook that draws them again (summon.net: its SYN-cookie keys, the first IP
identification and ephemeral port; an app: its own random.Random instances).

What cannot be renewed: the interpreter's hash seed (str and bytes hashes, hence dict and set
order, are fixed at start; the siblings share it, so an attacker who learns it from one can
aim hash collisions at all of them). docs/qemu.md says so.

Image-side: stdlib only, and nothing imported at module level but sys, so registering a hook
costs nothing at start.
"""

from __future__ import annotations

import sys

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_hooks: list[Callable[[], None]] = []


def on_resume(hook: Callable[[], None]) -> Callable[[], None]:
    """Call `hook` (no arguments) after every restore, once the kernel's pool is fresh.

    Register once per long-lived object (a stack, a listener): the list holds it for good. A
    hook must draw from os.urandom (the kernel's pool is reseeded by then) and return fast: the
    first connection waits for every hook. Returns the hook, so this can be a decorator.
    """
    _hooks.append(hook)
    return hook


def forget(hook: Callable[[], None]) -> None:
    """Stop calling `hook` (an object that registered one is closed). Idempotent."""
    while hook in _hooks:
        _hooks.remove(hook)


def resumed() -> list[str]:
    """Reseed the stdlib's random state, then run the hooks; return one line per failure.

    Call only once the kernel's pool has fresh entropy: everything here draws from it.
    """
    failures: list[str] = []
    modules = sys.modules
    random = modules.get("random")
    if random is not None:
        random.seed()  # the module's shared Random, from os.urandom
    tempfile = modules.get("tempfile")
    if tempfile is not None and hasattr(tempfile, "_name_sequence"):
        # Its name generator is a Random made once; None makes the next name make a new one.
        tempfile._name_sequence = None  # type: ignore[attr-defined]
    ssl = modules.get("_ssl")
    if ssl is not None:
        import os

        # OpenSSL's generators reseed from their parent once it has taken new input.
        ssl.RAND_add(os.urandom(48), 48.0)
    for hook in list(_hooks):
        try:
            hook()
        except Exception as e:  # one broken hook must not keep the others from running
            name = getattr(hook, "__qualname__", repr(hook))
            failures.append(f"resume hook {name} raised {type(e).__name__}: {e}")
    return failures
